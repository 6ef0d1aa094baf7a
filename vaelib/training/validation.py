"""What fit validates with after every epoch: the family's loss terms over a split, and the KL of each latent
dimension that TensorBoard shows. Nats per image, without gradients, in eval mode."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from vaelib.config import Config
from vaelib.losses import kl_per_dim
from vaelib.models.base import eval_mode, model_device, posterior_stats
from vaelib.runtime import to_float


@torch.no_grad()
def evaluate(model: nn.Module, images: torch.Tensor, config: Config, beta: float | None = None,
             batch_size: int = 512, seed: int = 1234) -> dict[str, float]:
    """Mean loss terms (nats per image) over uint8 or float images, without gradients: `total` and each of the
    family's named terms (a VAE: recon, kl), under config.train's likelihood.

    `total` is the true objective at beta (a VAE: recon + beta * kl, the negative ELBO at beta). With
    train.free_bits > 0 or a train.target_rate it also returns `kl_used` (the rate as training optimises it: each
    dimension's batch-mean KL floored at the free bits, or |KL - target_rate|).
    """
    device = model_device(model)
    beta = config.train.schedule.beta if beta is None else beta
    free_bits = config.train.free_bits
    shaped = free_bits > 0 or config.train.target_rate is not None  # the rate as optimised is not the rate
    names = ("total", *model.TERMS, *((f"{model.RATE}_used",) if shaped and model.RATE else ()))
    gen = torch.Generator(device=device).manual_seed(seed)
    sums = torch.zeros(len(names), dtype=torch.float64, device=device)
    with eval_mode(model):
        for start in range(0, len(images), batch_size):
            x = to_float(images[start:start + batch_size].to(device))  # uint8 or float in [0, 1]
            loss = model.loss(x, model(x, generator=gen), beta, recon=config.train.recon, free_bits=free_bits)
            used = (loss.rate_used,) if len(names) > 1 + len(model.TERMS) else ()
            sums += torch.stack([loss.objective(beta), *loss.terms.values(), *used]).double() * len(x)
    return dict(zip(names, (sums / len(images)).tolist()))


def kl_per_dimension(model: nn.Module, images: torch.Tensor, batch_size: int = 512) -> np.ndarray:
    """Analytic KL(q(z|x) || N(0, I)) of each latent dimension, averaged over images, (D,) nats."""
    mu, logvar = posterior_stats(model, images, batch_size)
    return kl_per_dim(mu.double(), logvar.double()).mean(0).cpu().numpy()
