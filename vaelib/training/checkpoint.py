"""Checkpoints, in one place: what one holds, how it is written and how it is read back.

- Written by fit after every epoch (`checkpoint_state`, then `save_checkpoint`: atomically, never through a link).
- Read by `read_checkpoint` with torch.load(weights_only=True), so a shared checkpoint cannot run code, and checked
  before anything is restored (`check_checkpoint`: every key, its type, and each tensor's shape against the model
  the checkpoint's own config builds). An empty model, a tensor of another shape, an epoch given as a string would
  each end in a deep traceback half-way through a resume; here they are one line (`MalformedFile`, a ValueError)
  naming the file, the key, what was found and what was expected. The JSON files the commands read are checked the
  same way (training.jsonfiles).
- `load_checkpoint` rebuilds the trained model from the file alone.
"""

from __future__ import annotations

import math
import os
import pickle
import re
from pathlib import Path
from typing import Any

import torch
from torch.torch_version import TorchVersion

from vaelib.config import Config
from vaelib.config_checks import refuse_argument
from vaelib.io.files import save_torch
from vaelib.io.paths import check_readable_file
from vaelib.io.provenance import versions
from vaelib.io.refusals import (
    MISSING,
    MalformedFile,
    check_depth,
    is_count,
    is_int,
    is_nonnegative,
    is_versions,
    need,
    refuse,
)
from vaelib.models.registry import build_model
from vaelib.runtime import resolve_device
from vaelib.training.history import History

TRAINING_KEYS = ("config", "model", "optimizer", "history", "epoch", "generator")  # what a resume restores
ALL_KEYS = (*TRAINING_KEYS, "seed", "versions")  # every key checkpoint_state writes
WEIGHTS_KEYS = ("config", "model")  # what load_checkpoint needs (a shipped model has no optimizer)
MODEL_KEYS = (*WEIGHTS_KEYS, "history", "epoch", "seed", "versions")  # what a shipped model holds
EXPECTED = {  # what each key of a checkpoint holds, as a refusal says it
    "config": "a dict of the config's fields (Config.to_dict)", "model": "a dict of tensors (the model's state_dict)",
    "optimizer": "a dict with 'state' and 'param_groups' (the optimizer's state_dict)",
    "history": "the run's history (History.to_dict)", "epoch": "the number of epochs trained (an integer >= 0)",
    "generator": "the random generator's state (a 1-D uint8 tensor)", "seed": "the run's seed (an integer >= 0)",
    "versions": "a dict of version strings"}
CHECKPOINT_FILE = "a checkpoint file (checkpoint.pt in a run folder, or a model vaelib shipped)"  # a path's refusal
ADAM_MOMENTS = ("exp_avg", "exp_avg_sq")  # per-parameter tensors of Adam's state, each of the parameter's shape


def checkpoint_config(state: dict[str, Any], path: str | Path) -> Config:
    """The Config a checkpoint was made with; its own one-line refusal, prefixed with the file, if it is invalid."""
    d = state.get("config", MISSING)
    if not isinstance(d, dict):
        refuse(path, "config", d, EXPECTED["config"])
    try:
        return Config.from_dict(d)
    except (ValueError, TypeError) as err:  # TypeError: keys that are not strings
        raise MalformedFile(f"{path}: config is invalid: {' '.join(str(err).split())}") from None


def meta_model(config: Config) -> torch.nn.Module:
    """The config's model on the meta device: every parameter's shape, no memory."""
    with torch.device("meta"):
        return build_model(config)


def check_checkpoint(state: dict[str, Any], path: str | Path, config_model: torch.nn.Module | None = None, *,
                     optimizer: torch.optim.Optimizer | None = None, generator: torch.Generator | None = None,
                     require: tuple[str, ...] = TRAINING_KEYS, keys: tuple[str, ...] = ALL_KEYS) -> Config:
    """Check the keys of a checkpoint (checkpoint_state) before anything is restored; returns its Config.

    config_model: the model its weights go into (default: the one its config builds, on the meta device);
    optimizer, generator: the ones a resume restores, so the optimizer's groups and the generator's size are
    compared too. `require`: the keys that must be there (a shipped model has no optimizer); `keys`: those
    checked where present (load_checkpoint leaves the optimizer it does not read alone).
    """
    if not isinstance(state, dict):
        refuse(path, "the top level", state, "a dict (a vaelib checkpoint)")
    for key in require:
        if key not in state:
            refuse(path, key, MISSING, EXPECTED[key])
    config = checkpoint_config(state, path)
    model = config_model if config_model is not None else meta_model(config)
    check_weights(state.get("model", MISSING), path, model)
    present = {k for k in keys if k in state}
    history = History.from_dict(state["history"], str(path), key="history") if "history" in present else None
    if "epoch" in present:
        need(state, "epoch", is_count, EXPECTED["epoch"], path)
        if history is not None and state["epoch"] != len(history.epochs):
            raise MalformedFile(f"{path}: epoch is {state['epoch']} but its history holds {len(history.epochs)} "
                                "epochs: expected the same number (a checkpoint is written after each epoch)")
    if "seed" in present:
        need(state, "seed", is_count, EXPECTED["seed"], path)
    if "versions" in present:
        need(state, "versions", is_versions, EXPECTED["versions"], path)
    if "optimizer" in present:
        check_optimizer(state["optimizer"], path, optimizer or torch.optim.Adam(model.parameters()))
    if "generator" in present:
        check_generator(state["generator"], path, generator)
    return config


