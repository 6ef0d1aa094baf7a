"""One config end to end, as `python -m vaelib train` runs it: train (or resume), then the standard metrics
and figures, written beside the checkpoint with the config, seed, versions and timing."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch

from vaelib.config import Config
from vaelib.data.datasets import data_mean_baseline, load_from_config
from vaelib.evaluation import metrics, plots
from vaelib.experiments.cache import run_config
from vaelib.io.files import save_json
from vaelib.io.provenance import versions
from vaelib.losses import LIKELIHOODS
from vaelib.models.base import model_device
from vaelib.runtime import resolve_device, to_float
from vaelib.training import distributed
from vaelib.training.allocator import allocator_tuned
from vaelib.training.history import History
from vaelib.training.resources import check_memory
from vaelib.training.validation import kl_per_dimension


def standard_metrics(model, config: Config, train, test, iw_samples: int = 64) -> dict[str, Any]:
    """Test ELBO terms, reconstruction MSE/PSNR against the data-mean baseline, KL per dim, AU, IW-NLL."""
    x = test.images
    out: dict[str, Any] = {"test_elbo": metrics.test_elbo(model, x, config)}
    out["recon_mse"] = metrics.reconstruction_mse(model, x)
    out["psnr_db"] = metrics.psnr(model, x)
    out["data_mean_baseline_mse"] = data_mean_baseline(train, test)
    out["mse_over_baseline"] = out["recon_mse"] / out["data_mean_baseline_mse"]
    kl = kl_per_dimension(model, x)
    out["kl_per_dim"] = [float(v) for v in kl]
    out["active_units"] = metrics.active_units(model, x)
    # a bound exists for a normalised likelihood only (a perceptual term is a distance): None says so
    out["iw_nll"] = metrics.iw_nll(model, x[:1000], k=iw_samples, likelihood=config.train.recon) \
        if LIKELIHOODS[config.train.recon].normalised else None
    if getattr(test, "factors", None) is not None:
        out["mig"] = metrics.mig_score(model, test)["mig"]
    return out


def standard_figures(model, config: Config, history: History, test, out_dir: str | Path,
                     kl: Any = None) -> list[Path]:
    """Reconstructions, samples, curves, KL per dim, a traversal and an interpolation, saved as PNG."""
    out_dir = Path(out_dir)
    pick = plots.split_example_indices(test, min(16, len(test)), seed=config.train.seed)  # the classes in turn
    x = to_float(test.images[pick].to(model_device(model)))
    kl = kl_per_dimension(model, test.images) if kl is None else np.asarray(kl)  # (D,)
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
                   quiet: bool = False, tune_allocator: bool = True, log_dir: str | Path | None = None,
                   force: bool = False) -> dict[str, Any]:
    """Train (or resume) a config with experiments.cache.run_config, then write metrics.json and the standard
    figures to out_dir, under the same lock. Refused before any work: a config too big for the device's memory
    (training.resources), an out_dir that cannot be written, one another process writes to (io.lock), and one
    that holds another run or files vaelib did not write (unless force: cache.check_owner).
    log_dir: a TensorBoard folder that fit writes (see training.tensorboard); None writes none.
    """
    t0 = time.perf_counter()
    device = resolve_device(device)
    check_memory(config, device)
    train, val, test = (load_from_config(config.data, s) for s in ("train", "val", "test"))

    def report(model: torch.nn.Module, history: History) -> dict[str, Any]:
        if not distributed.is_main():  # under torchrun, rank 0 evaluates and writes
            return {}
        torch.manual_seed(config.train.seed)
        result = {"config": config.to_dict(), "seed": config.train.seed, "versions": versions(),
                  "device": str(device), "options": {**history.options,
                              "malloc_tuned": bool(tune_allocator and device.type == "cpu" and allocator_tuned())},
                  "train_images": len(train), "test_images": len(test),
                  "metrics": standard_metrics(model, config, train, test)}
        figures = standard_figures(model, config, history, test, out_dir, kl=result["metrics"]["kl_per_dim"])
        result["figures"] = [p.name for p in figures]
        result["seconds"] = time.perf_counter() - t0
        save_json(Path(out_dir) / "metrics.json", result)
        return result

    return run_config(config, out_dir, train, val, device=device, quiet=quiet, tune_allocator=tune_allocator,
                      log_dir=log_dir, force=force, then=report)[2]
