"""The notebooks' papermill parameters: what each declares, and a report's `-p` values checked before any kernel.

Each numbered notebook declares its parameters in its `parameters` cell (`seeds: int = 3  # ...`). A report passes
every notebook the common ones (dataset, budget, seed, ...) and, of the `-p` extras, only those that notebook
declares; an extra no notebook declares, a value of the wrong type, or one out of range is refused here, in one
line, before the first notebook starts (each notebook checks its values again itself).
"""

from __future__ import annotations

import json
import math
import re
from functools import cache
from pathlib import Path
from typing import Any

from vaelib.config_checks import shown

# Parameters the report sets itself: each has its own flag (or is the report's folder), so -p may not change them.
RESERVED = {"dataset": "--dataset", "budget": "--budget", "seed": "--seed", "device": "--device",
            "out_dir": "--out", "runs_dir": "the runs/ cache of the workspace (the checkout, or the current folder)",
            "data_root": "the data/ folder of the workspace (the checkout, or the current folder)"}

# A numeric parameter must be > 0 unless its comment in the parameters cell says `(0 allowed)`: 0 is then
# meaningful (0 epochs: the budget's; image_size 0: the dataset's; free bits 0: none; index and seed 0: the first).
# The notebook declares its own ranges; nothing here names a notebook's parameters. (Not `>= 0`: papermill skips a
# parameter line whose comment holds a second `=`.)
AT_LEAST_ZERO_MARK = "(0 allowed)"


def at_least_zero(description: dict[str, Any]) -> bool:
    """Whether a declared parameter (papermill's description: its comment is `help`) allows 0."""
    return AT_LEAST_ZERO_MARK in str(description.get("help") or "")


# Where a number has a meaningful range narrower than "> 0", its comment says so: `(at least 1)`, `(at most 0.5)`.
_BOUND = re.compile(r"\(at (least|most) ([0-9][0-9_.e+]*)\)")


def bounds(description: dict[str, Any]) -> tuple[float | None, float | None]:
    """(low, high): the `(at least N)` and `(at most N)` a declared parameter's comment gives (None where absent)."""
    found = {kind: float(v.replace("_", "")) for kind, v in _BOUND.findall(str(description.get("help") or ""))}
    return found.get("least"), found.get("most")


@cache
def _inspect(notebook: str, mtime: float) -> dict[str, dict[str, Any]]:
    import papermill  # heavy: only reading a notebook's parameters needs papermill (and Jupyter)

    return papermill.inspect_notebook(notebook)


def declared(notebook: str | Path) -> dict[str, dict[str, Any]]:
    """name -> papermill's description (inferred_type_name, default, help) of the notebook's parameters."""
    path = Path(notebook)
    return _inspect(str(path), path.stat().st_mtime)


def check_parameters(notebook: Path, params: dict[str, Any]) -> None:
    """Refuse parameter names the notebook's `parameters` cell does not declare."""
    names = declared(notebook)
    unknown = sorted(set(params) - set(names))
    if unknown:
        raise ValueError(f"unknown parameter(s) {unknown} for {Path(notebook).name}: allowed {sorted(names)}")


def parse_value(name: str, text: str, notebooks: list[Path]) -> Any:
    """A `-p NAME VALUE` from the command line: the text itself for a parameter declared as str, else JSON
    (2, 0.5, true, [0.1, 2.0]), else the text (refused by check_extras with the type it needs)."""
    kinds = {declared(nb)[name]["inferred_type_name"] for nb in notebooks if name in declared(nb)}
    if kinds == {"str"}:
        return text
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text
    except RecursionError:  # json.loads recurses once per level
        raise ValueError(f"-p {name} {text[:20]!r}... is nested too deep to parse: allowed a JSON value of a few "
                         "levels (a number, true or false, a list of numbers)") from None


def check_extras(extras: dict[str, Any], notebooks: list[Path]) -> dict[Path, dict[str, Any]]:
    """Each notebook's share of the extras (the ones it declares); refuses a reserved name, a name no notebook
    declares, and a value of the wrong type or range, naming the parameter and what is allowed."""
    tables = {nb: declared(nb) for nb in notebooks}
    union = sorted({name for t in tables.values() for name in t} - set(RESERVED))
    for name, value in extras.items():
        if name in RESERVED:
            raise ValueError(f"parameter {name!r} cannot be set with -p: use {RESERVED[name]}")
        owners = [nb for nb, t in tables.items() if name in t]
        if not owners:
            raise ValueError(f"parameter {name!r} is declared by no notebook: allowed {', '.join(union)}")
        for nb in owners:
            check_value(name, value, tables[nb][name]["inferred_type_name"], nb.name, at_least_zero(tables[nb][name]),
                        bounds(tables[nb][name]))
    return {nb: {k: v for k, v in extras.items() if k in t} for nb, t in tables.items()}


def check_value(name: str, value: Any, kind: str, where: str = "the notebook", zero: bool = False,
                limits: tuple[float | None, float | None] = (None, None)) -> None:
    """Refuse a value that is not of the declared type (int, float, bool, str, list[float], ...) or out of range
    (> 0, or >= 0 with zero=True: the parameter's comment says `(0 allowed)`; limits: the `(at least N)` and
    `(at most N)` of its comment, for a number or every item of a list)."""
    def refuse(allowed: str) -> None:
        raise ValueError(f"-p {name} {shown(value)} is invalid ({where} declares {name}: {kind}): allowed {allowed}")

    low_limit, high_limit = limits
    items = value if isinstance(value, list) else [value]
    for v in items if kind in ("int", "float") or kind.startswith("list") else []:
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            if low_limit is not None and v < low_limit:
                refuse(f"a value >= {low_limit:g}")
            if high_limit is not None and v > high_limit:
                refuse(f"a value <= {high_limit:g}")

    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    low, words = (0, ">= 0") if zero else (None, "> 0")
    if kind == "bool" and not isinstance(value, bool):
        refuse("true or false")
    elif kind == "str" and not isinstance(value, str):
        refuse("a string")
    elif kind == "int":
        if not (number and isinstance(value, int)):
            refuse(f"an integer {words}")
        if value < 0 or (low is None and value == 0):
            refuse(f"an integer {words}")
    elif kind == "float":
        if not (number and math.isfinite(value)) or value < 0 or (low is None and value == 0):
            refuse(f"a finite number {words}")
    elif kind.startswith("list"):
        items_ok = isinstance(value, list) and value and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0 for v in value)
        if kind == "list[float]" and not items_ok:
            refuse("a non-empty JSON list of finite numbers > 0, e.g. [0.1, 1.0, 4.0]")
