"""The checks every config dataclass runs on itself: each field's type, the ranges of integer fields, a choice
among names; a refusal is one line that names the field, the value and what is allowed. The public functions'
arguments are refused the same way (refuse_argument, check_int): 'name=value is invalid: allowed ...'."""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
import typing
from typing import Any, NoReturn

MAX_EPOCHS = 100_000  # passes; the longest preset runs 100
MAX_BETA = 1e6  # KL weight; published values lie in [0, 100]
MAX_FREE_BITS = 100.0  # nats per latent dimension; a KL of 100 nats in one dimension is already degenerate
MAX_SEED = 2**32  # exclusive: numpy's seed range; fit's shuffling seed, seed * 100_003 + epoch, stays in 64 bits
MAX_IMAGE_SIZE = 1024  # pixels per side; the largest preset uses 64
MAX_WIDTH = 4096  # channels of a conv layer, and latent dimensions; the widest preset uses 512 and 256
MAX_LAYERS = 10  # stride-2 layers: 2**10 pixels is MAX_IMAGE_SIZE
MAX_IMAGES = 10**9  # data.max_train; no dataset vaelib reads holds more
MAX_SHAPES = 10**6  # data.shapes_train: images generated and held in memory (the full budget makes 10,000)
MAX_BATCH_SIZE = 2**16  # images per step
MAX_STEPS = 10**9  # optimiser steps (anneal_steps, sync_every): 10,000 steps in each of MAX_EPOCHS epochs
MAX_RES_BLOCKS = 16  # residual blocks per stage; deep VAEs (NVAE) use 2-4
MAX_CODES = 2**16  # a VQ-VAE's codebook; published ones hold 512 to 8192
MAX_CYCLES = 10**6  # cyclic annealing: cycles over the run; more than one per step means nothing
MAX_SPLIT_BYTES = 2**34  # 16 GiB: the uint8 images load_dataset generates for one split (shapes: n * 3 * size**2);
#   a fixed bound, not the machine's memory, so a call is refused or not the same way everywhere
SEEDS = f"an integer >= 0 and < 2**32 ({MAX_SEED})"  # what a seed may be: train.seed, load_dataset's, the explorer's
INT_RANGES = {  # (least, most) of every integer field with a fixed range, by owner; the refusal names both
    "data": {"image_size": (8, MAX_IMAGE_SIZE), "max_train": (1, MAX_IMAGES), "shapes_train": (1, MAX_SHAPES)},
    "model": {"latent_dim": (1, MAX_WIDTH), "codebook_size": (2, MAX_CODES), "res_blocks": (0, MAX_RES_BLOCKS)},
    "schedule": {"anneal_steps": (1, MAX_STEPS), "cycles": (1, MAX_CYCLES)},
    "train": {"epochs": (1, MAX_EPOCHS), "batch_size": (1, MAX_BATCH_SIZE), "sync_every": (1, MAX_STEPS)},
}


def refuse(owner: str, name: str, value: Any, allowed: str) -> NoReturn:
    refuse_argument(f"{owner}.{name}", value, allowed)


def refuse_argument(name: str, value: Any, allowed: str) -> NoReturn:
    """The one line of every refusal: 'name=value is invalid: allowed ...' (a ValueError)."""
    raise ValueError(f"{name}={_shown(value)} is invalid: allowed {allowed}")


def check_int(name: str, value: Any, least: int, most: int | None = None, allowed: str = "") -> int:
    """value as an int (a numpy integer too, not a bool), refused in one line unless least <= value <= most;
    `allowed` replaces the refusal's 'an integer >= least and <= most'."""
    if not _is_int(value) or value < least or (most is not None and value > most):
        below = "" if most is None else f" and <= {most}"
        refuse_argument(name, value, allowed or f"an integer >= {least}{below}")
    return int(value)


def shown(value: Any) -> str:
    """A value as a refusal shows it, in one short line (see _shown)."""
    return _shown(value)


