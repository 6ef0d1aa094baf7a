"""fit / evaluate: the training loop with history, checkpoints and resume."""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from . import distributed
from .checkpoint import read_checkpoint, save_checkpoint, save_json
from .config import Config, comparable
from .data import load_from_config
from .evidence import convergence
from .families import build_model, family
from .history import History
from .losses import constant_image_nll
from .metrics import evaluate
from .provenance import versions
from .runtime import adam_impl, autocast, bf16_supported, mean_image, resolve_device, to_float
from .schedules import beta_at
from .schema import check_checkpoint, checkpoint_config
from .tblog import TensorBoardLog

CHECKPOINT = "checkpoint.pt"
HISTORY = "history.json"


def step_keys(model: Any) -> tuple[str, ...]:
    """The values each step reads from the device (once per sync): total, the family's named terms, grad_norm."""
    return ("total", *model.TERMS, "grad_norm")


Callback = Callable[[int, nn.Module, History], "bool | None"]  # (epoch, model, history) -> True to stop


class NonFiniteLossError(RuntimeError):
    """Training produced NaN or Inf; the last good checkpoint is left untouched.

    Attributes: step and epoch of the first non-finite value, and the history up to it.
    """

    def __init__(self, message: str, step: int = -1, epoch: int = -1, history: History | None = None) -> None:
        super().__init__(message)
        self.step, self.epoch, self.history = step, epoch, history


def _optimizer(model: nn.Module, config: Config, device: torch.device) -> torch.optim.Adam:
    impl = adam_impl(config)
    kw = {"fused": impl == "fused", "foreach": impl == "foreach"}
    return torch.optim.Adam(model.parameters(), lr=config.train.lr, **kw)


def _load_data(config: Config, train, val):
    train = load_from_config(config.data, "train") if train is None else train
    val = load_from_config(config.data, "val") if val is None else val
    return train, val


def _images(split: Any) -> torch.Tensor:
    return split.images if hasattr(split, "images") else split


def _check_images(images: torch.Tensor, config: Config, what: str) -> None:
    if images.dim() != 4 or tuple(images.shape[1:]) != config.input_shape:
        raise ValueError(f"{what} images of shape {tuple(images.shape)} are invalid: "
                         f"allowed (N, {', '.join(map(str, config.input_shape))}) for preset {config.name!r}")
    if len(images) == 0:
        raise ValueError(f"{what} images are empty: allowed at least one image")


def _state(model, opt, config, history, epoch, gen, seed) -> dict[str, Any]:
    return {"model": model.state_dict(), "optimizer": opt.state_dict(), "config": config.to_dict(),
            "history": history.to_dict(), "epoch": epoch, "generator": gen.get_state(), "seed": seed,
            "versions": versions()}


def _resume(path: Path, config: Config, model, opt, gen, device) -> tuple[History, int]:
    """Restore model, optimizer and generator from a checkpoint of the same config; everything it holds is checked
    first (schema.check_checkpoint), so a refusal, in one line, leaves all of them and the run folder as they were."""
    state = read_checkpoint(path, map_location=device)
    saved = checkpoint_config(state, path)
    same_but_epochs = dataclasses.replace(saved, train=dataclasses.replace(saved.train, epochs=config.train.epochs))
    if comparable(same_but_epochs) != comparable(config):
        raise ValueError(f"checkpoint {str(path)!r} was made with a different config; "
                         "allowed: the same config (epochs may grow), another out_dir, or resume=False")
    check_checkpoint(state, path, model, optimizer=opt, generator=gen)
    if state["epoch"] > config.train.epochs:
        raise ValueError(f"checkpoint {str(path)!r} has {state['epoch']} epochs, --epochs {config.train.epochs} is "
                         f"fewer: allowed --epochs >= {state['epoch']} (train.epochs), or another --out (out_dir)")
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    gen.set_state(state["generator"].cpu())  # a CUDA generator too takes its state as a CPU ByteTensor
    return History.from_dict(state["history"], f"the history in {path}"), state["epoch"]


@torch.no_grad()
def ignore_input_terms(x_train: torch.Tensor, x_val: torch.Tensor, config: Config, chunk: int = 1024
                       ) -> dict[str, float]:
    """The validation terms of the model that ignores its input: every image decoded to the training mean, the
    posterior at the prior (KL 0, which free bits charge as free_bits per dimension). evidence.convergence calls a
    run that ends no better than it derailed. Nats per image, summed in chunks (the data may be large)."""
    recon = constant_image_nll(mean_image(x_train, chunk).float(), x_val, config.train.recon, chunk)
    rate = family(config.model.kind).RATE
    return {"val_recon": recon, **({f"val_{rate}_used": config.train.free_bits * config.model.latent_dim}
                                   if rate is not None else {})}


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


