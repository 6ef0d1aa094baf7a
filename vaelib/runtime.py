"""Where and how the numbers are computed: device choice, bf16 support, autocast, Adam's implementation, and
the one uint8 -> float conversion every part of vaelib uses."""

from __future__ import annotations

import os
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:  # annotations only: config imports losses, which imports runtime
    from vaelib.config import Config


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """CUDA when available unless told otherwise; refuses unknown device strings."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device={device!r} is invalid: allowed 'auto', 'cpu', 'cuda', 'cuda:N'") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} is invalid: CUDA is not available here; allowed 'auto' or 'cpu'")
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device={device!r} is invalid: allowed 'auto', 'cpu', 'cuda', 'cuda:N'")
    return dev


BF16_ENV = "VAELIB_CPU_BF16"  # "1"/"0": treat this CPU as having fast bf16 or not, whatever its flags say


def cpu_bf16_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> bool:
    """Whether the CPU's flags list avx512_bf16 or AMX (False where they cannot be read)."""
    try:
        flags = Path(cpuinfo).read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def bf16_supported(device: torch.device) -> bool:
    """bf16 autocast pays off on CUDA, and on CPUs with avx512_bf16 or AMX.

    On the CPU, the environment variable VAELIB_CPU_BF16=1 or =0 overrides the flags, so that the test suite
    and the benchmark can run either branch on any machine (bf16 is slow without the flags, but correct).
    """
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    forced = os.environ.get(BF16_ENV, "")
    if forced not in ("", "0", "1"):
        raise ValueError(f"{BF16_ENV}={forced!r} is invalid: allowed '1' (bf16 present), '0' (absent) or unset")
    return forced == "1" if forced else cpu_bf16_flags()


HEADLESS_ENV = "VAELIB_HEADLESS"  # "1": a notebook runs unattended (papermill, nbval): no progress bars


def headless() -> bool:
    """True when notebooks run unattended: `vaelib report` and the nbval run set VAELIB_HEADLESS=1 for their
    kernels, so progress bars (whose frozen text would otherwise be saved in the notebook) stay off; a person in
    JupyterLab, where the variable is unset, sees them."""
    value = os.environ.get(HEADLESS_ENV, "")
    if value not in ("", "0", "1"):
        raise ValueError(f"{HEADLESS_ENV}={value!r} is invalid: allowed '1' (unattended), '0' or unset")
    return value == "1"


def autocast(config: Config, device: torch.device):
    if config.train.precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return nullcontext()


def adam_impl(config: Config) -> str:
    """'auto' means fused: 0.98-1.21x over foreach on this project's CPU, typically 1.02x (reports/benchmarks)."""
    return "fused" if config.train.adam_impl == "auto" else config.train.adam_impl


def to_float(images: torch.Tensor, device: torch.device | None = None, *, channels_last: bool = False,
             dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 (B, C, H, W) -> float32 (or `dtype`) in [0, 1], moved to `device` first if given (uint8 moves 4x
    fewer bytes); float input is taken as already in [0, 1]. The one uint8 -> float conversion in vaelib."""
    images = images.to(device) if device is not None else images
    x = images.to(dtype).div_(255) if images.dtype == torch.uint8 else images.to(dtype)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def mean_image(images: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
    """The mean image (C, H, W) in [0, 1], float64, of uint8 or float images (N, C, H, W), summed in chunks so that
    a large split is never converted at once."""
    total = torch.zeros(images.shape[1:], dtype=torch.float64, device=images.device)
    for part in images.split(chunk):
        total += to_float(part, dtype=torch.float64).sum(0)
    return total / len(images)
