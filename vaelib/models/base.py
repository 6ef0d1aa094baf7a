"""What every model family shares: the Family base class (built from a Config alone, its parameter count and its
input check), its device, eval mode for a block, batches of float images, and the Gaussian posterior's statistics
for the families that have one."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from vaelib.config import Config
from vaelib.runtime import mean_image, to_float


class Family(nn.Module):
    """The base of every model family (models.registry): built from a Config alone. A family sets TERMS (the named
    terms of its loss, in order), RATE (the term beta weighs, or None) and gaussian_posterior (whether encode(x)
    is (mu, logvar) of q(z|x))."""

    gaussian_posterior = False
    TERMS: tuple[str, ...] = ()
    RATE: str | None = None

    def __init__(self, config: Config) -> None:
        super().__init__()
        self.config = config
        self.latent_dim = config.model.latent_dim
        self._used_not_owned: dict[str, nn.Module | None] = {"perceptual": None}  # a dict: nn.Module registers none

    @property
    def perceptual(self) -> nn.Module | None:
        """The feature distance of a perceptual reconstruction term (vaelib.models.perceptual), else None: a frozen
        network the family uses but does not own, so not among its parameters, not in its state_dict or checkpoint
        (rebuilt from the config and the shipped weights)."""
        return self._used_not_owned["perceptual"]

    def use_perceptual(self, distance: nn.Module | None) -> None:
        """Set `perceptual` (models.perceptual.perceptual_distance(config)), kept outside the family's modules."""
        self._used_not_owned["perceptual"] = distance

    def check_input(self, x: torch.Tensor) -> None:
        """Refuse, in one line, a batch that is not (B, C, H, W) of the config's input shape."""
        check_images(x, self.config, "input", rows="B", empty_ok=True)

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.parameters())


@torch.no_grad()
def init_output_bias(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Set the last bias of the model's decoder to each channel's logit of the mean of `images` (N, C, H, W), uint8
    or float in [0, 1] (clamped to [1e-3, 1 - 1e-3]): the untrained decoder's output starts at the data's mean colour
    instead of mid-grey (model.output_bias = "data_mean"; fit calls it before the first step). Returns the means.

    Why: with the squared error through the sigmoid, a decoder that starts at 0.5 on mostly black images pushes every
    logit down at once, and can overshoot far past black into the sigmoid's flat tail, where the error's gradient,
    (p - x) p (1 - p), is nil: on shapes two VQ-VAE seeds of three ended with every output black (seed 0: median
    logit -137, none above -12), and started here all three learn (docs/findings.md)."""
    decoder = getattr(model, "decoder", None)
    last = decoder.deconvs[-1] if decoder is not None and hasattr(decoder, "deconvs") else None
    if last is None or getattr(last, "bias", None) is None:
        raise ValueError(f"model.output_bias='data_mean' is invalid for {type(model).__name__}: it has no decoder "
                         "whose last layer has a bias; allowed 'zero'")
    if images.dim() != 4 or images.shape[1] != last.bias.numel() or not len(images):
        raise ValueError(f"images of shape {tuple(images.shape)} are invalid: allowed (N, {last.bias.numel()}, H, W) "
                         "with N >= 1")
    mean = mean_image(images).mean((1, 2))  # (C,), float64
    last.bias.copy_(torch.logit(mean.clamp(1e-3, 1 - 1e-3)).to(last.bias))
    return mean


def check_images(images: torch.Tensor, config: Config, subject: str, rows: str = "N", empty_ok: bool = False,
                 values: bool = False) -> None:
    """Refuse, in one line, images that are not (rows, C, H, W) of the config's input shape (or none at all, unless
    empty_ok): the check of a model's input batch and of the splits fit is given. values: their dtype and values
    too (check_pixels: one pass over float images), as fit checks its splits once; a model's batch is not."""
    verb = "are" if subject.endswith("s") else "is"
    if images.dim() != 4 or tuple(images.shape[1:]) != config.input_shape:
        raise ValueError(f"{subject} of shape {tuple(images.shape)} {verb} invalid: allowed ({rows}, "
                         f"{', '.join(map(str, config.input_shape))}) for preset {config.name!r}")
    if not empty_ok and len(images) == 0:
        raise ValueError(f"{subject} {verb} empty: allowed at least one image")
    if values:
        check_pixels(images, subject)


def check_pixels(images: torch.Tensor, subject: str) -> None:
    """Refuse, in one line, images that are neither uint8 nor floating point in [0, 1] with every value finite:
    int64 or bool images, 0..255 floats (never divided by 255), NaN or inf. uint8 is in range by its type; float
    images cost one reduction (torch.aminmax: no copy)."""
    verb = "are" if subject.endswith("s") else "is"
    allowed = "allowed uint8 (0..255) or floating point in [0, 1]"
    if images.dtype != torch.uint8 and not images.is_floating_point():  # int64, bool, complex
        raise ValueError(f"{subject} of dtype {images.dtype} {verb} invalid: {allowed} "
                         "(x.to(torch.uint8) converts 0..255 integers, x.float() 0/1 ones)")
    if images.is_floating_point() and images.numel():
        lo, hi = (float(v) for v in torch.aminmax(images))
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise ValueError(f"{subject} holding NaN or inf {verb} invalid: {allowed}, every value finite")
        if lo < 0 or hi > 1:
            raise ValueError(f"{subject} with values in [{lo:g}, {hi:g}] {verb} invalid: {allowed} "
                             "(x / 255 converts 0..255 floats)")


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
