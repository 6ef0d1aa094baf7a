"""fit: the training loop with its history, checkpoints, resume and callbacks (the steps themselves: steps.py)."""

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

from vaelib.config import Config, check_config, comparable
from vaelib.config_checks import refuse_argument
from vaelib.data.datasets import load_from_config
from vaelib.io.files import save_json
from vaelib.losses import constant_image_nll
from vaelib.models.base import check_images, init_output_bias
from vaelib.models.perceptual import perceptual_distance
from vaelib.models.registry import build_model, family
from vaelib.runtime import adam_impl, bf16_supported, mean_image, resolve_device
from vaelib.schedules import layout_epochs
from vaelib.training import distributed
from vaelib.training.checkpoint import (
    check_checkpoint,
    checkpoint_config,
    checkpoint_state,
    read_checkpoint,
    save_checkpoint,
)
from vaelib.training.history import History
from vaelib.training.steps import (
    NonFiniteLossError,
    RunState,
    StepPlan,
    nonfinite_advice,
    steps_per_epoch,
    train_epoch,
)
from vaelib.training.tensorboard import TensorBoardLog
from vaelib.training.validation import evaluate

CHECKPOINT = "checkpoint.pt"
HISTORY = "history.json"


Callback = Callable[[int, nn.Module, History], "bool | None"]  # (epoch, model, history) -> True to stop


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


def _resume(path: Path, config: Config, model, opt, gen, device) -> tuple[History, int]:
    """Restore model, optimizer and generator from a checkpoint of the same config; everything it holds is checked
    first (check_checkpoint), so a refusal, in one line, leaves all of them and the run folder as they were."""
    state = read_checkpoint(path, map_location=device)
    saved = checkpoint_config(state, path)
    same_but_epochs = dataclasses.replace(saved, train=dataclasses.replace(saved.train, epochs=config.train.epochs))
    if comparable(same_but_epochs) != comparable(config):
        raise ValueError(f"checkpoint {str(path)!r} was made with a different config; "
                         "allowed: the same config (epochs may grow), another out_dir, or resume=False")
    if saved.train.schedule.kind == "cyclic" and layout_epochs(saved.train) != layout_epochs(config.train):
        raise ValueError(f"checkpoint {str(path)!r} was trained with a cyclic beta schedule laid over "
                         f"{layout_epochs(saved.train)} epochs; with --epochs {config.train.epochs} (train.epochs) its "
                         "cycles would span another length, and the resumed run would not be the run it claims: "
                         f"allowed --epochs {saved.train.epochs}, another --out (out_dir), or resume=False")
    check_checkpoint(state, path, model, optimizer=opt, generator=gen)
    if state["epoch"] > config.train.epochs:
        raise ValueError(f"checkpoint {str(path)!r} has {state['epoch']} epochs, --epochs {config.train.epochs} is "
                         f"fewer: allowed --epochs >= {state['epoch']} (train.epochs), or another --out (out_dir)")
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    gen.set_state(state["generator"].cpu())  # a CUDA generator too takes its state as a CPU ByteTensor
    return History.from_dict(state["history"], f"the history in {path}"), state["epoch"]


@torch.no_grad()
def ignore_input_terms(x_train: torch.Tensor, x_val: torch.Tensor, config: Config, chunk: int = 1024,
                       distance: nn.Module | None = None, mean: torch.Tensor | None = None) -> dict[str, float]:
    """The validation terms of the model that ignores its input: every image decoded to the training mean, the
    posterior at the prior (KL 0, which free bits charge as free_bits per dimension). evidence.convergence calls a
    run that ends no better than it derailed. Nats per image, summed in chunks (the data may be large).
    distance: the model's perceptual distance (model.perceptual), built from the config when not given.
    mean: mean_image(x_train) when the caller has it already (fit: the output's start reads it too)."""
    if distance is None:
        distance = perceptual_distance(config)
    if mean is None:
        mean = mean_image(x_train, chunk)
    recon = constant_image_nll(mean.float(), x_val, config.train.recon, chunk, distance)
    rate = family(config.model.kind).RATE
    tc = config.train  # KL 0: free bits charge free_bits per dimension, a target rate |0 - target_rate|
    used = tc.target_rate if tc.target_rate is not None else tc.free_bits * config.model.latent_dim
    return {"val_recon": recon, **({f"val_{rate}_used": used} if rate is not None else {})}


