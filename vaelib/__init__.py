"""vaelib: a notebook-first teaching kit for convolutional VAEs and beta-VAEs in PyTorch."""

__version__ = "0.1.0"

from .config import PRESETS, BetaSchedule, Config, DataConfig, ModelConfig, TrainConfig, get_preset, with_overrides  # noqa: E402
from .losses import elbo, kl_per_dim  # noqa: E402
from .model import VAE  # noqa: E402
from .schedules import beta_at, beta_curve  # noqa: E402

__all__ = ["PRESETS", "BetaSchedule", "Config", "DataConfig", "ModelConfig", "TrainConfig", "VAE",
           "beta_at", "beta_curve", "elbo", "get_preset", "kl_per_dim", "with_overrides"]
