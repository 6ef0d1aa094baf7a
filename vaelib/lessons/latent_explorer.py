"""Helpers of notebook 05 (latent explorer): the model the earlier notebooks cached, and an explorer over it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..checkpoint import load_checkpoint
from ..config import Config
from ..data import load_from_config
from ..experiments import cached_fit, notebook_config, run_dir
from ..model import VAE
from ..runtime import resolve_device
from ..train import CHECKPOINT
from ..widgets import LatentExplorer


def load_trained(config: Config, runs_dir: str | Path = "runs", *, train_if_missing: bool = True,
                 retrain: bool = False, device: str | None = None) -> tuple[VAE, Path]:
    """The model cached_fit made for `config` under runs_dir (trained first if missing and allowed), its folder."""
    ckpt = run_dir(config, runs_dir) / CHECKPOINT
    if not (train_if_missing or retrain):
        if not ckpt.is_file():
            raise FileNotFoundError(f"no trained model for preset {config.name!r}: expected {ckpt} (run an earlier "
                                    "notebook with the same dataset, budget, seed and image_size, "
                                    "or allow train_if_missing)")
        model, _ = load_checkpoint(ckpt, device=resolve_device(device))
        return model.eval(), ckpt.parent
    train, val = (load_from_config(config.data, s) for s in ("train", "val"))
    model, _, out = cached_fit(config, train, val, root=runs_dir, retrain=retrain, device=device, quiet=True)
    return model.eval(), out


def explorer_for(dataset: str = "mnist", budget: str = "small", seed: int = 0, *, image_size: int | None = None,
                 data_root: str = "data", runs_dir: str | Path = "runs", device: str | None = None,
                 train_if_missing: bool = True, retrain: bool = False, **options: Any) -> LatentExplorer:
    """The explorer over the test split, for the model notebook_config(dataset, budget, seed, ...) trains."""
    config = notebook_config(dataset, budget, seed, image_size=image_size, data_root=data_root)
    model, _ = load_trained(config, runs_dir, train_if_missing=train_if_missing, retrain=retrain, device=device)
    return LatentExplorer(model, load_from_config(config.data, "test"), seed=seed, **options)
