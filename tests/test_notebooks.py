"""The committed notebooks and the nbval plugin that runs them at the tiny budget (pyproject's addopts).

The defaults are covered by nbval (pytest --nbval-lax over notebooks/); every notebook with other parameters
(shapes at 16x16, seed 1, tiny) is run by tests/test_install.py, from the wheel: the suite's one report build.
"""

import nbformat
import pytest

from vaelib.reporting.report import numbered_notebooks, report_notebooks


def test_there_are_numbered_notebooks():
    assert len(numbered_notebooks()) >= 4


def test_the_nbval_budget_plugin_is_loaded(request):
    assert request.config.pluginmanager.has_plugin("nbval_budget")  # pyproject's addopts: -p nbval_budget


def test_nbval_runs_each_notebook_at_the_tiny_budget():
    import nbval_budget as conftest  # the plugin pyproject's addopts loads (-p nbval_budget)

    for notebook in report_notebooks():
        nb = conftest.at_budget(nbformat.read(str(notebook), as_version=4), str(notebook), "tiny")
        tags = [c.metadata.get("tags", []) for c in nb.cells]
        i = next(i for i, t in enumerate(tags) if "parameters" in t)
        assert "injected-parameters" in tags[i + 1] and nb.cells[i + 1].source.startswith('budget = "tiny"')
    with pytest.raises(ValueError, match="has no cell tagged 'parameters'"):
        conftest.at_budget(nbformat.v4.new_notebook(), "x.ipynb")


def test_every_exercise_check_cell_is_compared_by_nbval():
    """docs/notebooks.md: each exercise's check cell (print(exercises.check_...)) prints right, wrong or not done yet
    whatever the budget, so nbval compares it with the committed run (# NBVAL_CHECK_OUTPUT on its first line); an
    unmarked one would let a check that stopped printing its verdict pass unseen."""
    checks = {}
    for notebook in numbered_notebooks():
        cells = nbformat.read(str(notebook), as_version=4).cells
        for i, cell in enumerate(cells):
            code = [line for line in cell.source.splitlines() if line.strip() and not line.startswith("#")]
            if cell.cell_type == "code" and code and all(line.startswith("print(exercises.check_") for line in code):
                checks[f"{notebook.name} cell {i}"] = cell.source.startswith("# NBVAL_CHECK_OUTPUT")
    assert len(checks) >= 10, checks  # every lesson has exercises
    assert all(checks.values()), [k for k, marked in checks.items() if not marked]