def check_weights(weights: Any, path: str | Path, model: torch.nn.Module) -> None:
    """The saved model state against model.state_dict(): the same keys, each a tensor of the same shape."""
    if not isinstance(weights, dict):
        refuse(path, "model", weights, EXPECTED["model"])
    expected = model.state_dict()
    missing = [k for k in expected if k not in weights]
    if missing:
        want = tuple(expected[missing[0]].shape)
        raise MalformedFile(f"{path}: model.{missing[0]} is missing ({len(missing)} of the {len(expected)} tensors "
                            f"of the config's model are): the config's model needs a tensor of shape {want}")
    for key, want in expected.items():
        got = weights[key]
        if not isinstance(got, torch.Tensor) or got.layout != torch.strided or got.is_complex():
            refuse(path, f"model.{key}", got, f"a tensor of shape {tuple(want.shape)}")
        if tuple(got.shape) != tuple(want.shape):
            raise MalformedFile(f"{path}: model.{key} has shape {tuple(got.shape)}, the config's model needs "
                                f"{tuple(want.shape)}")
        if got.is_floating_point() != want.is_floating_point():
            refuse(path, f"model.{key}", got, f"a {want.dtype} tensor (floating point: {want.is_floating_point()})")
        if got.is_floating_point() and not bool(torch.isfinite(got).all()):
            raise MalformedFile(f"{path}: model.{key} holds non-finite values (NaN or inf): expected finite weights "
                                "(vaelib saves a checkpoint only after a finite epoch)")
    extra = [k for k in weights if k not in expected]
    if extra:
        raise MalformedFile(f"{path}: model.{extra[0]} is unexpected ({len(extra)} tensors are): the config's model "
                            "has no such tensor")


def check_optimizer(saved: Any, path: str | Path, optimizer: torch.optim.Optimizer) -> None:
    """An Adam state dict that optimizer.load_state_dict takes and its next step can use: its groups, their
    hyperparameters, and each parameter's step and moments (of the parameter's shape)."""
    if not isinstance(saved, dict):
        refuse(path, "optimizer", saved, EXPECTED["optimizer"])
    mine = optimizer.param_groups
    groups = need(saved, "param_groups", lambda g: isinstance(g, list) and len(g) == len(mine),
                  f"a list of {len(mine)} parameter group(s)", path, "optimizer.")
    state = need(saved, "state", lambda s: isinstance(s, dict), "a dict of each parameter's state", path,
                 "optimizer.")
    params: dict[Any, tuple[torch.Tensor, dict]] = {}
    for i, (group, own) in enumerate(zip(groups, mine)):
        _check_group(group, own, path, f"optimizer.param_groups[{i}]")
        params.update((pid, (p, group)) for pid, p in zip(group["params"], own["params"]))
    if len(params) != sum(len(g["params"]) for g in mine):
        refuse(path, "optimizer.param_groups", groups, "each parameter id once")
    for pid, s in state.items():
        key = f"optimizer.state[{pid!r}]"
        if pid not in params:
            raise MalformedFile(f"{path}: {key} names no parameter: expected the ids of optimizer.param_groups")
        if not isinstance(s, dict):
            refuse(path, key, s, "a dict (step, exp_avg, exp_avg_sq)")
        if s:  # an empty state is one Adam has not stepped yet
            _check_moments(s, *params[pid], path, key)


def _check_group(group: Any, own: dict, path: str | Path, key: str) -> None:
    if not isinstance(group, dict):
        refuse(path, key, group, "a dict (params, lr, betas, eps, weight_decay, ...)")
    n = len(own["params"])
    need(group, "params", lambda p: isinstance(p, list) and len(p) == n and all(is_int(i) for i in p),
         f"a list of {n} parameter ids", path, key + ".")
    for name in ("lr", "eps", "weight_decay"):
        need(group, name, is_nonnegative, "a finite number >= 0", path, key + ".")
    need(group, "betas", lambda b: isinstance(b, (tuple, list)) and len(b) == 2 and all(is_nonnegative(x) for x in b),
         "two finite numbers >= 0 (Adam's beta1, beta2)", path, key + ".")
    for name, value in own.items():  # the flags (amsgrad, fused, ...): what Adam's step branches on
        if isinstance(value, bool) and name in group and not isinstance(group[name], (bool, type(None))):
            refuse(path, f"{key}.{name}", group[name], "true or false")


