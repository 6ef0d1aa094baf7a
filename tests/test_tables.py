from vaelib.io.tables import format_table


def test_format_table_aligns_columns_under_a_rule():
    text = format_table([{"a": 1, "bb": 0.123456}, {"a": 22, "bb": "x"}])
    assert text.splitlines() == ["a   bb", "--  ------", "1   0.1235", "22  x"]
    assert format_table([]) == "(no rows)"


def test_format_table_picks_columns_and_shows_none_as_a_dash():
    text = format_table([{"run": "a", "x": 1.23456, "y": None}, {"run": "long name", "x": 2, "y": 3}], ["run", "y"])
    assert text.splitlines() == ["run        y", "---------  -", "a          -", "long name  3"]
    assert format_table([{"x": 0.5}], floats=".2f").splitlines()[-1] == "0.50"
