"""Memory a config needs, estimated from its shapes before anything is allocated, against what is free.

An absurd `--latent-dim` or `--image-size` would otherwise end in an out-of-memory traceback (or a machine
that swaps for minutes); `check_memory` refuses it first, with the estimate in GiB.
"""

from __future__ import annotations

from pathlib import Path

import torch

from vaelib.config import Config

FLOAT = 4  # bytes per fp32 value
OPTIMIZER_COPIES = 4  # weights, gradients and Adam's two moments
ACTIVATION_COPIES = 3  # per feature map kept for backward: conv output, (BatchNorm,) LeakyReLU, its gradient


def _conv_sizes(config: Config) -> list[int]:
    """Side of each encoder feature map: every stride-2 conv maps s to (s + 2p - k) // 2 + 1."""
    k, sizes, s = config.model.kernel_size, [], config.data.image_size
    for _ in config.model.hidden_dims:
        s = (s + 2 * ((k - 1) // 2) - k) // 2 + 1
        sizes.append(s)
    return sizes


def parameter_count(config: Config) -> int:
    """The number of trainable parameters of VAE(config), computed without building it."""
    m, c, k = config.model, config.data.channels, config.model.kernel_size
    norm = 2 if m.batch_norm else 0  # BatchNorm's weight and bias per channel
    dims = (c, *m.hidden_dims)
    weights = 2 * sum(a * b * k * k for a, b in zip(dims[:-1], dims[1:]))  # encoder convs; the decoder mirrors
    per_channel = (1 + norm) * (sum(m.hidden_dims) + sum(m.hidden_dims[:-1])) + c  # biases (+ BatchNorm)
    flat = m.hidden_dims[-1] * _conv_sizes(config)[-1] ** 2
    linear = 2 * (flat * m.latent_dim + m.latent_dim) + (m.latent_dim * flat + flat)  # fc_mu, fc_logvar, fc
    return weights + per_channel + linear


def estimate_bytes(config: Config) -> int:
    """Parameters with their gradients and Adam state, plus one training batch's activations (fp32)."""
    maps = sum(h * s * s for h, s in zip(config.model.hidden_dims, _conv_sizes(config)))  # per image, encoder
    image = config.data.channels * config.data.image_size ** 2
    per_image = ACTIVATION_COPIES * (2 * maps + 2 * image) + 4 * config.model.latent_dim  # + decoder, input/output
    return FLOAT * (OPTIMIZER_COPIES * parameter_count(config) + config.train.batch_size * per_image)


def available_bytes(device: torch.device) -> int | None:
    """Free memory where training will run: the GPU's, or the system's MemAvailable; None if unknown."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    if device.type != "cpu":
        return None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024  # kB
    except OSError:
        pass
    return None


def check_memory(config: Config, device: torch.device, available: int | None = None) -> None:
    """Refuse a config whose estimated memory exceeds what is available on `device` (a ValueError)."""
    available = available_bytes(device) if available is None else available
    need = estimate_bytes(config)
    if available is not None and need > available:
        m, d = config.model, config.data
        raise ValueError(f"the model and one batch need about {need / 2**30:.3g} GiB but {available / 2**30:.3g} "
                         f"GiB is available on {device} (model.latent_dim={m.latent_dim}, data.image_size="
                         f"{d.image_size}, train.batch_size={config.train.batch_size}, model.hidden_dims="
                         f"{m.hidden_dims}): allowed a smaller --latent-dim, --image-size or --batch-size")
