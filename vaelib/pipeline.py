"""Experiments end to end: cached training, the standard metrics, the standard figures."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import distributed
from .checkpoint import save_json, versions
from .config import Config, comparable
from .train import CHECKPOINT, fit, resolve_device


def config_hash(config: Config) -> str:
    """A short stable hash of everything that shapes the trained model: the cache key of a run.

    Where the dataset files live (data.root) and whether they may be downloaded do not change the model.
    """
    return hashlib.sha256(comparable(config).to_json().encode()).hexdigest()[:10]


def run_dir(config: Config, root: str | Path = "runs") -> Path:
    """runs/<preset>-<hash>: where a config's checkpoint, history and metrics live."""
    return Path(root) / f"{config.name}-{config_hash(config)}"


def cached_fit(config: Config, train: Any = None, val: Any = None, *, root: str | Path = "runs",
               retrain: bool = False, device: str | None = None, quiet: bool = False):
    """fit(), but a finished run of the same config is loaded instead of retrained; returns (model, history, dir)."""
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
                   quiet: bool = False) -> dict[str, Any]:
    """Train (or resume) a config, then write metrics.json and the standard figures to out_dir."""
    from .data import load_from_config

    t0 = time.perf_counter()
    device = resolve_device(device)
    train, val, test = (load_from_config(config.data, s) for s in ("train", "val", "test"))
    model, history = fit(config, train, val, device=device, out_dir=out_dir, quiet=quiet)
    if not distributed.is_main():  # under torchrun, rank 0 evaluates and writes
        return {}
    torch.manual_seed(config.train.seed)
    result = {"config": config.to_dict(), "seed": config.train.seed, "versions": versions(),
              "device": str(device), "options": history["options"],
              "train_images": len(train), "test_images": len(test),
              "metrics": standard_metrics(model, config, train, test)}
    figures = standard_figures(model, config, history, test, out_dir, kl=result["metrics"]["kl_per_dim"])
    result["figures"] = [p.name for p in figures]
    result["seconds"] = time.perf_counter() - t0
    save_json(Path(out_dir) / "metrics.json", result)
    return result


BUDGETS = ("tiny", "small", "full")
DATASET_PRESET = {"digits": "digits", "shapes": "shapes", "fashion_mnist": "fashion_mnist",
                  "cifar10": "cifar10", "celeba": "celeba_small"}
# Per budget: training images kept (None = all) and epochs (None = the preset's, the reports' budget).
_BUDGET = {"tiny": {"max_train": 256, "epochs": 2, "shapes_train": 512},
           "small": {"max_train": 5000, "epochs": 5, "shapes_train": 2000},
           "full": {"max_train": None, "epochs": None, "shapes_train": 10_000}}
_SMALL_EPOCHS = {"digits": 20, "shapes": 10}  # the embedded sets are small: more passes, still ~10-30 s


def notebook_config(dataset: str = "digits", budget: str = "small", seed: int = 0, *,
                    image_size: int | None = None, data_root: str = "data", preset: str | None = None) -> Config:
    """The config a notebook trains for a dataset and budget: tiny (seconds), small (minutes on a CPU), full."""
    from .config import DATASETS, get_preset, with_overrides

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
