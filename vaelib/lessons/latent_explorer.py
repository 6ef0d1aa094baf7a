"""Helpers of notebook 05 (latent explorer): the model the earlier notebooks cached, and an explorer over it."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from matplotlib.figure import Figure

from vaelib.config import Config
from vaelib.data.datasets import ImageSplit, load_from_config
from vaelib.evaluation.plots import image_grid
from vaelib.experiments.cache import cached_fit, run_dir, trained
from vaelib.models.vae import VAE
from vaelib.runtime import headless, resolve_device
from vaelib.training.checkpoint import MODEL_KEYS, check_checkpoint, load_checkpoint, read_checkpoint, save_checkpoint
from vaelib.training.history import History
from vaelib.training.trainer import CHECKPOINT
from vaelib.widgets import LatentExplorer

PRETRAINED = Path(__file__).resolve().parents[1] / "pretrained"  # shipped models, named <preset>-<config hash>.pt


def shipped_checkpoint(config: Config) -> Path | None:
    """The model shipped with vaelib for exactly this config (same config hash), or None."""
    path = PRETRAINED / f"{run_dir(config, '').name}.pt"
    return path if path.is_file() else None


def fit_or_shipped(config: Config, train: ImageSplit, val: ImageSplit, *, root: str | Path = "runs",
                   retrain: bool = False, device: str | None = None, quiet: bool = False):
    """experiments.cache.cached_fit, except where the run cache under `root` does not hold this config's run and
    vaelib ships one (the same config hash, `make pretrained`): then the shipped model and the history it trained
    with are loaded, in about a second instead of the minutes a lesson cannot spend in class. retrain=True trains.
    Returns (model, history, the run folder or the shipped file)."""
    shipped = shipped_checkpoint(config)
    if shipped is not None and not retrain and not trained(config, root):
        model, state = load_checkpoint(shipped, device=resolve_device(device))
        return model.eval(), History.from_dict(state["history"], str(shipped), key="history"), shipped
    return cached_fit(config, train, val, root=root, retrain=retrain, device=device, quiet=quiet)


def ship(config: Config, runs_dir: str | Path = "runs", dest: str | Path = PRETRAINED) -> Path:
    """Copy the weights of config's finished run under runs_dir into dest as <preset>-<hash>.pt: the model, its
    config, history and versions, without the optimizer state (a third of the size). `make pretrained` runs it."""
    ckpt = run_dir(config, runs_dir) / CHECKPOINT
    state = read_checkpoint(ckpt)
    check_checkpoint(state, ckpt, require=MODEL_KEYS, keys=MODEL_KEYS)  # all it copies, checked
    if state.get("epoch") != config.train.epochs:
        raise ValueError(f"checkpoint {str(ckpt)!r} is unfinished (epoch {state.get('epoch')} of "
                         f"{config.train.epochs}): allowed a finished run")
    out = Path(dest) / f"{ckpt.parent.name}.pt"
    out.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(out, {k: state[k] for k in ("model", "config", "history", "epoch", "seed", "versions")})
    return out


def train_and_ship(config: Config, runs_dir: str | Path = "runs", dest: str | Path = PRETRAINED) -> Path:
    """Train config's run into runs_dir where the cache lacks it (never loading the shipped copy), then ship it (ship).
    `make pretrained` runs it for the mnist and shapes presets at the small budget."""
    train, val = (load_from_config(config.data, s) for s in ("train", "val"))
    cached_fit(config, train, val, root=runs_dir, quiet=headless())
    return ship(config, runs_dir, dest)


def load_trained(config: Config, runs_dir: str | Path = "runs", *, train_if_missing: bool = True,
                 retrain: bool = False, device: str | None = None) -> tuple[VAE, Path]:
    """The model cached_fit made for `config` under runs_dir, else the one shipped with vaelib for the same config
    (loaded in about a second on a fresh clone), else trained first if allowed; and the folder it came from."""
    ckpt = run_dir(config, runs_dir) / CHECKPOINT
    shipped = shipped_checkpoint(config)
    if shipped is not None and not retrain and not ckpt.is_file():
        model, _ = load_checkpoint(shipped, device=resolve_device(device))
        return model.eval(), shipped.parent
    if not (train_if_missing or retrain):
        if not ckpt.is_file():
            raise FileNotFoundError(f"no trained model for preset {config.name!r}: expected {ckpt} (run an earlier "
                                    "notebook with the same dataset, budget, seed and image_size, "
                                    "or allow train_if_missing)")
        model, _ = load_checkpoint(ckpt, device=resolve_device(device))
        return model.eval(), ckpt.parent
    train, val = (load_from_config(config.data, s) for s in ("train", "val"))
    model, _, out = cached_fit(config, train, val, root=runs_dir, retrain=retrain, device=device,
                              quiet=headless())  # a progress bar in class, none under papermill
    return model.eval(), out


def class_directions(split: ImageSplit) -> list[str] | None:
    """The class names of a split with one class per image (mnist: "0" .. "9"), for "more like a 7" sliders;
    None otherwise (CelebA's attributes are the explorer's own default)."""
    if split.labels is None or split.labels.ndim != 1 or not split.class_names:
        return None
    return list(split.class_names)


def direction_figure(explorer: LatentExplorer, name: str = "7", amounts: Sequence[float] = (0, 0.5, 1, 1.5, 2)
                     ) -> Figure | None:
    """The explorer's current code pushed along direction `name` (else its first one) by each amount, as a strip;
    None when the explorer has no directions (a split without labels)."""
    if not explorer.directions:
        return None
    name = name if name in explorer.directions else next(iter(explorer.directions))
    title = f"test image {explorer.index.value} + amount x direction {name!r}, amount " + \
        " | ".join(f"{a:g}" for a in amounts)
    return image_grid(explorer.along(name, list(amounts)), nrow=len(amounts), title=title)
