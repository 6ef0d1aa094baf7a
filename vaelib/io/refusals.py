"""One-line refusals of what a file holds: the error type, and the checks of a value that every reader shares.

`MalformedFile` (a ValueError, so the command line prints it as one line with exit code 2) names the file, the
key, what was found and what was expected. training.schema (checkpoints), training.jsonfiles (the JSON files) and
vaelib.training.history use these.
"""

from __future__ import annotations

import gc
import math
import numbers
from pathlib import Path
from typing import Any

import torch

MISSING = object()  # what `found` calls a key that is not there
MAX_DEPTH = 100  # levels of nested dicts and lists a file may hold: vaelib writes at most 6 (a report's
#   notebooks[i].metrics.latency_ms.<control>.median); json.dumps, torch.save and repr recurse, and fail past
#   Python's recursion limit (1000) on what a reader could load (json.loads parses ~990 levels, torch.load any)


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


def check_depth(value: Any, path: str | Path, most: int = MAX_DEPTH) -> None:
    """Refuse, in one line naming the file and where, dicts, lists and tuples nested more than `most` levels (the
    top level is level 1), or one that holds itself. Walked without recursion, each value once (a value held in two
    places, as a pickle may share it, counts at its deepest), so any depth torch.load rebuilds is refused here, not
    a RecursionError later, when it is written again (torch.save, json.dumps) or shown."""
    if not isinstance(value, _NESTED):
        return
    collecting = gc.isenabled()
    gc.disable()  # the walk makes a tuple per nested value: the collector would go over all of them, 3x slower
    try:
        _walk(value, path, most)
    finally:
        if collecting:
            gc.enable()


def _walk(value: Any, path: str | Path, most: int) -> None:
    height: dict[int, int] = {}  # id of a value walked -> its levels (1: no dict or list in it)
    walking: set[int] = set()  # ids of the values on the way down to the one walked now
    stack: list[tuple[Any, int, str, list | None]] = [(value, 1, "", None)]
    while stack:
        node, depth, where, kids = stack.pop()
        if kids is not None:  # all of node's nested values are walked
            walking.discard(id(node))
            height[id(node)] = 1 + max(height[id(c)] for _, c in kids)
        elif id(node) in walking:
            raise MalformedFile(f"{path}: {where or 'the top level'} holds itself: expected plain nested values "
                                "(vaelib writes no value that holds itself)")
        elif id(node) not in height:
            if depth > most:
                break
            kids = _nested_items(node)
            if kids:
                walking.add(id(node))
                stack.append((node, depth, where, kids))
                for key, child in kids:
                    if depth + 1 <= most and not _nested_items(child):  # most values: a row of numbers
                        height[id(child)] = 1
                    else:
                        stack.append((child, depth + 1, where + _step(key, node, where) if depth <= 3 else where,
                                      None))
                continue
            height[id(node)] = 1
        if depth + height[id(node)] - 1 > most:
            break
    else:
        return
    raise MalformedFile(f"{path}: {where or 'the top level'}... is nested more than {most} levels deep: expected at "
                        f"most {most} levels (vaelib writes a few)")


_NESTED = (dict, list, tuple)
_PLAIN = frozenset({int, float, str, bool, type(None)})  # exactly these types hold nothing nested


def _nested_items(node: Any) -> list[tuple[Any, Any]]:
    """(key, value) of each dict, list or tuple directly in node."""
    if _PLAIN.issuperset(map(type, node.values() if isinstance(node, dict) else node)):
        return []  # at C speed: most values are rows of numbers, and a history may hold 10**5 of them
    if isinstance(node, dict):
        return [(k, v) for k, v in node.items() if isinstance(v, _NESTED)]
    return [(i, v) for i, v in enumerate(node) if isinstance(v, _NESTED)]


def _step(key: Any, node: Any, where: str) -> str:
    """One step of a key path as a refusal names it: '.name' in a dict ('name' first), '[3]' in a list."""
    if isinstance(node, dict) and isinstance(key, str):
        return f"{'.' if where else ''}{key[:40]}"
    return f"[{key}]" if is_int(key) else "[...]"


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