def _shown(value: Any, depth: int = 0) -> str:
    """repr, but an integer of more than 30 digits as '1000...000 (401 digits)' (repr fails beyond 4300), and an
    object that is no plain value (a tensor, an array, a dict, a long list, a list nested more than 3 levels: repr
    would recurse past Python's limit on a deep one) by its type and size: one short line."""
    if isinstance(value, (tuple, list)) and len(value) <= 32 and depth < 3:
        inner = ", ".join(_shown(v, depth + 1) for v in value) + ("," if len(value) == 1 and isinstance(value, tuple)
                                                                   else "")
        return f"({inner})" if isinstance(value, tuple) else f"[{inner}]"
    if not isinstance(value, (numbers.Number, str, bytes, type(None))):
        return _described(value)
    if not _is_int(value) or abs(value) < 10**30:
        return repr(value)
    magnitude = abs(int(value))
    digits = int(magnitude.bit_length() * math.log10(2)) + 1
    digits -= 10 ** (digits - 1) > magnitude  # the estimate can be one too many
    return f"{'-' * (value < 0)}{magnitude // 10 ** (digits - 4)}...{magnitude % 1000:03d} ({digits} digits)"


def _described(value: Any) -> str:
    """'<tensor int64 (4, 1, 16, 16)>', '<ndarray uint8 (2, 3)>', '<dict of 4 keys>', '<list of 40 items>', or the
    repr of anything else when it is one short line, else '<TypeName>'."""
    name = type(value).__name__
    shape, dtype = getattr(value, "shape", None), getattr(value, "dtype", None)
    if isinstance(shape, tuple) and dtype is not None:  # torch.Size is a tuple
        return f"<{'tensor' if name == 'Tensor' else name} {str(dtype).removeprefix('torch.')} {tuple(shape)}>"
    if isinstance(value, dict):
        return f"<dict of {len(value)} keys>"
    if isinstance(value, (tuple, list, set, frozenset)):
        return f"<{name} of {len(value)} items>"
    text = repr(value)
    return text if len(text) <= 80 and "\n" not in text else f"<{name}>"


def check_ranges(owner: str, obj: Any) -> None:
    """Refuse an integer field outside INT_RANGES in one line that gives the range (after check_types)."""
    for name, (least, most) in INT_RANGES[owner].items():
        value = getattr(obj, name)
        if value is not None and not least <= value <= most:
            either = "None or " if _field_kinds(type(obj))[name][1] else ""
            refuse(owner, name, value, f"{either}an integer >= {least} and <= {most}")


@functools.cache
def _field_kinds(cls: type) -> dict[str, tuple[Any, bool]]:
    """{field: (its type, whether None is allowed)} from the resolved annotations of a config dataclass."""
    kinds = {}
    for name, hint in typing.get_type_hints(cls).items():
        args = typing.get_args(hint)
        optional = type(None) in args
        if optional:
            hint = next(a for a in args if a is not type(None))
        kinds[name] = (hint, optional)
    return kinds


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_types(owner: str, obj: Any) -> None:
    """Refuse a value of the wrong type in one line (a float seed, a string epoch count, a schedule given as a
    word), before any range check could fail on it with a deep TypeError. A whole number in a float field is
    fine (lr=1); a float in an int field is not (seed=1.0). normalise_numbers runs after the range checks."""
    for name, (kind, optional) in _field_kinds(type(obj)).items():
        value = getattr(obj, name)
        if value is None and optional:
            continue
        either = " or None" if optional else ""
        if kind is int and not _is_int(value):
            refuse(owner, name, value, "an integer" + either)
        elif kind is float:
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                refuse(owner, name, value, "a number" + either)
            try:
                float(value)
            except OverflowError:
                refuse(owner, name, value, "a finite number" + either)
        elif kind in (bool, str) and not isinstance(value, kind):
            refuse(owner, name, value, ("true or false" if kind is bool else "a string") + either)
        elif typing.get_origin(kind) is tuple and (isinstance(value, (str, bytes))
                                                    or not isinstance(value, (tuple, list))
                                                    or not all(_is_int(v) for v in value)):
            refuse(owner, name, value, "a list of integers")
        elif dataclasses.is_dataclass(kind) and not isinstance(value, (kind, dict)):
            refuse(owner, name, value, f"a {kind.__name__} or a dict of its fields")


def normalise_numbers(obj: Any) -> None:
    """ints in int fields, floats in float fields (np.int64(3) -> 3, 4 -> 4.0): equal configs, equal cache keys."""
    for name, (kind, _) in _field_kinds(type(obj)).items():
        value = getattr(obj, name)
        if value is not None and kind in (int, float):
            object.__setattr__(obj, name, kind(value))
        elif value is not None and typing.get_origin(kind) is tuple:
            object.__setattr__(obj, name, tuple(int(v) for v in value))


def choice(owner: str, name: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        refuse(owner, name, value, "one of " + ", ".join(allowed))