def fit(config: Config, train: Any = None, val: Any = None, *, device: str | torch.device | None = None,
        out_dir: str | Path | None = None, resume: bool = True, quiet: bool = False,
        callbacks: Sequence[Callback] = (), log_dir: str | Path | None = None
        ) -> tuple[nn.Module, History]:
    """Train the model of config.model.kind (vaelib.families; the VAE by default); returns (model, history): see
    vaelib.history for what a History holds.

    train/val: ImageSplit or uint8/float tensors (N, C, H, W); loaded from config.data when None.
    out_dir: where checkpoint.pt and history.json go (written atomically after every epoch);
    with resume=True an existing checkpoint of the same config is continued (epochs may grow).
    callbacks: called as cb(epoch, model, history) after each epoch's checkpoint; one that returns True stops
    the run there (the epoch's callbacks all run first). fit's own come first: TensorBoard (log_dir) and the
    early stop (StopWhenConverged).
    config.train.stop_tol > 0 stops early once the run has converged (see `stopped`); train.epochs is the cap.
    log_dir: a TensorBoard folder (vaelib.tblog): step scalars, validation terms, KL per dimension and image
    grids after each epoch, read from the history (the numbers do not change); a resumed run appends.
    Under torchrun (a process group is initialised) each rank takes its share of every global batch,
    gradients are averaged by DistributedDataParallel, and only rank 0 writes files.
    """
    device = resolve_device(device)
    tc = config.train
    if tc.precision == "bf16" and not bf16_supported(device):
        raise ValueError(f"precision='bf16' is invalid on {device}: this device has no fast bf16; allowed 'fp32'")
    rank, world_size = distributed.world()
    if tc.batch_size % world_size:
        raise ValueError(f"train.batch_size={tc.batch_size} is invalid with {world_size} processes: "
                         "allowed a multiple of the number of processes")
    train, val = _load_data(config, train, val)
    x_train, x_val = _images(train).to(device), _images(val).to(device)  # data resident on the device
    _check_images(x_train, config, "train")
    _check_images(x_val, config, "val")

    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # shapes are fixed (full batches only): autotune once
    torch.manual_seed(tc.seed)
    model = build_model(config).to(device)
    if tc.channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = _optimizer(model, config, device)
    gen = torch.Generator(device=device).manual_seed(tc.seed)  # reparameterisation noise, same on all ranks
    history = History(options=_options(config, device, world_size))
    start_epoch = 0
    ckpt = Path(out_dir) / CHECKPOINT if out_dir is not None else None
    if ckpt is not None and resume and ckpt.exists():
        history, start_epoch = _resume(ckpt, config, model, opt, gen, device)
    history.options["ignore_input"] = ignore_input_terms(x_train, x_val, config)  # what the run must beat
    run_model = _wrap(model, config, device, world_size)

    if tc.batch_size > len(x_train):
        raise ValueError(f"train.batch_size={tc.batch_size} is invalid for {len(x_train)} training images: "
                         f"allowed at most {len(x_train)} (a smaller --batch-size, or a larger --max-train)")
    bs = tc.batch_size  # the global batch
    steps_per_epoch = len(x_train) // bs  # drop the last partial batch: fixed shapes, equal weights
    plan = {"bs": bs, "steps_per_epoch": steps_per_epoch, "total_steps": steps_per_epoch * tc.epochs,
            "rank": rank, "world": world_size}
    tb = TensorBoardLog(log_dir, config, first_step=start_epoch * steps_per_epoch, x_val=x_val)  # None/rank > 0: no-op
    stop = StopWhenConverged(config)
    hooks = [tb, stop, *callbacks]
    bar = tqdm(total=plan["total_steps"], initial=start_epoch * steps_per_epoch,
               disable=quiet or rank != 0 or None, desc=f"fit {config.name}", unit="step", dynamic_ncols=True)
    try:
        done = stop(start_epoch - 1, model, history)  # a resumed run that had stopped is finished
        for epoch in range(start_epoch, tc.epochs):
            if done:
                break
            t0 = time.perf_counter()
            _train_epoch(run_model, model, opt, gen, x_train, config, epoch, plan, history, bar)
            _end_epoch(model, x_val, config, history, epoch, steps_per_epoch, bs, t0, device)
            last = history.epochs[-1]
            if not math.isfinite(last["val_total"]):  # the last step's update can break the weights unseen
                raise NonFiniteLossError(
                    f"non-finite validation loss after epoch {epoch} (the weights went non-finite in its last "
                    f"steps). The last good checkpoint was kept. Likely cause: {nonfinite_advice(config)}.",
                    step=(epoch + 1) * steps_per_epoch - 1, epoch=epoch, history=history)
            bar.set_postfix(loss=f"{last['train_total']:.1f}", val=f"{last['val_total']:.1f}",
                            beta=f"{last['beta']:.3g}")
            if ckpt is not None and rank == 0:
                save_checkpoint(ckpt, _state(model, opt, config, history, epoch + 1, gen, tc.seed))
                save_json(ckpt.parent / HISTORY, history.to_dict())
            distributed.barrier()
            done = any([cb(epoch, model, history) for cb in hooks])  # a list: every callback runs
    finally:
        tb.close(history)  # also the steps of an interrupted epoch: a resumed run's purge_step replaces them
        bar.close()
    model.eval()
    return model, history