def fit(config: Config, train: Any = None, val: Any = None, *, device: str | torch.device | None = None,
        out_dir: str | Path | None = None, resume: bool = True, quiet: bool = False,
        callbacks: Sequence[Callback] = (), log_dir: str | Path | None = None,
        stop: Callable[[History], bool] | None = None) -> tuple[nn.Module, History]:
    """Train the model of config.model.kind (vaelib.models.registry; the VAE by default); returns (model, history): see
    vaelib.training.history for what a History holds.

    train/val: ImageSplit or uint8/float tensors (N, C, H, W), floats in [0, 1]; loaded from config.data when None.
    out_dir: where checkpoint.pt and history.json go (written atomically after every epoch);
    with resume=True an existing checkpoint of the same config is continued (epochs may grow).
    callbacks: called as cb(epoch, model, history) after each epoch's checkpoint; one that returns True stops
    the run there (the epoch's callbacks all run first). fit's own come first: TensorBoard (log_dir) and `stop`.
    stop: the rule that ends the run early, read from the history after each epoch (and before the first, so a
    resumed run that had stopped trains no further); train.epochs is the cap. config.train.stop_tol > 0 needs one:
    experiments.evidence.StopWhenConverged(config), which experiments.cache.cached_fit and the train command pass.
    log_dir: a TensorBoard folder (training.tensorboard): step scalars, validation terms, KL per dimension and image
    grids after each epoch, read from the history (the numbers do not change); a resumed run appends.
    Under torchrun (a process group is initialised) each rank takes its share of every global batch,
    gradients are averaged by DistributedDataParallel, and only rank 0 writes files.
    """
    _check_arguments(config, train, val, callbacks, stop)
    state = _setup(config, train, val, device, out_dir, resume)
    tb = TensorBoardLog(log_dir, config, first_step=state.start_epoch * state.plan.steps_per_epoch,
                        x_val=state.x_val)  # a no-op without log_dir or off rank 0
    if config.train.stop_tol and stop is None:
        raise ValueError(f"train.stop_tol={config.train.stop_tol:g} needs a stop rule: allowed stop_tol=0, or "
                         "fit(..., stop=experiments.evidence.StopWhenConverged(config)) (cached_fit passes it)")
    stop = stop or _never

    def stop_hook(epoch: int, model: nn.Module, history: History) -> bool:
        return stop(history)

    hooks = [tb, stop_hook, *callbacks]
    bar = tqdm(total=state.plan.total_steps, initial=state.start_epoch * state.plan.steps_per_epoch,
               disable=quiet or state.plan.rank != 0 or None, desc=f"fit {config.name}", unit="step",
               dynamic_ncols=True)
    try:
        done = stop(state.history)  # a resumed run that had stopped is finished
        for epoch in range(state.start_epoch, config.train.epochs):
            if done:
                break
            _epoch(state, epoch, bar)
            done = any([cb(epoch, state.model, state.history) for cb in hooks])  # a list: every callback runs
    finally:
        tb.close(state.history)  # also the steps of an interrupted epoch: a resumed run's purge_step replaces them
        bar.close()
    if state.ckpt is not None and state.plan.rank == 0:  # history.json mirrors the checkpoint, even if damaged since
        save_json(state.ckpt.parent / HISTORY, state.history.to_dict())
    state.model.eval()
    return state.model, state.history


SPLITS_ALLOWED = ("None (loaded from config.data), an ImageSplit, or a uint8 or float torch tensor (N, C, H, W) "
                  "(torch.from_numpy(a) converts a numpy array)")


def _check_arguments(config: Any, train: Any, val: Any, callbacks: Any, stop: Any) -> None:
    """Refuse, in one line naming it, an argument of the wrong kind, before anything is loaded, built or trained
    (the images' shape, dtype and values: _setup, once they are on the device)."""
    check_config(config)
    for name, split in (("train", train), ("val", val)):
        if split is not None and not isinstance(_images(split), torch.Tensor):
            refuse_argument(f"{name}.images" if hasattr(split, "images") else name, _images(split), SPLITS_ALLOWED)
    if (not isinstance(callbacks, Sequence) or isinstance(callbacks, (str, bytes))
            or not all(callable(cb) for cb in callbacks)):
        refuse_argument("callbacks", callbacks, "a list of callables cb(epoch, model, history), True to stop the run")
    if stop is not None and not callable(stop):
        refuse_argument("stop", stop, "None or a callable stop(history) -> bool")


