"""One-line refusals of what a file holds: the error type, and the checks of a value that every reader shares.

`MalformedFile` (a ValueError, so the command line prints it as one line with exit code 2) names the file, the
key, what was found and what was expected. training.schema (checkpoints), training.jsonfiles (the JSON files) and
vaelib.training.history use these.
"""

from __future__ import annotations

import math
import numbers
from pathlib import Path
from typing import Any

import torch

MISSING = object()  # what `found` calls a key that is not there


class MalformedFile(ValueError):
    """A file that was read but holds a wrong key, type or shape; the one-line message names the file and the key."""


def found(value: Any) -> str:
    """A value as a message shows it: 'missing', 'None', "a str ('3')", 'a torch.float32 tensor of shape (3,)'."""
    if value is MISSING or value is None:
        return "missing" if value is MISSING else "None"
    if isinstance(value, torch.Tensor):
        return f"a {value.dtype} tensor of shape {tuple(value.shape)}"
    name = type(value).__name__
    if isinstance(value, (dict, list, tuple)):
        text = f"{len(value)} items" if not isinstance(value, dict) else f"keys {_first(list(value))}"
    elif isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**30:
        text = f"{value.bit_length()} bits"
    else:
        text = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
    return f"{'an' if name[0] in 'aeiou' else 'a'} {name} ({text})"


def _first(keys: list, n: int = 4) -> str:
    shown = ", ".join(repr(k) if len(repr(k)) <= 40 else repr(k)[:37] + "..." for k in keys[:n])
    return f"[{shown}{', ...' if len(keys) > n else ''}]"


def refuse(path: str | Path, key: str, value: Any, expected: str) -> None:
    """Raise the one line: '<file>: <key> is <what was found>: expected <what is allowed>'."""
    raise MalformedFile(f"{path}: {key} is {found(value)}: expected {expected}")


def is_int(value: Any) -> bool:
    return type(value) is int or (isinstance(value, numbers.Integral) and not isinstance(value, bool))


def is_number(value: Any) -> bool:
    """A real number a float can hold, not a bool (nan and inf included: a history may hold them)."""
    if type(value) is float:
        return True
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        return False
    try:
        float(value)  # 10**400 cannot be formatted, averaged or plotted as one
    except OverflowError:
        return False
    return True


def is_count(value: Any) -> bool:
    """A non-negative integer (not a bool)."""
    return is_int(value) and value >= 0


def is_nonnegative(value: Any) -> bool:
    """A finite number >= 0 (seconds, a learning rate)."""
    return is_number(value) and math.isfinite(value) and value >= 0


def is_versions(value: Any) -> bool:
    """{name: version string (or None)}, as provenance.versions writes it."""
    return isinstance(value, dict) and all(isinstance(v, str) or v is None for v in value.values())


def need(d: dict, key: str, ok: Any, expected: str, path: str | Path, where: str = "") -> Any:
    """d[key] if ok(it), else the one-line refusal naming where + key."""
    value = d.get(key, MISSING)
    if value is MISSING or not ok(value):
        refuse(path, where + key, value, expected)
    return value
