"""Model families: the one registry from `config.model.kind` to the class that builds the model.

A family is an nn.Module built from a Config alone, with:

- `forward(x, generator=None, eps=None)` -> its outputs (a tuple), and `loss(x, outputs, beta)` -> a
  `losses.Loss` of named terms in nats per image; `TERMS` names them in order (fit records each one per step and per
  epoch) and `RATE` the term beta weighs (None for a family without one);
- `noise(n, generator, device)`: the noise fit draws for a global batch of n images and passes as `eps` (None for a
  deterministic family);
- `encode`, `decode`, `sample(n, temperature, generator)`, `reconstruct(x)`, `latent_dim`, `config`;
- `gaussian_posterior`: whether `encode(x)` is (mu, logvar) of q(z|x) = N(mu, diag(exp(logvar))), which posterior
  statistics, the importance-weighted bound and the latent explorer need (`model.require_gaussian_posterior`).

Adding a family: a module in this folder, its name in config.MODEL_KINDS and one line in MODELS below
(docs/architecture.md walks through the autoencoder, `kind = "ae"`).
"""

from __future__ import annotations

from torch import nn

from vaelib.config import Config
from vaelib.models.autoencoder import Autoencoder
from vaelib.models.vae import VAE
from vaelib.models.vqvae import VQVAE

MODELS: dict[str, type[nn.Module]] = {"vae": VAE, "ae": Autoencoder, "vq": VQVAE}  # config.MODEL_KINDS names them


def build_model(config: Config) -> nn.Module:
    """The model of config.model.kind, built from the config alone: what fit, checkpoints and the run cache use."""
    return MODELS[config.model.kind](config)


def family(kind: str) -> type[nn.Module]:
    """The class of model family `kind`; refuses an unknown name, naming those registered."""
    if kind not in MODELS:
        raise ValueError(f"model kind {kind!r} is invalid: allowed {', '.join(MODELS)}")
    return MODELS[kind]
