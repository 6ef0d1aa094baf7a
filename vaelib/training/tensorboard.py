"""TensorBoard logging for `fit(..., log_dir=...)`: step scalars, validation terms, KL per dimension, images.

Everything is read from what `fit` already computed (its History) or computed at the end of an epoch, so the
training step gains no host sync and the numbers do not change. Every event is indexed by the global step;
epoch events sit on the epoch's last step. A resumed run opens a new event file in the same folder, with
`purge_step` at its first step, so TensorBoard drops what an interrupted run wrote after its last checkpoint.
View with `tensorboard --logdir DIR`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vaelib.config import Config
from vaelib.models.base import eval_mode, model_device
from vaelib.runtime import to_float
from vaelib.training import distributed
from vaelib.training.history import History
from vaelib.training.validation import kl_per_dimension

STEP_TAGS = ("total", "recon", "kl", "beta", "lr", "grad_norm")  # a VAE's train/<key>, one event per step
VAL_TAGS = ("total", "recon", "kl")  # a VAE's val/<key>, one event per epoch (another family: total and its terms)
KL_IMAGES = 512  # validation images for KL per dimension (one encoder batch)
GRID = 8  # images per grid


def _check_log_dir(log_dir: str | Path) -> Path:
    path = Path(log_dir)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise ValueError(f"log_dir={str(log_dir)!r} (--tensorboard) is invalid: it or a parent is a file; "
                         "allowed a folder") from None
    except OSError as err:  # ENOENT under a folder that refuses new entries (/proc/self), EACCES, EROFS
        why = "new entries cannot be made there" if isinstance(err, FileNotFoundError) else err.strerror
        raise ValueError(f"log_dir={str(log_dir)!r} (--tensorboard) cannot be created ({why}): allowed a folder "
                         "you can create and write to") from None
    return path


class TensorBoardLog:
    """Writes one run to a TensorBoard folder; does nothing when log_dir is None or off rank 0."""

    def __init__(self, log_dir: str | Path | None, config: Config, *, first_step: int = 0,
                 x_val: torch.Tensor | None = None) -> None:
        self.config, self.next_step, self.writer, self.x_val = config, first_step, None, x_val
        if log_dir is None or not distributed.is_main():
            return
        from torch.utils.tensorboard import SummaryWriter  # imports tensorboard: only when asked for

        self.writer = SummaryWriter(str(_check_log_dir(log_dir)), purge_step=first_step)

    def log_steps(self, rows: Sequence[dict[str, Any]]) -> None:
        """Write the History step rows not written yet (step >= next_step)."""
        if self.writer is None:
            return
        for row in rows:
            if row["step"] >= self.next_step:
                for key in (k for k in row if k not in ("step", "epoch")):  # whatever the family's loss reports
                    self.writer.add_scalar(f"train/{key}", row[key], row["step"])
                self.next_step = row["step"] + 1

    def __call__(self, epoch: int, model: nn.Module, history: History) -> None:
        """As fit's callback: log_epoch on the validation images given at construction."""
        if self.writer is None:
            return
        if self.x_val is None:
            raise ValueError("x_val is missing: allowed a TensorBoardLog built with the validation images")
        self.log_epoch(model, self.x_val, history, epoch)

    def log_epoch(self, model: nn.Module, x_val: torch.Tensor, history: History, epoch: int) -> None:
        """The epoch's step rows, its validation terms, KL per dimension and image grids."""
        if self.writer is None:
            return
        self.log_steps(self._unwritten(history.steps))
        row = history.epochs[-1]
        step = history.steps[-1]["step"] if history.steps else epoch
        for key in ("total", *history.terms):
            self.writer.add_scalar(f"val/{key}", row[f"val_{key}"], step)
        self._log_model(model, x_val, step)
        self.writer.flush()

    @torch.no_grad()
    def _log_model(self, model: nn.Module, x_val: torch.Tensor, step: int) -> None:

        device = model_device(model)
        gen = torch.Generator(device=device).manual_seed(self.config.train.seed)  # the same z every epoch
        if model.gaussian_posterior:  # a family without a posterior has no KL per dimension
            kl = kl_per_dimension(model, x_val[:KL_IMAGES])  # (D,) nats
            self.writer.add_histogram("val/kl_per_dim", kl, step)
            self.writer.add_scalar("val/dims_with_kl_above_0.01", int((kl > 0.01).sum()), step)
        with eval_mode(model):
            x = to_float(x_val[:GRID].to(device))  # (GRID, C, H, W) in [0, 1]
            recon, samples = model.reconstruct(x), model.sample(GRID, generator=gen)
        for tag, images in (("images/val", x), ("images/reconstruction", recon), ("images/prior_sample", samples)):
            self.writer.add_images(tag, images.float().clamp(0, 1).cpu(), step)

    def _unwritten(self, steps: Sequence[dict[str, Any]]) -> Sequence[dict[str, Any]]:
        i = len(steps)
        while i > 0 and steps[i - 1]["step"] >= self.next_step:
            i -= 1
        return steps[i:]

    def close(self, history: History | None = None) -> None:
        """Write the step rows of an unfinished epoch (if history is given), then close the event file."""
        if self.writer is None:
            return
        if history is not None:
            self.log_steps(self._unwritten(history.steps))
        self.writer.close()
        self.writer = None
