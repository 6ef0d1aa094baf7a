"""What every model family shares: its device, eval mode for a block, batches of float images, and the Gaussian
posterior's statistics for the families that have one."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from vaelib.runtime import to_float


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (CPU for a parameter-free module)."""
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put the model in eval mode for the block, then restore its previous mode."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def require_gaussian_posterior(model: nn.Module, what: str) -> None:
    """Refuse, in one line, a model whose family has no Gaussian posterior q(z|x) = N(mu, sigma^2) for `what`
    (a metric or a widget that reads encode(x) as (mu, logvar)). A family says so with gaussian_posterior =
    False; a model that does not say is taken at its word if it has an encode method."""
    if not getattr(model, "gaussian_posterior", callable(getattr(model, "encode", None))):
        kind = getattr(getattr(model, "config", None), "model", None)
        raise ValueError(f"{what} needs a Gaussian posterior (encode(x) -> mu, logvar): model family "
                         f"{getattr(kind, 'kind', type(model).__name__)!r} has none; allowed a model of family 'vae'")


def batches(images: torch.Tensor, batch_size: int, device: torch.device) -> Iterator[torch.Tensor]:
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size!r} is invalid: allowed an integer >= 1")
    if len(images) == 0:
        raise ValueError("images are empty: allowed at least one image")
    for start in range(0, len(images), batch_size):
        yield to_float(images[start:start + batch_size], device)  # (B, C, H, W)


@torch.no_grad()
def posterior_stats(model: nn.Module, images: torch.Tensor, batch_size: int = 512
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """(mu, logvar) of q(z|x) for every image, each (N, D), on the model's device."""
    require_gaussian_posterior(model, "posterior statistics (KL per dimension, active units, codes)")
    device = model_device(model)
    with eval_mode(model):
        pairs = [model.encode(x) for x in batches(images, batch_size, device)]
    return torch.cat([p[0] for p in pairs]), torch.cat([p[1] for p in pairs])
