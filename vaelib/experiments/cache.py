"""The run cache: a finished run of a config is loaded instead of trained again. A run lives in
runs/<preset>-<hash>, the hash of everything that shapes the trained model (config.comparable), with its
checkpoint, history and metrics; one process at a time trains a config (the folder's lock).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any, TypeVar

from torch import nn

from vaelib.config import Config, comparable
from vaelib.data.datasets import DATA_VERSION
from vaelib.experiments.evidence import DEFAULT_TOL, StopWhenConverged, judge_run, stopped
from vaelib.io.files import save_json
from vaelib.io.lock import run_lock
from vaelib.runtime import resolve_device
from vaelib.training import distributed
from vaelib.training.allocator import tune_cpu_allocator
from vaelib.training.history import History
from vaelib.training.jsonfiles import read_history
from vaelib.training.trainer import CHECKPOINT, HISTORY, fit

T = TypeVar("T")
FAILED = "failed.json"  # beside a run's checkpoint: the run went non-finite (experiments.runs records it)


KEY_VERSION = 2  # the definition of the run key; a new definition bumps it (tools/migrate_run_keys.py renamed
# the runs of version 1 to their version-2 folders)


# (section, field): left out of the key at its default, so the runs cached before the field existed keep their keys
UNKEYED_AT_DEFAULT = (("model", "logvar_max"), ("model", "output_bias"), ("train", "target_rate"))
DEFAULTS = {section: getattr(Config(), section) for section in ("data", "model", "train")}  # built once


def config_hash(config: Config) -> str:
    """A short stable hash of everything that shapes the trained model, of KEY_VERSION and of the data's version
    (data.datasets.DATA_VERSION, where it is not 1): the cache key of a run.

    Where the dataset files live (data.root) and whether they may be downloaded do not change the model.
    """
    return _digest(_key(config))


def _key(config: Config) -> dict[str, Any]:
    """What the run key hashes: KEY_VERSION, the comparable config and, for a dataset whose loader has changed the
    images or order of its splits (data.datasets.DATA_VERSION), that version (absent at 1, so no other key changes)."""
    d = {"key_version": KEY_VERSION, **comparable(config).to_dict()}
    for section, name in UNKEYED_AT_DEFAULT:  # fields added after runs were cached: absent at their default
        if d[section][name] == getattr(DEFAULTS[section], name):
            del d[section][name]
    version = DATA_VERSION.get(config.data.dataset, 1)
    if version != 1:
        d["data_version"] = version
    return d


def _digest(d: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(d, indent=2, sort_keys=True).encode()).hexdigest()[:10]  # 10 hex digits


def run_dir(config: Config, root: str | Path = "runs") -> Path:
    """runs/<preset>-<hash>: where a config's checkpoint, history and metrics live."""
    return Path(root) / f"{config.name}-{config_hash(config)}"


CACHE_WAIT = 24 * 3600.0  # seconds the run cache waits for another process training the same config


MARKER = ".vaelib-run.json"  # in every run folder: which run it holds, so that vaelib writes only into its own
RUN_FILES = frozenset({CHECKPOINT, HISTORY, FAILED, "metrics.json", ".lock", MARKER})  # what a run folder may hold


def run_identity(config: Config) -> str:
    """What a run folder's marker records: the config's key with its epochs left out (a resume may add epochs)."""
    d = _key(config)
    d["train"]["epochs"] = 1  # in the dict, not the config: a run with min_epochs > 1 has no valid 1-epoch config
    return _digest(d)


def check_owner(config: Config, out: Path, force: bool = False) -> None:
    """Refuse, in one line and before anything is written, a folder that is not this config's run: vaelib writes
    only into a folder that is new or empty, marked as this config's run (MARKER, written by run_config once the
    run is trained), or an unmarked run of an earlier vaelib (it holds a checkpoint or failed.json and nothing but
    what a run writes); force=True takes any folder."""
    mine = run_identity(config)
    if not force and (out / MARKER).is_file():
        marker = _marker(out)
        held = (marker or {}).get("run")
        if held != mine:
            said = f"says {str(held)[:40]!r}" if marker is not None else "cannot be read"
            raise ValueError(f"{out} holds another run (its {MARKER} {said}, this config is {mine!r}): "
                             "allowed this config's run folder, a new or empty one, or --force to replace it")
    elif not force and out.is_dir():
        names = {p.name for p in out.iterdir() if p.name != ".lock" and not p.name.endswith(".tmp")}
        earlier_run = bool(names & {CHECKPOINT, FAILED}) and all(n in RUN_FILES or n.endswith(".png")
                                                                  for n in names)
        if names and not earlier_run:
            shown = ", ".join(sorted(names)[:3]) + (", ..." if len(names) > 3 else "")
            raise ValueError(f"{out} holds files vaelib did not write as a run ({shown}): allowed a new or empty "
                             "folder or one of vaelib's run folders, or --force to write there anyway")