def _setup(config: Config, train: Any, val: Any, device: str | torch.device | None, out_dir: str | Path | None,
           resume: bool) -> RunState:
    """Everything checked and built before the first step: refusals first (in one line), then the data on the
    device, the model from its seed, the optimizer, a resumed checkpoint, the baseline the run must beat."""
    if out_dir is not None and not str(out_dir).strip():
        raise ValueError(f"out_dir={out_dir!r} is invalid: allowed a folder's path, or None to write no file")
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
    check_images(x_train, config, "train images", values=True)
    check_images(x_val, config, "val images", values=True)

    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # shapes are fixed (full batches only): autotune once
    torch.manual_seed(tc.seed)
    model = build_model(config).to(device)
    train_mean = mean_image(x_train)  # (C, H, W): the output's start (data_mean) and the baseline below
    if config.model.output_bias == "data_mean":  # a resumed run's checkpoint replaces it below
        init_output_bias(model, train_mean[None])
    if tc.channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = _optimizer(model, config, device)
    gen = torch.Generator(device=device).manual_seed(tc.seed)  # reparameterisation noise, same on all ranks
    history = History(options=_options(config, device, world_size))
    start_epoch = 0
    ckpt = Path(out_dir) / CHECKPOINT if out_dir is not None else None
    if ckpt is not None and resume and ckpt.exists():
        history, start_epoch = _resume(ckpt, config, model, opt, gen, device)
    history.options["ignore_input"] = ignore_input_terms(x_train, x_val, config,  # what the run must beat
                                                         distance=getattr(model, "perceptual", None), mean=train_mean)
    run_model = _wrap(model, config, device, world_size)

    steps = steps_per_epoch(config, len(x_train))  # drop the last partial batch: fixed shapes, equal weights
    plan = StepPlan(tc.batch_size, steps, steps * tc.epochs, rank, world_size)
    return RunState(config, device, x_train, x_val, model, run_model, opt, gen, history, start_epoch, plan, ckpt)


def _epoch(s: RunState, epoch: int, bar) -> None:
    """One epoch: its steps, the validation terms, the non-finite guard, then the checkpoint (rank 0)."""
    t0 = time.perf_counter()
    train_epoch(s, epoch, bar)
    _end_epoch(s, epoch, t0)
    last = s.history.epochs[-1]
    if not math.isfinite(last["val_total"]):  # the last step's update can break the weights unseen
        raise NonFiniteLossError(
            f"non-finite validation loss after epoch {epoch} (the weights went non-finite in its last "
            f"steps). The last good checkpoint was kept. Likely cause: {nonfinite_advice(s.config)}.",
            step=(epoch + 1) * s.plan.steps_per_epoch - 1, epoch=epoch, history=s.history)
    bar.set_postfix(loss=f"{last['train_total']:.1f}", val=f"{last['val_total']:.1f}", beta=f"{last['beta']:.3g}")
    if s.ckpt is not None and s.plan.rank == 0:
        save_checkpoint(s.ckpt, checkpoint_state(s.model, s.opt, s.config, s.history, epoch + 1, s.gen))
        save_json(s.ckpt.parent / HISTORY, s.history.to_dict())
    distributed.barrier()


def _wrap(model: nn.Module, config: Config, device: torch.device, world_size: int):
    """The module the steps call: DDP across ranks, optionally compiled."""
    run = model
    if world_size > 1:
        if config.model.batch_norm:
            run = torch.nn.SyncBatchNorm.convert_sync_batchnorm(run)
        run = torch.nn.parallel.DistributedDataParallel(run, device_ids=[device.index] if device.type == "cuda"
                                                        else None)
    return torch.compile(run) if config.train.compile else run


def _end_epoch(s: RunState, epoch: int, t0: float) -> None:
    """The epoch's row: its time, the mean of its steps' terms and the validation terms at its last beta."""
    if s.device.type == "cuda":
        torch.cuda.synchronize(s.device)
    seconds = time.perf_counter() - t0
    steps, bs = s.plan.steps_per_epoch, s.plan.batch_size
    rows = s.history.steps[-steps:]  # this epoch's rows: _flush appended exactly `steps` of them
    beta = rows[-1]["beta"] if rows else s.config.train.schedule.beta
    val = evaluate(s.model, s.x_val, s.config, beta=beta)
    mean = {k: sum(r[k] for r in rows) / max(len(rows), 1) for k in ("total", *s.model.TERMS)}
    stats = s.model.epoch_stats(s.x_val) if getattr(s.model, "EPOCH_STATS", ()) else {}
    s.history.epochs.append({
        "epoch": epoch, "beta": beta, "seconds": seconds, "images_per_sec": steps * bs / seconds,
        **{f"train_{k}": v for k, v in mean.items()}, **{f"val_{k}": v for k, v in {**val, **stats}.items()},
        "threads": torch.get_num_threads()})  # per epoch: a resumed run may run on another count (options: the first)
    s.model.train()


def _options(config: Config, device: torch.device, world_size: int = 1) -> dict[str, Any]:
    tc, cls = config.train, family(config.model.kind)
    return {"terms": list(cls.TERMS), "rate": cls.RATE,  # the loss's named terms: which fields the rows hold
            **({"epoch_stats": list(cls.EPOCH_STATS)} if getattr(cls, "EPOCH_STATS", ()) else {}),
            "device": str(device), "precision": tc.precision, "channels_last": tc.channels_last,
            "adam_impl": adam_impl(config), "compile": tc.compile, "sync_every": tc.sync_every,
            "data_resident_on_device": True, "world_size": world_size,
            "cudnn_benchmark": device.type == "cuda",
            "threads": torch.get_num_threads()}  # when the run started; each epoch row records its own (a resume)


def _never(history: History) -> bool:
    return False
