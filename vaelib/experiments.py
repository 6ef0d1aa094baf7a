"""Experiments: the run cache (keyed by config hash), sets of runs whose failures are recorded, seeds, the
summary row of a run (with its convergence), and a notebook's config per dataset and budget.

A run that raises `NonFiniteLossError` does not stop a set: it is recorded as failed, with the step where
training stopped, and a `failed.json` beside its checkpoint so that a cached re-run reports the same failure
without training again. Losses are nats per image, as everywhere in vaelib.
"""

from __future__ import annotations

import hashlib
import json
import math
import multiprocessing
import re
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from . import metrics
from .config import DATASETS, Config, comparable, get_preset, with_overrides
from .evidence import convergence
from .files import save_json
from .history import History
from .jsonfiles import read_failed, read_history
from .lock import run_lock
from .perf.allocator import tune_cpu_allocator
from .runtime import headless, resolve_device
from .schedules import beta_at
from .train import CHECKPOINT, HISTORY, NonFiniteLossError, fit, stopped


def config_hash(config: Config) -> str:
    """A short stable hash of everything that shapes the trained model: the cache key of a run.

    Where the dataset files live (data.root) and whether they may be downloaded do not change the model.
    """
    d = comparable(config).to_dict()
    for (part, name), default in KEY_NEUTRAL.items():  # fields newer than the cached runs: keep their folders
        if d[part].get(name) == default:
            del d[part][name]
    return hashlib.sha256(json.dumps(d, indent=2, sort_keys=True).encode()).hexdigest()[:10]


# Config fields added after runs were cached and shipped: left out of the key while at their default, so that
# every earlier run (and vaelib/pretrained/) keeps its folder name.
KEY_NEUTRAL = {("train", "stop_tol"): 0.0, ("train", "min_epochs"): 0, ("model", "kind"): "vae"}


def run_dir(config: Config, root: str | Path = "runs") -> Path:
    """runs/<preset>-<hash>: where a config's checkpoint, history and metrics live."""
    return Path(root) / f"{config.name}-{config_hash(config)}"


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
    out = run_dir(config, root)
    with run_lock(out, wait=wait):  # one writer per run folder: a second notebook training this config waits
        if retrain and (out / CHECKPOINT).exists():
            (out / CHECKPOINT).unlink()
        model, history = fit(config, train, val, device=device, out_dir=out, quiet=quiet)
    return model, history, out


# --- runs of a set of configs: failures recorded, not raised -------------------------------------

FAILED = "failed.json"


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
    return Run(label, config, model, history, path)


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


def trace(run: Run, key: str) -> np.ndarray:
    """The per-step values of `key` (total, recon, kl, beta, grad_norm, lr) of a run, (steps,)."""
    return np.array([row[key] for row in run.history.steps], dtype=float)


def loss_spread(run: Run, last: int = 100) -> float:
    """Standard deviation of the total loss over the last `last` recorded steps (nan when none)."""
    total = trace(run, "total")[-last:]
    return float(total.std()) if len(total) else math.nan


def volatility(run: Run, key: str = "total", first: int = 100, at_final_beta: bool = False) -> float:
    """Noise of the first `first` steps: std of the step-to-step change of log(key), whatever the trend.

    at_final_beta=True starts counting at the first step trained at the run's final beta (after a warmup's
    switch; step 0 for a static beta), where a KL term charged at full weight could spike. Meant for static and
    warmup schedules: for a cyclic one it is the first peak of the first cycle.
    """
    start = 0
    if at_final_beta:
        beta = trace(run, "beta")
        start = int(np.argmax(beta == beta[-1])) if len(beta) else 0
    values = trace(run, key)[start:start + first]
    values = values[np.isfinite(values) & (values > 0)]
    return float(np.diff(np.log(values)).std()) if len(values) > 2 else math.nan


def failure(run: Run) -> str:
    """What became of a failed run, for a finding: 'non-finite loss at step 600 (beta 0.1)'; '' if it finished."""
    if not run.failed:
        return ""
    h, s = run.history, run.config.train.schedule
    where = f" at step {run.failed_step}" if run.failed_step is not None else ""
    if run.failed_step is not None and h.epochs:  # the steps per epoch, read from the finished epochs
        spe = len(h.steps) // len(h.epochs)
        where += f" (beta {beta_at(s, run.failed_step, spe, spe * run.config.train.epochs):g})"
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


def kl_spike(run: Run, start: int, steps: int = 50, median_of: int = 10) -> float:
    """The largest spike of the KL term in steps [start, start + steps): the largest ratio of a step's KL to the
    median KL of the (up to) `median_of` steps before it (1 = no step rose above its recent level). Measured on the
    same steps in every run it compares, e.g. the steps after a warmup's switch in both the warmup and a static run.
    Step 0 has nothing before it, so a window starting there starts at step 1."""
    if start < 0 or steps < 1 or median_of < 1:
        raise ValueError(f"start={start!r}, steps={steps!r}, median_of={median_of!r} are invalid: allowed start >= 0, "
                         "steps >= 1, median_of >= 1")
    kl, start = trace(run, "kl"), max(start, 1)
    if len(kl) < start + steps or not np.isfinite(kl[:start + steps]).all():
        return math.nan  # the run did not reach the end of the window (it failed)
    recent = [np.median(kl[max(0, t - median_of):t]) for t in range(start, start + steps)]
    return float((kl[start:start + steps] / np.maximum(recent, 1e-12)).max())


