"""Sets of runs: every labelled config trained (or loaded from the run cache) once per seed, in one process or a
pool of them. A run that raises `NonFiniteLossError` does not stop a set: it is recorded as failed, with the
step where training stopped, and a `failed.json` beside its checkpoint, so that a cached re-run reports the same
failure without training again. Losses are nats per image, as everywhere in vaelib.
"""

from __future__ import annotations

import math
import multiprocessing
import re
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from vaelib.config import Config, with_overrides
from vaelib.experiments.cache import FAILED, cached_fit, config_hash, run_dir, stored_convergence, trained
from vaelib.io.files import save_json
from vaelib.runtime import headless, resolve_device
from vaelib.schedules import beta_at, layout_epochs
from vaelib.training.history import History
from vaelib.training.jsonfiles import read_failed, read_history
from vaelib.training.trainer import HISTORY, NonFiniteLossError


@dataclass
class Run:
    """One trained (or failed) config of an ablation."""

    label: str
    config: Config
    model: Any  # the trained VAE, None when the run failed
    history: History  # fit's history; for a failed run, up to its last finished epoch
    path: Path
    failed_step: int | None = None  # the optimiser step that went non-finite
    error: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    convergence: dict[str, Any] | None = None  # judged once, when it was trained (experiments.cache.run_config)

    @property
    def failed(self) -> bool:
        return bool(self.error)


def with_epochs(config: Config, epochs: int = 0) -> Config:
    """The config with `epochs` passes (0 keeps the config's own), and warmups scaled to keep their share."""
    if epochs <= 0 or epochs == config.train.epochs:
        return config
    s = config.train.schedule
    overrides: dict[str, Any] = {"train.epochs": epochs}
    if s.kind == "warmup":
        overrides["train.schedule.warmup_epochs"] = round(s.warmup_epochs * epochs / config.train.epochs, 2)
    return with_overrides(config, **overrides)


def run_one(label: str, config: Config, train: Any, val: Any, *, root: str | Path = "runs", retrain: bool = False,
            device: str | None = None) -> Run:
    """cached_fit one config; a NonFiniteLossError becomes a failed Run (remembered in failed.json)."""
    path = run_dir(config, root)
    marker = path / FAILED
    if marker.exists() and not retrain:
        return _failed_run(label, config, path, read_failed(marker))
    marker.unlink(missing_ok=True)
    try:
        model, history, path = cached_fit(config, train, val, root=root, retrain=retrain, device=device, quiet=True)
    except NonFiniteLossError as err:
        match = re.search(r"at step (\d+)", str(err))
        info = {"step": int(match.group(1)) if match else None, "error": str(err)}
        path.mkdir(parents=True, exist_ok=True)
        save_json(marker, info)
        return _failed_run(label, config, path, info)
    return Run(label, config, model, history, path, convergence=stored_convergence(path))


def _failed_run(label: str, config: Config, path: Path, info: dict[str, Any]) -> Run:
    saved = path / HISTORY
    history = read_history(saved) if saved.exists() else History()
    return Run(label, config, None, history, path, failed_step=info["step"], error=info["error"] or "non-finite")


def run_all(configs: dict[str, Config], train: Any, val: Any, **kwargs: Any) -> dict[str, Run]:
    """run_one for every labelled config, in order."""
    return {label: run_one(label, c, train, val, **kwargs) for label, c in configs.items()}


def with_seed(config: Config, seed: int) -> Config:
    """The same config trained from another seed (weights, batch order, reparameterisation noise)."""
    return with_overrides(config, **{"train.seed": seed})


