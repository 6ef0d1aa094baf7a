"""The run cache: a finished run of a config is loaded instead of trained again. A run lives in
runs/<preset>-<hash>, the hash of everything that shapes the trained model (config.comparable), with its
checkpoint, history and metrics; one process at a time trains a config (the folder's lock).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from vaelib.config import Config, comparable
from vaelib.experiments.evidence import StopWhenConverged, stopped
from vaelib.io.lock import run_lock
from vaelib.runtime import resolve_device
from vaelib.training.allocator import tune_cpu_allocator
from vaelib.training.jsonfiles import read_history
from vaelib.training.trainer import CHECKPOINT, HISTORY, fit

FAILED = "failed.json"  # beside a run's checkpoint: the run went non-finite (runsets records it)


KEY_VERSION = 2  # the definition of the run key; a new definition bumps it and carries the older runs over


def config_hash(config: Config) -> str:
    """A short stable hash of everything that shapes the trained model, and of KEY_VERSION: the cache key of a run.

    Where the dataset files live (data.root) and whether they may be downloaded do not change the model.
    """
    return _digest({"key_version": KEY_VERSION, **comparable(config).to_dict()})


def _digest(d: dict) -> str:
    """The first 10 hex digits of the SHA-256 of d as sorted JSON: what every key version hashes."""
    return hashlib.sha256(json.dumps(d, indent=2, sort_keys=True).encode()).hexdigest()[:10]


def run_dir(config: Config, root: str | Path = "runs") -> Path:
    """runs/<preset>-<hash>: where a config's checkpoint, history and metrics live."""
    return Path(root) / f"{config.name}-{config_hash(config)}"


# Key version 1, kept only to find runs cached under it: no key_version in the hash, and the fields added after the
# first runs were cached left out while at their defaults (so that those runs had kept their folders).
V1_LEFT_OUT = {("train", "stop_tol"): 0.0, ("train", "min_epochs"): 0, ("model", "kind"): "vae",
               ("model", "codebook_size"): 512, ("model", "commitment"): 0.25}
# Fields version 1 did not have: dropped from its hash. The codebook's are at their defaults in every config it can
# be asked for (comparable resets them unless kind is "vq", and a VQ-VAE has no version-1 run); only res_blocks = 0
# behaves as version 1 did.
V1_ABSENT = (("model", "codebook_decay"), ("model", "dead_code_threshold"), ("model", "res_blocks"))


def v1_hash(config: Config) -> str | None:
    """The run key of `config` under key version 1; None where no run of version 1 can be this config, and for
    every VQ-VAE (version 1's had neither EMA nor restarts, and its checkpoints do not say so: retrained)."""
    if config.model.kind == "vq" or config.model.res_blocks != 0:
        return None
    d = comparable(config).to_dict()
    for part, name in V1_ABSENT:
        del d[part][name]
    for (part, name), default in V1_LEFT_OUT.items():
        if d[part].get(name) == default:
            del d[part][name]
    return _digest(d)


def carry_over(config: Config, root: str | Path = "runs") -> Path:
    """The config's run folder (run_dir), first renamed from its key-version-1 name when only that one exists: a
    run cached before the key changed is found, not trained again. Returns run_dir(config, root)."""
    new, then = run_dir(config, root), v1_hash(config)
    old = Path(root) / f"{config.name}-{then}"
    if then is not None and not new.exists() and old.is_dir():
        try:
            old.rename(new)  # atomic; a second process that renamed it first leaves nothing to rename
        except OSError:
            if not new.exists():
                raise
    return new


CACHE_WAIT = 24 * 3600.0  # seconds the run cache waits for another process training the same config


def cached_fit(config: Config, train: Any = None, val: Any = None, *, root: str | Path = "runs",
               retrain: bool = False, device: str | None = None, quiet: bool = False, tune_allocator: bool = True,
               wait: float = CACHE_WAIT):
    """fit(), but a finished run of the same config is loaded instead of retrained; returns (model, history, dir).

    Another process training the same config holds its folder's lock: this one waits for it (up to `wait`
    seconds, saying so once) and then loads what it trained (or resumes it, if it stopped early).

    On the CPU it first tunes glibc's allocator for the whole process (perf/allocator.py: no page faults per
    step, the process keeps its peak heap); tune_allocator=False or VAELIB_MALLOC_TUNING=0 leaves it alone.
    The numbers do not change either way. `fit` itself never tunes it.
    """
    if tune_allocator and resolve_device(device).type == "cpu":
        tune_cpu_allocator()
    out = carry_over(config, root)
    with run_lock(out, wait=wait):  # one writer per run folder: a second notebook training this config waits
        if retrain and (out / CHECKPOINT).exists():
            (out / CHECKPOINT).unlink()
        model, history = fit(config, train, val, device=device, out_dir=out, quiet=quiet,
                             stop=StopWhenConverged(config))
    return model, history, out


def trained(config: Config, root: str | Path = "runs") -> bool:
    """Whether the cache already holds this config's finished run: its epochs all done, stopped at convergence,
    or failed (failed.json)."""
    path = carry_over(config, root)
    if (path / FAILED).exists():
        return True
    if not (path / HISTORY).exists():
        return False
    try:
        history = read_history(path / HISTORY)
    except ValueError:
        return False  # unreadable: let fit decide (it refuses or retrains in one line)
    return len(history.epochs) >= config.train.epochs or stopped(history, config)