def _mark(config: Config, history: History, out: Path) -> None:
    """Write the run folder's marker: which run it holds, and its convergence judged once (evidence.judge_run) for
    the history it holds now; a marker that already holds this run's judgement of these epochs is left as it is."""
    held = _marker(out) or {}
    mark = {"run": run_identity(config), "name": config.name, "convergence": held.get("convergence")}
    tol = config.train.stop_tol or DEFAULT_TOL
    if held.get("run") != mark["run"] or (stored_convergence(out) or {}).get("epochs") != len(history.epochs) or \
            held["convergence"].get("tol") != tol:
        mark["convergence"] = _strict(judge_run(history, config))
    if held != mark:
        save_json(out / MARKER, mark)


def _strict(d: dict[str, Any]) -> dict[str, Any]:
    """A judgement as strict JSON: nan as None."""
    return {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in d.items()}


def stored_convergence(out: str | Path) -> dict[str, Any] | None:
    """The convergence judgement run_config stored in a run folder's marker (evidence.judge_run when the run was
    trained or last resumed; None as nan), or None where the folder holds none (a run of an earlier vaelib)."""
    held = (_marker(Path(out)) or {}).get("convergence")
    if not isinstance(held, dict) or not {"converged", "state", "tol", "epochs"} <= set(held):
        return None
    return {k: math.nan if v is None and k in ("share", "improvement") else v for k, v in held.items()}


def _marker(out: Path) -> dict | None:
    """The run folder's marker, or None where it is missing or unreadable."""
    try:
        d = json.loads((out / MARKER).read_text())
    except (OSError, ValueError, RecursionError):  # unreadable, not JSON, or nested past the parser's depth
        return None
    return d if isinstance(d, dict) else None


def run_config(config: Config, out: str | Path, train: Any = None, val: Any = None, *, device: str | None = None,
               quiet: bool = False, tune_allocator: bool = True, wait: float = 0.0, retrain: bool = False,
               log_dir: str | Path | None = None, force: bool = False,
               then: Callable[[nn.Module, History], T] | None = None) -> tuple[nn.Module, History, T | None]:
    """The one way to run a config, as the run cache (the notebooks, the reports) and the train command do: train it
    into `out` (or resume it there, or load it if it is finished), then `then(model, history)`; returns (model,
    history, what `then` returned).

    On the CPU it first tunes glibc's allocator for the whole process (training/allocator.py: no page faults per
    step, the process keeps its peak heap); tune_allocator=False or VAELIB_MALLOC_TUNING=0 leaves it alone. The
    numbers do not change either way; `fit` itself never tunes it. The folder's lock is held throughout, by rank 0
    under torchrun: another process running the same folder is waited for up to `wait` seconds (0: refused at
    once). A folder that is not this config's run is refused before anything is written (check_owner; force=True
    takes it anyway). train.stop_tol > 0 stops the run once it has converged (experiments.evidence.StopWhenConverged).
    """
    if tune_allocator and resolve_device(device).type == "cpu":
        tune_cpu_allocator()
    out = Path(out)
    with run_lock(out, wait=wait) if distributed.is_main() else nullcontext():
        if distributed.is_main():
            check_owner(config, out, force)
        if retrain and (out / CHECKPOINT).exists():
            (out / CHECKPOINT).unlink()
        model, history = fit(config, train, val, device=device, out_dir=out, quiet=quiet, log_dir=log_dir,
                             stop=StopWhenConverged(config))
        if distributed.is_main():  # the folder is this run's, and how it ended: said once, not at every load
            _mark(config, history, out)
        return model, history, then(model, history) if then is not None else None


def cached_fit(config: Config, train: Any = None, val: Any = None, *, root: str | Path = "runs",
               retrain: bool = False, device: str | None = None, quiet: bool = False, tune_allocator: bool = True,
               wait: float = CACHE_WAIT):
    """run_config into the cache: a finished run of the same config is loaded instead of retrained; returns
    (model, history, its folder run_dir(config, root)). Another process training the same config holds its
    folder's lock: this one waits for it (up to `wait` seconds, saying so once) and then loads what it trained
    (or resumes it, if it stopped early)."""
    out = run_dir(config, root)
    model, history, _ = run_config(config, out, train, val, device=device, quiet=quiet,
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
