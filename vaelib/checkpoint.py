"""Self-describing, atomically written checkpoints."""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any

import torch
from torch.torch_version import TorchVersion

from .families import build_model
from .files import save_json, save_torch, shareable_mode  # noqa: F401 (save_json, shareable_mode: re-exported)
from .schema import MODEL_KEYS, WEIGHTS_KEYS, MalformedFile, check_checkpoint, checkpoint_config


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Atomically torch.save a dict, e.g. a checkpoint or a dataset cache (a crash leaves the old file intact)."""
    save_torch(path, state)


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """The raw checkpoint dict; refuses missing, corrupt, foreign or code-carrying files with a clear message.

    Loading never runs code from the file: torch.load(weights_only=True) rebuilds only tensors and plain
    Python types, so a checkpoint shared by someone else is safe to open. Checkpoints written before
    versions() stored strings hold torch's TorchVersion (a str subclass); it is allowed by name.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    try:
        with torch.serialization.safe_globals([TorchVersion]):
            state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        if "GLOBAL" not in str(err):  # not a refused global: bytes that are no pickle torch can read
            raise MalformedFile(f"checkpoint {str(path)!r} is unreadable (truncated, empty or not a torch file): "
                                f"{_last_line(err)}") from None
        raise MalformedFile(f"checkpoint {str(path)!r} is refused: it holds objects other than tensors and plain "
                         f"Python types, and loading it could run code ({_global_named(err)}); vaelib never "
                         "writes such files") from None
    except Exception as err:  # torch reports a truncated or foreign file in many ways (EOFError, KeyError, ...)
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise MalformedFile(f"checkpoint {str(path)!r} is unreadable (truncated, empty or not a torch file): "
                            f"{first}") from None
    if not isinstance(state, dict) or "config" not in state or "model" not in state:
        raise MalformedFile(f"{str(path)!r} is not a vaelib checkpoint (no config/model entries)")
    return state


def _last_line(err: Exception) -> str:
    lines = [line for line in str(err).splitlines() if line.strip()]
    return lines[-1] if lines else type(err).__name__


def _global_named(err: Exception) -> str:
    """The 'module.name' a weights-only load refused, from torch's message, or a generic phrase."""
    match = re.search(r"GLOBAL ([\w.]+)", str(err))
    return f"it calls for {match.group(1)}" if match else "it names a global"


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu"):
    """Rebuild the trained model from a checkpoint alone: returns (model, state).

    Its config, weights (each tensor's shape against the model the config builds) and, where present, history
    and epoch are checked first (schema.check_checkpoint): a malformed one is refused in one line."""
    state = read_checkpoint(path, map_location=device)
    model = build_model(checkpoint_config(state, path)).to(device)
    check_checkpoint(state, path, model, require=WEIGHTS_KEYS, keys=MODEL_KEYS)
    model.load_state_dict(state["model"])
    model.eval()
    return model, state
