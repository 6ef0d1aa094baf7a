"""vaelib: a notebook-first teaching kit for convolutional VAEs and beta-VAEs in PyTorch."""

from vaelib.config import (
           PRESETS,
           BetaSchedule,
           Config,
           DataConfig,
           ModelConfig,
           TrainConfig,
           get_preset,
           with_overrides,
)
from vaelib.io.provenance import VERSION as __version__
from vaelib.losses import elbo, kl_per_dim
from vaelib.models.vae import VAE
from vaelib.schedules import beta_at, beta_curve

__all__ = ["PRESETS", "BetaSchedule", "Config", "DataConfig", "ModelConfig", "TrainConfig", "VAE", "__version__",
           "beta_at", "beta_curve", "elbo", "get_preset", "kl_per_dim", "with_overrides"]