def seeds_from(first: int, n: int) -> list[int]:
    """n consecutive seeds starting at the notebook's seed: `first` itself is the seed of the single runs."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"seeds={n!r} is invalid: allowed an integer >= 1 (2 or more for an uncertainty)")
    return [first + k for k in range(n)]


def run_seeds(configs: dict[str, Config], seeds: list[int], train: Any, val: Any, *, workers: int = 1,
              **kwargs: Any) -> dict[str, list[Run]]:
    """Every labelled config once per seed (cached like run_all): {label: [run per seed]}, seed order kept.

    One progress bar over all (setting, seed) runs, off when notebooks run unattended (runtime.headless).
    workers > 1 (CPU only) first trains the runs missing from the cache in that many processes (train_in_workers),
    then loads every run from the cache in order, so the result has the same form either way.
    """
    if workers != 1:
        train_in_workers([with_seed(c, s) for c in configs.values() for s in seeds], train, val, workers=workers,
                         **kwargs)
    out: dict[str, list[Run]] = {label: [] for label in configs}
    with tqdm(total=len(configs) * len(seeds), desc=f"{len(configs)} settings x {len(seeds)} seeds", unit="run",
              disable=True if headless() else None, leave=False) as bar:
        for label, c in configs.items():
            for s in seeds:
                bar.set_postfix_str(f"{label}, seed {s}")
                out[label].append(run_one(label, with_seed(c, s), train, val, **kwargs))
                bar.update(1)
    return out


# --- a grid of runs in parallel processes (CPU) ------------------------------------------------------------

def _worker_init(threads: int) -> None:
    torch.set_num_threads(threads)


def _train_one(config: Config, train: Any, val: Any, root: str, retrain: bool) -> None:
    run_one("", config, train, val, root=root, retrain=retrain, device="cpu")  # a non-finite run is recorded


def train_in_workers(configs: list[Config], train: Any, val: Any, *, workers: int = 2, root: str | Path = "runs",
                     retrain: bool = False, device: str | None = None) -> list[Config]:
    """Train every config not yet in the cache (`trained`) in `workers` processes, each with an equal share of
    the CPU threads; returns the configs it trained. Load them afterwards with run_one / run_seeds.

    Small models do not keep two cores busy with one process (benchmarks/grid_workers.py measures the gain side
    by side). The numbers of a run depend on its thread count (the order of float sums), as on any machine with
    another core count: a run trained here with 1 thread differs in the last digits from the same config trained
    with 2, and the history records `threads` in its options. On a GPU, or with workers=1, this does nothing.
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers={workers!r} is invalid: allowed an integer >= 1")
    if workers == 1 or resolve_device(device).type != "cpu":
        return []
    todo = list({config_hash(c): c for c in configs if retrain or not trained(c, root)}.values())  # each once
    if not todo:
        return []
    threads = max(1, torch.get_num_threads() // workers)
    ctx = multiprocessing.get_context("spawn")  # fork after torch's thread pools start can deadlock
    with ProcessPoolExecutor(max_workers=min(workers, len(todo)), mp_context=ctx, initializer=_worker_init,
                             initargs=(threads,)) as pool, \
            tqdm(total=len(todo), desc=f"{len(todo)} runs in {workers} processes", unit="run",
                 disable=True if headless() else None, leave=False) as bar:
        futures = [pool.submit(_train_one, c, train, val, str(root), retrain) for c in todo]
        for f in as_completed(futures):
            f.result()  # a worker's error (other than a recorded non-finite run) is raised here
            bar.update(1)
    return todo


def failure(run: Run) -> str:
    """What became of a failed run, for a finding: 'non-finite loss at step 600 (beta 0.1)'; '' if it finished."""
    if not run.failed:
        return ""
    h, s = run.history, run.config.train.schedule
    where = f" at step {run.failed_step}" if run.failed_step is not None else ""
    if run.failed_step is not None and h.epochs:  # the steps per epoch, read from the finished epochs
        spe = len(h.steps) // len(h.epochs)
        where += f" (beta {beta_at(s, run.failed_step, spe, spe * layout_epochs(run.config.train)):g})"
    return f"non-finite loss{where}{_frozen_before(h)}"


def _frozen_before(history: History) -> str:
    """What the recorded steps of a failed run show before it failed: when its gradient had been exactly 0 up to
    the last recorded step (a saturated decoder: the run froze, and the step that failed is the first one a new
    term, e.g. the KL at a warmup's switch, could move), since which step, and the KL there."""
    grads = [row.get("grad_norm") for row in history.steps]
    if not grads or grads[-1] != 0.0:
        return ""
    first = len(grads)
    while first > 0 and grads[first - 1] == 0.0:
        first -= 1
    kl = history.steps[-1].get("kl", math.nan)
    return (f"; frozen before it: gradient exactly 0 from step {history.steps[first]['step']} to the last recorded "
            f"step {history.steps[-1]['step']}, KL {kl:.3g} nats there")
