"""The run cache: a finished run of a config is loaded instead of trained again. A run lives in
runs/<preset>-<hash>, the hash of everything that shapes the trained model (config.comparable), with its
checkpoint, history and metrics; one process at a time trains a config (the folder's lock).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any, TypeVar

from torch import nn

from vaelib.config import Config, comparable
from vaelib.experiments.evidence import StopWhenConverged, stopped
from vaelib.io.lock import run_lock
from vaelib.runtime import resolve_device
from vaelib.training import distributed
from vaelib.training.allocator import tune_cpu_allocator
from vaelib.training.history import History
from vaelib.training.jsonfiles import read_history
from vaelib.training.trainer import CHECKPOINT, HISTORY, fit

T = TypeVar("T")
FAILED = "failed.json"  # beside a run's checkpoint: the run went non-finite (runsets records it)


KEY_VERSION = 2  # the definition of the run key; a new definition bumps it (tools/migrate_run_keys.py renamed
# the runs of version 1 to their version-2 folders)


def config_hash(config: Config) -> str:
    """A short stable hash of everything that shapes the trained model, and of KEY_VERSION: the cache key of a run.

    Where the dataset files live (data.root) and whether they may be downloaded do not change the model.
    """
    d = {"key_version": KEY_VERSION, **comparable(config).to_dict()}
    return hashlib.sha256(json.dumps(d, indent=2, sort_keys=True).encode()).hexdigest()[:10]  # 10 hex digits


def run_dir(config: Config, root: str | Path = "runs") -> Path:
    """runs/<preset>-<hash>: where a config's checkpoint, history and metrics live."""
    return Path(root) / f"{config.name}-{config_hash(config)}"


CACHE_WAIT = 24 * 3600.0  # seconds the run cache waits for another process training the same config


def run_config(config: Config, out: str | Path, train: Any = None, val: Any = None, *, device: str | None = None,
               quiet: bool = False, tune_allocator: bool = True, wait: float = 0.0, retrain: bool = False,
               log_dir: str | Path | None = None, then: Callable[[nn.Module, History], T] | None = None
               ) -> tuple[nn.Module, History, bool, T | None]:
    """The one way to run a config, as the run cache (the notebooks, the reports) and the train command do: train it
    into `out` (or resume it there, or load it if it is finished), then `then(model, history)`; returns (model,
    history, whether the allocator is tuned, what `then` returned).

    On the CPU it first tunes glibc's allocator for the whole process (training/allocator.py: no page faults per
    step, the process keeps its peak heap); tune_allocator=False or VAELIB_MALLOC_TUNING=0 leaves it alone. The
    numbers do not change either way; `fit` itself never tunes it. The folder's lock is held throughout, by rank 0
    under torchrun: another process running the same folder is waited for up to `wait` seconds (0: refused at
    once). train.stop_tol > 0 stops the run once it has converged (experiments.evidence.StopWhenConverged).
    """
    tuned = bool(tune_allocator and resolve_device(device).type == "cpu" and tune_cpu_allocator())
    out = Path(out)
    with run_lock(out, wait=wait) if distributed.is_main() else nullcontext():
        if retrain and (out / CHECKPOINT).exists():
            (out / CHECKPOINT).unlink()
        model, history = fit(config, train, val, device=device, out_dir=out, quiet=quiet, log_dir=log_dir,
                             stop=StopWhenConverged(config))
        return model, history, tuned, then(model, history) if then is not None else None


def cached_fit(config: Config, train: Any = None, val: Any = None, *, root: str | Path = "runs",
               retrain: bool = False, device: str | None = None, quiet: bool = False, tune_allocator: bool = True,
               wait: float = CACHE_WAIT):
    """run_config into the cache: a finished run of the same config is loaded instead of retrained; returns
    (model, history, its folder run_dir(config, root)). Another process training the same config holds its
    folder's lock: this one waits for it (up to `wait` seconds, saying so once) and then loads what it trained
    (or resumes it, if it stopped early)."""
    out = run_dir(config, root)
    model, history, _, _ = run_config(config, out, train, val, device=device, quiet=quiet,
                                      tune_allocator=tune_allocator, wait=wait, retrain=retrain)
    return model, history, out


def trained(config: Config, root: str | Path = "runs") -> bool:
    """Whether the cache already holds this config's finished run: its epochs all done, stopped at convergence,
    or failed (failed.json)."""
    path = run_dir(config, root)
    if (path / FAILED).exists():
        return True
    if not (path / HISTORY).exists():
        return False
    try:
        history = read_history(path / HISTORY)
    except ValueError:
        return False  # unreadable: let fit decide (it refuses or retrains in one line)
    return len(history.epochs) >= config.train.epochs or stopped(history, config)
