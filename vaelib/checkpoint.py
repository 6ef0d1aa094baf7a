"""Self-describing, atomically written checkpoints."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from .config import Config


def atomic_write_bytes(path: str | Path, write: Any) -> None:
    """Call write(file) on a temporary file beside `path`, fsync, then rename over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_json(path: str | Path, obj: Any) -> None:
    """Atomically write obj as indented JSON."""
    data = json.dumps(obj, indent=2, sort_keys=True, default=str).encode()
    atomic_write_bytes(path, lambda f: f.write(data))


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Atomically torch.save a dict, e.g. a checkpoint or a dataset cache (a crash leaves the old file intact)."""
    atomic_write_bytes(path, lambda f: torch.save(state, f))


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """The raw checkpoint dict; refuses missing or foreign files with a clear message."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    state = torch.load(path, map_location=map_location, weights_only=False)
    if not isinstance(state, dict) or "config" not in state or "model" not in state:
        raise ValueError(f"{str(path)!r} is not a vaelib checkpoint (no config/model entries)")
    return state


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu"):
    """Rebuild the trained model from a checkpoint alone: returns (model, state)."""
    from .model import VAE

    state = read_checkpoint(path, map_location=device)
    model = VAE(Config.from_dict(state["config"])).to(device)
    model.load_state_dict(state["model"])
    model.eval()
    return model, state
