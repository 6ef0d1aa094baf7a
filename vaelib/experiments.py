"""Experiments: the run cache (keyed by what changes results), sets of runs whose failures are recorded, the
standard metrics and figures, and a notebook's config per dataset and budget.

A run that raises `NonFiniteLossError` does not stop a set: it is recorded as failed, with the step where
training stopped, and a `failed.json` beside its checkpoint so that a cached re-run reports the same failure
without training again. Losses are nats per image, as everywhere in vaelib.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import distributed
from .checkpoint import save_json
from .config import Config, comparable, with_overrides
from .perf.allocator import tune_cpu_allocator
from .provenance import versions
from .runtime import resolve_device
from .train import CHECKPOINT, HISTORY, NonFiniteLossError, fit


def config_hash(config: Config) -> str:
    """A short stable hash of everything that shapes the trained model: the cache key of a run.

    Where the dataset files live (data.root) and whether they may be downloaded do not change the model.
    """
    return hashlib.sha256(comparable(config).to_json().encode()).hexdigest()[:10]


def run_dir(config: Config, root: str | Path = "runs") -> Path:
    """runs/<preset>-<hash>: where a config's checkpoint, history and metrics live."""
    return Path(root) / f"{config.name}-{config_hash(config)}"


def cached_fit(config: Config, train: Any = None, val: Any = None, *, root: str | Path = "runs",
               retrain: bool = False, device: str | None = None, quiet: bool = False, tune_allocator: bool = True):
    """fit(), but a finished run of the same config is loaded instead of retrained; returns (model, history, dir).

    On the CPU it first tunes glibc's allocator for the whole process (perf/allocator.py: no page faults per
    step, the process keeps its peak heap); tune_allocator=False or VAELIB_MALLOC_TUNING=0 leaves it alone.
    The numbers do not change either way. `fit` itself never tunes it.
    """
    if tune_allocator and resolve_device(device).type == "cpu":
        tune_cpu_allocator()
    out = run_dir(config, root)
    if retrain and (out / CHECKPOINT).exists():
        (out / CHECKPOINT).unlink()
    model, history = fit(config, train, val, device=device, out_dir=out, quiet=quiet)
    return model, history, out


def standard_metrics(model, config: Config, train, test, iw_samples: int = 64) -> dict[str, Any]:
    """Test ELBO terms, reconstruction MSE/PSNR against the data-mean baseline, KL per dim, AU, IW-NLL."""
    from . import metrics
    from .data import data_mean_baseline

    x = test.images
    out: dict[str, Any] = {"test_elbo": metrics.test_elbo(model, x, config)}
    out["recon_mse"] = metrics.reconstruction_mse(model, x)
    out["psnr_db"] = metrics.psnr(model, x)
    out["data_mean_baseline_mse"] = data_mean_baseline(train, test)
    out["mse_over_baseline"] = out["recon_mse"] / out["data_mean_baseline_mse"]
    kl = metrics.kl_per_dimension(model, x)
    out["kl_per_dim"] = [float(v) for v in kl]
    out["active_units"] = metrics.active_units(model, x)
    out["iw_nll"] = metrics.iw_nll(model, x[:1000], k=iw_samples, likelihood=config.train.recon)
    if getattr(test, "factors", None) is not None:
        out["mig"] = metrics.mig_score(model, test)["mig"]
    return out


def standard_figures(model, config: Config, history: dict, test, out_dir: str | Path,
                     kl: Any = None) -> list[Path]:
    """Reconstructions, samples, curves, KL per dim, a traversal and an interpolation, saved as PNG."""
    import matplotlib.pyplot as plt

    from . import metrics, plots
    from .train import to_float

    out_dir = Path(out_dir)
    device = next(model.parameters()).device
    x = to_float(test.images[:16].to(device))
    kl = metrics.kl_per_dimension(model, test.images) if kl is None else np.asarray(kl)  # (D,)
    figs = {
        "reconstructions": plots.reconstruction_grid(model, x, n=8),
        "samples": plots.sample_grid(model, n=64, seed=config.train.seed),
        "training_curves": plots.training_curves(history, per="step"),
        "kl_per_dim": plots.kl_per_dimension_plot(kl),
        "traversal": plots.latent_traversal(model, x[:1], dim=int(kl.argmax())),
        "interpolation": plots.interpolation(model, x[0:1], x[1:2], steps=10),
    }
    paths = []
    for name, fig in figs.items():
        paths.append(out_dir / f"{name}.png")
        plots.save_figure(fig, paths[-1])
        plt.close(fig)
    return paths


