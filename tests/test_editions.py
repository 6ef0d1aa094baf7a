"""The student edition: no outputs, no instructor note, no solution; nbgrader's markers replaced; a marker without
its pair refused before anything is written."""

import json

import nbformat
import pytest

from vaelib.__main__ import main
from vaelib.reporting.editions import student_edition
from vaelib.reporting.report import copy_notebooks, numbered_notebooks


def _nb():
    nb = nbformat.v4.new_notebook()
    task = nbformat.v4.new_code_cell("def f(x):\n    ### BEGIN SOLUTION\n    return 2 * x\n    ### END SOLUTION\n")
    task.outputs = [nbformat.v4.new_output("stream", text="42\n")]
    task.execution_count = 3
    tests = nbformat.v4.new_code_cell("# NBVAL_CHECK_OUTPUT\nassert f(1) == 2\n### BEGIN HIDDEN TESTS\n"
                                      "assert f(2) == 4\n### END HIDDEN TESTS\nprint('ok')")
    note = nbformat.v4.new_markdown_cell("The answer is 7.", metadata={"tags": ["instructor"]})
    answer = nbformat.v4.new_markdown_cell("Because of Jensen.", metadata={"nbgrader": {"solution": True}})
    nb.cells = [nbformat.v4.new_markdown_cell("# Lesson"), task, tests, note, answer]
    nb.metadata["papermill"] = {"duration": 1.0}
    return nb


def test_the_student_edition_drops_solutions_notes_and_outputs():
    nb = student_edition(_nb())
    assert [c.cell_type for c in nb.cells] == ["markdown", "code", "code", "markdown"]  # the note is gone
    assert nb.cells[1].source == "def f(x):\n    # YOUR CODE HERE\n    raise NotImplementedError()\n"
    assert nb.cells[1].outputs == [] and nb.cells[1].execution_count is None
    assert nb.cells[2].source == "assert f(1) == 2\nprint('ok')"
    assert nb.cells[3].source == "YOUR ANSWER HERE"
    assert "papermill" not in nb.metadata
    text = nbformat.writes(nb)
    assert "2 * x" not in text and "f(2) == 4" not in text and "answer is 7" not in text and "Jensen" not in text


def test_an_unpaired_marker_is_refused():
    nb = _nb()
    nb.cells[1].source = "def f(x):\n    ### BEGIN SOLUTION\n    return 2 * x\n"
    with pytest.raises(ValueError, match=r"cell 1 has '### BEGIN SOLUTION' without its pair"):
        student_edition(nb)


def test_vaelib_notebooks_student_writes_the_lessons_without_outputs_or_notes(tmp_path, capsys):
    assert main(["notebooks", str(tmp_path / "class"), "--student"]) == 0
    assert "copied the student edition of" in capsys.readouterr().out
    written = sorted((tmp_path / "class").rglob("*.ipynb"))
    assert [p.name for p in written] == [p.name for p in numbered_notebooks()]  # the lessons, no studies
    notes = 0
    for path, source in zip(written, numbered_notebooks()):
        nb = nbformat.read(str(path), as_version=4)
        assert all(c.outputs == [] and c.execution_count is None for c in nb.cells if c.cell_type == "code")
        assert not [c for c in nb.cells if "instructor" in c.metadata.get("tags", [])]
        assert "widgets" not in nb.metadata and "papermill" not in nb.metadata
        original = json.loads(source.read_text())
        notes += sum("instructor" in c["metadata"].get("tags", []) for c in original["cells"])
        assert len(nb.cells) == len(original["cells"]) - sum(
            "instructor" in c["metadata"].get("tags", []) for c in original["cells"])
    assert notes >= 2  # notebook 00's answers to its predictions are instructor notes
    assert main(["notebooks", str(tmp_path / "class"), "--student"]) == 2  # no silent overwrite
    copy_notebooks(tmp_path / "class", force=True, student=True)


def test_the_student_edition_of_notebook_00_runs_without_its_instructor_cells(tmp_path):
    """The instructor cells of notebook 00 (its comparison with fit, its saved results) are dropped: what is left
    must still run (tiny budget)."""
    import papermill

    from vaelib.reporting.report import NOTEBOOKS

    nb = student_edition(nbformat.read(str(NOTEBOOKS / "00_vae_from_scratch.ipynb"), as_version=4))
    assert not any("NBVAL" in c.source for c in nb.cells)
    assert not any("hand_equals_fit" in c.source for c in nb.cells)  # the comparison with fit is instructor-only
    nbformat.write(nb, str(tmp_path / "00.ipynb"))
    papermill.execute_notebook(str(tmp_path / "00.ipynb"), str(tmp_path / "00.out.ipynb"), kernel_name="python3",
                               parameters={"budget": "tiny", "out_dir": str(tmp_path / "out"),
                                           "runs_dir": str(tmp_path / "runs")}, cwd=str(NOTEBOOKS),
                               progress_bar=False)
