"""The student edition of the lessons: outputs cleared, instructor notes and solutions removed.

The markers are nbgrader's, so that notebooks an instructor marks up for nbgrader work here too and the other way
round (nbgrader itself is not used: it brings a database, a Jupyter server extension and a grading workflow, where
the lessons need only the markers removed):

- in a code cell, the lines from `### BEGIN SOLUTION` to `### END SOLUTION` become `# YOUR CODE HERE` and
  `raise NotImplementedError()`; the lines from `### BEGIN HIDDEN TESTS` to `### END HIDDEN TESTS` are dropped;
- a markdown cell marked as a solution (metadata `nbgrader.solution` true) becomes `YOUR ANSWER HERE`;
- a cell tagged `instructor` (an instructor note: the answer to a *Predict first* question, a hint for the
  lecturer) is dropped whole;
- every output and execution count is cleared, and papermill's and the widgets' metadata removed, so that no
  measured outcome is on screen before the student has run the cell; the test markers (`# NBVAL_CHECK_OUTPUT`
  and nbval's other comment markers) are removed from the code.

The committed lessons hold no solution to begin with (the reference solutions live in the repository's
instructor/ folder, outside the package); the student edition drops the rest.
"""

from __future__ import annotations

import re
from typing import Any

INSTRUCTOR_TAG = "instructor"
_SOLUTION = re.compile(r"^([ \t]*)### BEGIN SOLUTION[ \t]*\n.*?^[ \t]*### END SOLUTION[ \t]*$\n?", re.M | re.S)
_HIDDEN = re.compile(r"^[ \t]*### BEGIN HIDDEN TESTS[ \t]*\n.*?^[ \t]*### END HIDDEN TESTS[ \t]*$\n?", re.M | re.S)
_NBVAL = re.compile(r"^[ \t]*# NBVAL_[A-Z_]+[ \t]*\n?", re.M)
_MARKERS = ("### BEGIN SOLUTION", "### END SOLUTION", "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS")


def student_edition(nb: Any) -> Any:
    """The notebook (an nbformat node, changed in place and returned) as a student gets it. A marker left
    unpaired is refused, naming the cell: half a solution must not reach a student."""
    cells = []
    for i, cell in enumerate(nb.cells):
        if INSTRUCTOR_TAG in cell.get("metadata", {}).get("tags", []):
            continue
        if cell.cell_type == "code":
            cell.source = _NBVAL.sub("", _HIDDEN.sub("", _SOLUTION.sub(_stub, cell.source)))
            cell.outputs, cell.execution_count = [], None
            for marker in _MARKERS:
                if marker in cell.source:
                    raise ValueError(f"cell {i} has {marker!r} without its pair: allowed BEGIN and END SOLUTION "
                                     "(or HIDDEN TESTS) in pairs, each on its own line")
        elif cell.cell_type == "markdown" and cell.get("metadata", {}).get("nbgrader", {}).get("solution"):
            cell.source = "YOUR ANSWER HERE"
        cell.get("metadata", {}).pop("papermill", None)
        cell.get("metadata", {}).pop("execution", None)
        cells.append(cell)
    nb.cells = cells
    for key in ("papermill", "widgets"):
        nb.metadata.pop(key, None)
    return nb


def _stub(m: re.Match[str]) -> str:
    indent = m.group(1)
    return f"{indent}# YOUR CODE HERE\n{indent}raise NotImplementedError()\n"
