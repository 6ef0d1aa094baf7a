"""A plain (deterministic) convolutional autoencoder, `kind = "ae"`: the VAE's encoder body and decoder with one
code per image and no KL term.

Trained on the reconstruction term alone, it is the beta = 0 limit of the VAE, and the teaching contrast: its codes
fill whatever region of the latent space suits the decoder, so a code drawn from N(0, I) (`sample`) usually lands
where no training image was encoded, and decodes to something no image looks like.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from vaelib.config import Config
from vaelib.losses import Loss, reconstruction
from vaelib.models.base import Family
from vaelib.models.perceptual import perceptual_distance
from vaelib.models.vae import Decoder, conv_stack, prior_draw, refuse_kl_settings


class Autoencoder(Family):
    """x (B, C, H, W) in [0, 1] -> z (B, latent_dim) -> reconstruction logits; loss = the likelihood's nll."""

    gaussian_posterior = False  # encode(x) -> z, one point: no (mu, logvar)
    TERMS = ("recon",)
    RATE = None  # no KL term: beta has nothing to weigh

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        refuse_kl_settings(config, "an autoencoder")
        self.convs, feature_shape = conv_stack(config)
        self.fc = nn.Linear(math.prod(feature_shape), self.latent_dim)
        self.decoder = Decoder(config, feature_shape)
        self.use_perceptual(perceptual_distance(config))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, C, H, W) in [0, 1] -> the code z (B, latent_dim)."""
        self.check_input(x)
        return self.fc(self.convs(x).flatten(1))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """z (B, latent_dim) -> probabilities (B, C, H, W) in [0, 1]."""
        return self.decoder(z)

    def noise(self, n: int, generator: torch.Generator, device: torch.device) -> None:
        return None  # deterministic: fit draws nothing

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None, eps: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns (recon_logits, z); generator and eps are accepted, like the VAE's, and unused."""
        z = self.encode(x)
        return self.decoder.forward_logits(z), z

    def loss(self, x: torch.Tensor, outputs: tuple[torch.Tensor, ...], beta: float, recon: str | None = None,
             free_bits: float | None = None) -> Loss:
        """The reconstruction term alone (nats per image under the config's likelihood); beta has no term to
        weigh and free bits nothing to floor."""
        logits, _ = outputs
        nll = reconstruction(logits.float(), x.float(), self.config.train.recon if recon is None else recon,
                             self.perceptual).mean()
        return Loss(total=nll, terms={"recon": nll})

    @torch.no_grad()
    def sample(self, n: int, temperature: float = 1.0, generator: torch.Generator | None = None) -> torch.Tensor:
        """n images decoded from z ~ N(0, temperature^2 I): a prior the autoencoder was never trained to match."""
        return self.decode(prior_draw(self, n, temperature, generator))

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))
