"""A pytest plugin (pyproject's addopts: -p nbval_budget): nbval over the committed notebooks, at the tiny budget.

It lives here, not in notebooks/conftest.py, so that the wheel, which ships notebooks/ as vaelib/notebooks/,
carries no test code.

- Each notebook runs with `budget = "tiny"` set in a cell inserted right after its `parameters` cell, as papermill
  would inject it (VAELIB_NBVAL_BUDGET=small runs them at their committed default instead: about 20 minutes).
  So every cell must execute at tiny, and the cells marked NBVAL_CHECK_OUTPUT (--nbval-lax) must print the same
  at tiny as in the committed small-budget run: those cells check what does not depend on the budget (formulas,
  exercises, architecture tables, data tables of fixed size).
- stderr streams (warnings) are dropped before comparing a cell's outputs with the committed ones.
- Notebooks run unattended: no progress bars (vaelib.runtime.headless).
"""

import os

import nbformat
import nbval.plugin

from vaelib.experiments.budgets import BUDGETS

BUDGET = os.environ.get("VAELIB_NBVAL_BUDGET", "tiny")
if BUDGET not in BUDGETS:
    raise ValueError(f"VAELIB_NBVAL_BUDGET={BUDGET!r} is invalid: allowed {', '.join(BUDGETS)}")


def at_budget(nb: nbformat.NotebookNode, path: str, budget: str = BUDGET) -> nbformat.NotebookNode:
    """The notebook with `budget = ...` inserted after its parameters cell (papermill's place for overrides)."""
    for i, cell in enumerate(nb.cells):
        if "parameters" in cell.metadata.get("tags", []):
            nb.cells.insert(i + 1, nbformat.v4.new_code_cell(
                f'budget = "{budget}"  # inserted by tests/nbval_budget.py for nbval',
                metadata={"tags": ["injected-parameters"]}))
            return nb
    raise ValueError(f"{path} is invalid: it has no cell tagged 'parameters'")


class _Reader:
    """nbval.plugin's view of nbformat: notebooks are read at the test budget."""

    def __getattr__(self, name):
        return getattr(nbformat, name)

    @staticmethod
    def read(path, as_version):
        return at_budget(nbformat.read(path, as_version=as_version), path)


nbval.plugin.nbformat = _Reader()


def _without_stderr(outputs):
    return [o for o in outputs if not (o.get("output_type") == "stream" and o.get("name") == "stderr")]


_compare = nbval.plugin.IPyNbCell.compare_outputs


def compare_outputs(self, test, ref, skip_compare=None):
    return _compare(self, _without_stderr(test), _without_stderr(ref), skip_compare)


nbval.plugin.IPyNbCell.compare_outputs = compare_outputs

# nbval's kernels inherit this: notebooks run unattended, so no progress bars (vaelib.runtime.headless).
os.environ.setdefault("VAELIB_HEADLESS", "1")