def run_experiment(config: Config, out_dir: str | Path, *, device: str | None = None,
                   quiet: bool = False, tune_allocator: bool = True) -> dict[str, Any]:
    """Train (or resume) a config, then write metrics.json and the standard figures to out_dir.

    Like cached_fit, it tunes the process's allocator on the CPU unless told not to (and records whether).
    """
    from .data import load_from_config

    t0 = time.perf_counter()
    device = resolve_device(device)
    malloc_tuned = tune_allocator and device.type == "cpu" and tune_cpu_allocator()
    train, val, test = (load_from_config(config.data, s) for s in ("train", "val", "test"))
    model, history = fit(config, train, val, device=device, out_dir=out_dir, quiet=quiet)
    if not distributed.is_main():  # under torchrun, rank 0 evaluates and writes
        return {}
    torch.manual_seed(config.train.seed)
    result = {"config": config.to_dict(), "seed": config.train.seed, "versions": versions(),
              "device": str(device), "options": {**history["options"], "malloc_tuned": malloc_tuned},
              "train_images": len(train), "test_images": len(test),
              "metrics": standard_metrics(model, config, train, test)}
    figures = standard_figures(model, config, history, test, out_dir, kl=result["metrics"]["kl_per_dim"])
    result["figures"] = [p.name for p in figures]
    result["seconds"] = time.perf_counter() - t0
    save_json(Path(out_dir) / "metrics.json", result)
    return result


# --- runs of a set of configs: failures recorded, not raised -------------------------------------

FAILED = "failed.json"


@dataclass
class Run:
    """One trained (or failed) config of an ablation."""

    label: str
    config: Config
    model: Any  # the trained VAE, None when the run failed
    history: dict[str, Any]  # fit's history; for a failed run, up to its last finished epoch
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
        return _failed_run(label, config, path, json.loads(marker.read_text()))
    marker.unlink(missing_ok=True)
    try:
        model, history, path = cached_fit(config, train, val, root=root, retrain=retrain, device=device, quiet=True)
    except NonFiniteLossError as err:
        match = re.search(r"at step (\d+)", str(err))
        info = {"step": int(match.group(1)) if match else None, "error": str(err)}
        path.mkdir(parents=True, exist_ok=True)
        marker.write_text(json.dumps(info, indent=2))
        return _failed_run(label, config, path, info)
    return Run(label, config, model, history, path)


def _failed_run(label: str, config: Config, path: Path, info: dict[str, Any]) -> Run:
    saved = path / HISTORY
    history = json.loads(saved.read_text()) if saved.exists() else {"steps": [], "epochs": []}
    return Run(label, config, None, history, path, failed_step=info["step"], error=info["error"] or "non-finite")


def run_all(configs: dict[str, Config], train: Any, val: Any, **kwargs: Any) -> dict[str, Run]:
    """run_one for every labelled config, in order."""
    return {label: run_one(label, c, train, val, **kwargs) for label, c in configs.items()}


def trace(run: Run, key: str) -> np.ndarray:
    """The per-step values of `key` (total, recon, kl, beta, grad_norm, lr) of a run, (steps,)."""
    return np.array([row[key] for row in run.history["steps"]], dtype=float)


def loss_spread(run: Run, last: int = 100) -> float:
    """Standard deviation of the total loss over the last `last` recorded steps (nan when none)."""
    total = trace(run, "total")[-last:]
    return float(total.std()) if len(total) else math.nan


def summarize(run: Run, test: Any, last: int = 100) -> dict[str, Any]:
    """The table row of a run: stability of its last steps and its test metrics (ELBO terms at beta = 1)."""
    from . import metrics

    grad = trace(run, "grad_norm")
    final = float(trace(run, "total")[-last:].mean()) if len(grad) else math.nan
    row: dict[str, Any] = {"run": run.label, "steps": len(grad), "failed_step": run.failed_step,
                           "nonfinite_steps": int(run.failed) + int((~np.isfinite(trace(run, "total"))).sum()),
                           "loss_spread": loss_spread(run, last), "final_total": final,
                           "relative_spread": loss_spread(run, last) / final if len(grad) else math.nan,
                           "max_grad_norm": float(grad.max()) if len(grad) else math.nan,
                           "median_grad_norm": float(np.median(grad)) if len(grad) else math.nan}
    if run.model is None:
        return {**row, "test_total": math.nan, "test_recon": math.nan, "test_kl": math.nan, "active_units": 0}
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
_SMALL_EPOCHS = {"digits": 20, "shapes": 10}  # the embedded sets are small: more passes, still ~10-30 s


def notebook_config(dataset: str = "digits", budget: str = "small", seed: int = 0, *,
                    image_size: int | None = None, data_root: str = "data", preset: str | None = None) -> Config:
    """The config a notebook trains for a dataset and budget: tiny (seconds), small (minutes on a CPU), full."""
    from .config import DATASETS, get_preset

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