def _check_moments(s: dict, param: torch.Tensor, group: dict, path: str | Path, key: str) -> None:
    step = s.get("step", MISSING)
    if not (isinstance(step, torch.Tensor) and step.numel() == 1 and not step.is_complex()
            and step.dtype != torch.bool and math.isfinite(float(step)) and float(step) >= 0):
        refuse(path, f"{key}.step", step, "a tensor holding the number of steps taken (>= 0)")
    for name in ADAM_MOMENTS + (("max_exp_avg_sq",) if group.get("amsgrad") else ()):
        value = s.get(name, MISSING)
        if not (isinstance(value, torch.Tensor) and value.is_floating_point() and value.shape == param.shape):
            refuse(path, f"{key}.{name}", value, f"a floating-point tensor of the parameter's shape "
                                                 f"{tuple(param.shape)}")


def check_generator(saved: Any, path: str | Path, generator: torch.Generator | None = None) -> None:
    """A generator state: a 1-D uint8 tensor (a subclass too), of the size this device's generator takes."""
    size = generator.get_state().numel() if generator is not None else None
    ok = (isinstance(saved, torch.Tensor) and saved.dtype == torch.uint8 and saved.dim() == 1
          and (size is None or saved.numel() == size))
    if not ok:
        device = f" ({generator.device.type} generator)" if generator is not None else ""
        refuse(path, "generator", saved, f"a 1-D uint8 tensor{f' of {size} bytes' if size else ''}, the random "
                                         f"generator's state{device}")


def checkpoint_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer, config: Config, history: History,
                     epoch: int, generator: torch.Generator) -> dict[str, Any]:
    """What fit saves after each epoch (ALL_KEYS): enough to resume the run exactly and to rebuild the model alone."""
    return {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "config": config.to_dict(),
            "history": history.to_dict(), "epoch": epoch, "generator": generator.get_state(),
            "seed": config.train.seed, "versions": versions()}


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Atomically torch.save a dict, e.g. a checkpoint or a dataset cache (a crash leaves the old file intact)."""
    save_torch(path, state)


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """The raw checkpoint dict; refuses missing, corrupt, foreign or code-carrying files with a clear message.

    Loading never runs code from the file: torch.load(weights_only=True) rebuilds only tensors and plain
    Python types, so a checkpoint shared by someone else is safe to open. Checkpoints written before
    versions() stored strings hold torch's TorchVersion (a str subclass); it is allowed by name.
    """
    path = check_readable_file(_checked_path(path), "checkpoint", CHECKPOINT_FILE, inside="checkpoint.pt")
    try:
        with torch.serialization.safe_globals([TorchVersion]):
            state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        if "GLOBAL" not in str(err):  # not a refused global: bytes that are no pickle torch can read
            raise MalformedFile(f"checkpoint {str(path)!r} is unreadable (truncated, empty or not a torch file): "
                                f"{_last_line(err)}") from None
        raise MalformedFile(f"checkpoint {str(path)!r} is refused: it holds objects other than tensors and plain "
                         f"Python types, and loading it could run code ({_global_named(err)}); vaelib never "
                         "writes such files") from None
    except Exception as err:  # torch reports a truncated or foreign file in many ways (EOFError, KeyError, ...)
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise MalformedFile(f"checkpoint {str(path)!r} is unreadable (truncated, empty or not a torch file): "
                            f"{first}") from None
    if not isinstance(state, dict) or "config" not in state or "model" not in state:
        raise MalformedFile(f"{str(path)!r} is not a vaelib checkpoint (no config/model entries)")
    check_depth(state, path)  # torch.load rebuilds any depth; torch.save and json.dumps of it would recurse
    return state


def _checked_path(path: Any) -> Path:
    """path as a Path, refused in one line unless it is a str or an os.PathLike (5, None, bytes are not), and not
    empty ('' would mean the current folder)."""
    if isinstance(path, bytes) or not isinstance(path, (str, os.PathLike)):
        refuse_argument("path", path, "a path to a checkpoint file (a str or a pathlib.Path)")
    if not str(os.fspath(path)).strip():
        refuse_argument("path", path, CHECKPOINT_FILE)
    return Path(path)


def _last_line(err: Exception) -> str:
    lines = [line for line in str(err).splitlines() if line.strip()]
    return lines[-1] if lines else type(err).__name__


def _global_named(err: Exception) -> str:
    """The 'module.name' a weights-only load refused, from torch's message, or a generic phrase."""
    match = re.search(r"GLOBAL ([\w.]+)", str(err))
    return f"it calls for {match.group(1)}" if match else "it names a global"


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu"):
    """Rebuild the trained model from a checkpoint alone, on `device` ('cpu', 'cuda', 'cuda:N', or 'auto' or None:
    CUDA when available; runtime.resolve_device): returns (model, state).

    Its config, weights (each tensor's shape against the model the config builds) and, where present, history
    and epoch are checked first (check_checkpoint): a malformed one is refused in one line."""
    _checked_path(path)
    device = resolve_device(device)  # a bad device is refused as such, before the file is read
    state = read_checkpoint(path, map_location=device)
    model = build_model(checkpoint_config(state, path)).to(device)
    check_checkpoint(state, path, model, require=WEIGHTS_KEYS, keys=MODEL_KEYS)
    model.load_state_dict(state["model"])
    model.eval()
    return model, state