def clipped_share(run: Run) -> float:
    """The share of a run's steps whose pre-clip gradient norm exceeded its clipping threshold (0 without one)."""
    clip, norms = run.config.train.grad_clip, trace(run, "grad_norm")
    return float((norms > clip).mean()) if clip is not None and len(norms) else 0.0


def run_convergence(run: Run, tol: float = 0.05) -> dict[str, Any]:
    """evidence.convergence of a run's history, judged over whole cycles for cyclic annealing; a failed run
    never converged."""
    if run.failed:
        return {"converged": False, "share": math.nan, "improvement": math.nan, "state": "failed"}
    s = run.config.train.schedule
    cycle = math.ceil(run.config.train.epochs / s.cycles) if s.kind == "cyclic" else 1  # judge whole cycles
    return convergence(run.history, tol, min_window=cycle)


def summarize(run: Run, test: Any, last: int = 100, tol: float = 0.05) -> dict[str, Any]:
    """The table row of a run: convergence (evidence.convergence, tolerance `tol`), the noise of its first
    `last` steps and the spread of its last ones, and its test metrics (ELBO terms at beta = 1)."""
    conv = run_convergence(run, tol)
    grad = trace(run, "grad_norm")
    final = float(trace(run, "total")[-last:].mean()) if len(grad) else math.nan
    row: dict[str, Any] = {"run": run.label, "seed": run.config.train.seed, "steps": len(grad),
                           "converged": conv["converged"], "state": conv["state"], "failure": failure(run),
                           "last_20pct_share": conv["share"],
                           "last_20pct_improvement": conv["improvement"],
                           "early_volatility": volatility(run, "total", last),
                           "early_kl_volatility": volatility(run, "kl", last),
                           "kl_volatility_at_final_beta": volatility(run, "kl", last, at_final_beta=True),
                           "failed_step": run.failed_step,
                           "nonfinite_steps": int(run.failed),  # fit stops at the first non-finite step
                           "loss_spread": loss_spread(run, last), "final_total": final,
                           "relative_spread": loss_spread(run, last) / final if len(grad) else math.nan,
                           "max_grad_norm": float(grad.max()) if len(grad) else math.nan,
                           "median_grad_norm": float(np.median(grad)) if len(grad) else math.nan}
    if run.model is None:
        return {**row, "test_total": math.nan, "test_recon": math.nan, "test_kl": math.nan, "active_units": math.nan}
    elbo = metrics.test_elbo(run.model, test.images, run.config)
    return {**row, **{f"test_{k}": v for k, v in elbo.items()},
            "active_units": metrics.active_units(run.model, test.images)}


BUDGETS = ("tiny", "small", "full")
DATASET_PRESET = {"mnist": "mnist", "digits": "digits", "shapes": "shapes", "fashion_mnist": "fashion_mnist",
                  "cifar10": "cifar10", "celeba": "celeba_small"}
# Per budget: training images kept (None = all) and epochs (None = the preset's, the reports' budget).
_BUDGET = {"tiny": {"max_train": 256, "epochs": 2, "shapes_train": 512},
           "small": {"max_train": 5000, "epochs": 5, "shapes_train": 2000},
           "full": {"max_train": None, "epochs": None, "shapes_train": 10_000}}
# The embedded sets are small: more passes per run. Each small report (about 60 runs of 3 seeds) must finish in 30
# minutes on a 2-core CPU; every ablation run trains on past these epochs until it has converged (up to 2x).
_SMALL_EPOCHS = {"mnist": 20, "digits": 20, "shapes": 16}


def notebook_config(dataset: str = "mnist", budget: str = "small", seed: int = 0, *,
                    image_size: int | None = None, data_root: str = "data", preset: str | None = None) -> Config:
    """The config a notebook trains for a dataset and budget: tiny (seconds), small (minutes on a CPU), full."""
    if dataset not in DATASETS:
        raise ValueError(f"dataset={dataset!r} is invalid: allowed {', '.join(DATASETS)}")
    if budget not in BUDGETS:
        raise ValueError(f"budget={budget!r} is invalid: allowed {', '.join(BUDGETS)}")
    config = get_preset(preset or DATASET_PRESET[dataset])
    b = _BUDGET[budget]
    epochs = b["epochs"] or config.train.epochs
    if budget == "small":
        epochs = _SMALL_EPOCHS.get(dataset, epochs)
    overrides: dict[str, Any] = {"train.epochs": epochs, "train.seed": seed, "data.root": data_root,
                                 "data.max_train": b["max_train"], "data.shapes_train": b["shapes_train"]}
    if image_size:
        overrides["data.image_size"] = image_size
    if config.train.schedule.kind == "warmup" and budget != "full":  # keep the warmup's share of the run
        share = config.train.schedule.warmup_epochs / config.train.epochs
        overrides["train.schedule.warmup_epochs"] = round(share * epochs, 2)
    return with_overrides(config, **overrides)