class StopWhenConverged:
    """fit's early stop, as a callback: True (stop) once `stopped(history, config)`."""

    def __init__(self, config: Config) -> None:
        self.config = config

    def __call__(self, epoch: int, model: nn.Module, history: History) -> bool:
        return stopped(history, self.config)


def stopped(history: History, config: Config) -> bool:
    """With train.stop_tol > 0: the run has converged (evidence.convergence at that tol) at its schedule's final
    beta, after at least train.min_epochs epochs, so fit trains no further epoch. Read from the history alone, so a
    resumed run stops where it did."""
    tol = config.train.stop_tol
    if not tol or len(history.epochs) < max(1, config.train.min_epochs):
        return False  # not asked, or not yet the least number of epochs
    if history.epochs[-1]["beta"] != config.train.schedule.beta:
        return False  # a warmup or ramp still under way
    return convergence(history, tol)["converged"]


def _wrap(model: nn.Module, config: Config, device: torch.device, world_size: int):
    """The module the steps call: DDP across ranks, optionally compiled."""
    run = model
    if world_size > 1:
        if config.model.batch_norm:
            run = torch.nn.SyncBatchNorm.convert_sync_batchnorm(run)
        run = torch.nn.parallel.DistributedDataParallel(run, device_ids=[device.index] if device.type == "cuda"
                                                        else None)
    return torch.compile(run) if config.train.compile else run


def _train_epoch(run_model, model: nn.Module, opt, gen, x_train, config: Config, epoch: int, plan: dict,
                 history: History, bar) -> None:
    tc, device = config.train, x_train.device
    bs, rank, world_size = plan["bs"], plan["rank"], plan["world"]
    local = bs // world_size  # this rank's share of each global batch
    perm_gen = torch.Generator(device=device).manual_seed(tc.seed * 100_003 + epoch)
    perm = torch.randperm(len(x_train), generator=perm_gen, device=device)  # same on every rank
    params = list(model.parameters())
    buffer: list[torch.Tensor] = []
    meta: list[dict] = []
    model.train()
    for i in range(plan["steps_per_epoch"]):
        step = epoch * plan["steps_per_epoch"] + i
        beta = beta_at(tc.schedule, step, plan["steps_per_epoch"], plan["total_steps"])
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


def _end_epoch(model, x_val, config, history, epoch, steps, bs, t0, device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - t0
    rows = history.steps[-steps:]  # this epoch's rows: _flush appended exactly `steps` of them
    beta = rows[-1]["beta"] if rows else config.train.schedule.beta
    val = evaluate(model, x_val, config, beta=beta)
    mean = {k: sum(r[k] for r in rows) / max(len(rows), 1) for k in ("total", *model.TERMS)}
    history.epochs.append({
        "epoch": epoch, "beta": beta, "seconds": seconds, "images_per_sec": steps * bs / seconds,
        **{f"train_{k}": v for k, v in mean.items()}, **{f"val_{k}": v for k, v in val.items()}})
    model.train()


def _options(config: Config, device: torch.device, world_size: int = 1) -> dict[str, Any]:
    tc, cls = config.train, family(config.model.kind)
    return {"terms": list(cls.TERMS), "rate": cls.RATE,  # the loss's named terms: which fields the rows hold
            "device": str(device), "precision": tc.precision, "channels_last": tc.channels_last,
            "adam_impl": adam_impl(config), "compile": tc.compile, "sync_every": tc.sync_every,
            "data_resident_on_device": True, "world_size": world_size,
            "cudnn_benchmark": device.type == "cuda", "threads": torch.get_num_threads()}
