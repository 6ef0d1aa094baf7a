"""The optimiser steps of one epoch, as fit takes them: batches in the epoch's seeded order, the family's noise,
forward, loss, backward, clipping, the update, and the step's scalars read from the device once per sync and
checked to be finite (NonFiniteLossError, with what the config suggests as the cause)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vaelib.config import Config
from vaelib.runtime import autocast, to_float
from vaelib.schedules import beta_at, layout_epochs
from vaelib.training import distributed
from vaelib.training.history import History


@dataclass(frozen=True)
class StepPlan:
    """How fit lays out its steps: the global batch (all ranks together), the steps per epoch and in all, and this
    process's rank among world_size (each takes batch_size / world_size images of every batch)."""

    batch_size: int
    steps_per_epoch: int
    total_steps: int
    rank: int = 0
    world_size: int = 1


@dataclass
class RunState:
    """What fit's epochs share: the data on the device, the model and the module its steps call (DDP, compiled),
    the optimizer, the noise generator, the history, the step plan and the checkpoint path."""

    config: Config
    device: torch.device
    x_train: torch.Tensor
    x_val: torch.Tensor
    model: nn.Module
    run_model: nn.Module
    opt: torch.optim.Adam
    gen: torch.Generator
    history: History
    start_epoch: int
    plan: StepPlan
    ckpt: Path | None


class NonFiniteLossError(RuntimeError):
    """Training produced NaN or Inf; the last good checkpoint is left untouched.

    Attributes: step and epoch of the first non-finite value, and the history up to it.
    """

    def __init__(self, message: str, step: int = -1, epoch: int = -1, history: History | None = None) -> None:
        super().__init__(message)
        self.step, self.epoch, self.history = step, epoch, history


def nonfinite_advice(config: Config) -> str:
    """The likely causes of a non-finite loss, read from the config: what NonFiniteLossError advises."""
    tc, tips = config.train, []
    if tc.schedule.beta > 10:
        tips.append(f"beta={tc.schedule.beta:g} is large: try beta <= 10")
    if tc.free_bits > 10:
        tips.append(f"free_bits={tc.free_bits:g} nats per dimension is large: try free_bits <= 10")
    if tc.lr > 1e-2:
        tips.append(f"lr={tc.lr:g} is large: try lr <= 1e-3")
    if tc.grad_clip is None:
        tips.append("no grad_clip: try grad_clip=1.0")
    return "; ".join(tips) or f"try a lower lr than {tc.lr:g} or a smaller grad_clip than {tc.grad_clip:g}"


def step_keys(model: Any) -> tuple[str, ...]:
    """The values each step reads from the device (once per sync): total, the family's named terms, grad_norm."""
    return ("total", *model.TERMS, "grad_norm")


def _flush(buffer: list[torch.Tensor], meta: list[dict], history: History, config: Config,
           keys: tuple[str, ...]) -> None:
    """Read the buffered per-step scalars (`keys`, step_keys) in one device->host copy and check they are finite."""
    if not buffer:
        return
    values = distributed.mean_over_ranks(torch.stack(buffer)).tolist()  # (steps, keys): the only host sync
    for row, vals in zip(meta, values):
        row.update(zip(keys, vals))
        if not all(math.isfinite(v) for v in vals):
            last = history.steps[-1] if history.steps else {}
            raise NonFiniteLossError(
                f"non-finite loss or gradient at step {row['step']} (epoch {row['epoch']}): "
                f"{ {k: row[k] for k in keys} }; last finite step: {last}. "
                f"The last good checkpoint was kept. Likely cause: {nonfinite_advice(config)}.",
                step=row["step"], epoch=row["epoch"], history=history)
        history.steps.append(row)
    buffer.clear()
    meta.clear()


def train_epoch(s: RunState, epoch: int, bar: Any) -> None:
    """The steps of one epoch, appended to s.history (a row per step, read from the device once per sync)."""
    run_model, model, opt, gen, x_train, config, plan, history = (s.run_model, s.model, s.opt, s.gen, s.x_train,
                                                                  s.config, s.plan, s.history)
    tc, device = config.train, x_train.device
    bs, rank = plan.batch_size, plan.rank
    local = bs // plan.world_size  # this rank's share of each global batch
    perm_gen = torch.Generator(device=device).manual_seed(tc.seed * 100_003 + epoch)
    perm = torch.randperm(len(x_train), generator=perm_gen, device=device)  # same on every rank
    params = list(model.parameters())
    buffer: list[torch.Tensor] = []
    meta: list[dict] = []
    model.train()
    for i in range(plan.steps_per_epoch):
        step = epoch * plan.steps_per_epoch + i
        beta = beta_at(tc.schedule, step, plan.steps_per_epoch, plan.steps_per_epoch * layout_epochs(tc))
        idx = perm[i * bs + rank * local:i * bs + (rank + 1) * local]
        x = to_float(x_train[idx], channels_last=tc.channels_last)  # (B / world, C, H, W)
        eps = model.noise(bs, gen, device)  # the global batch's noise (None for a deterministic family)
        if eps is not None:
            eps = eps[rank * local:][:local]
        with autocast(config, device):
            outputs = run_model(x, eps=eps)
        loss = model.loss(x, outputs, beta)
        opt.zero_grad(set_to_none=True)
        loss.total.backward()  # DDP averages the gradients over ranks here
        if tc.grad_clip is not None:
            norm = torch.nn.utils.clip_grad_norm_(params, tc.grad_clip)  # the pre-clip norm
        else:
            norm = torch.nn.utils.get_total_norm([p.grad for p in params if p.grad is not None])
        opt.step()
        buffer.append(torch.stack([loss.total.detach(), *(loss.terms[k].detach() for k in model.TERMS),
                                   norm.detach().float()]))
        meta.append({"step": step, "epoch": epoch, "beta": beta, "lr": opt.param_groups[0]["lr"]})
        if len(buffer) >= tc.sync_every:
            _flush(buffer, meta, history, config, step_keys(model))
            bar.set_postfix(loss=f"{history.steps[-1]['total']:.1f}", beta=f"{beta:.3g}")
        bar.update(1)
    _flush(buffer, meta, history, config, step_keys(model))


def steps_per_epoch(config: Config, n_train: int) -> int:
    """Optimiser steps per epoch as fit counts them (the last partial batch is dropped); fit refuses a batch larger
    than the training set, and so does this."""
    if config.train.batch_size > n_train:
        raise ValueError(f"train.batch_size={config.train.batch_size} is invalid for {n_train} training images: "
                         f"allowed at most {n_train} (a smaller --batch-size, or a larger --max-train)")
    return n_train // config.train.batch_size
