"""The convolutional VAE: Encoder, Decoder and VAE, built from a Config."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from vaelib.config import Config
from vaelib.losses import Loss, elbo
from vaelib.models.base import Family, eval_mode, model_device
from vaelib.models.perceptual import perceptual_distance


class ResBlock(nn.Module):
    """x + f(x), f = two 3x3 convolutions (BatchNorm if asked, LeakyReLU between): a deeper stage that still trains,
    since the skip carries the signal and its gradient past f (He et al., 2016)."""

    def __init__(self, channels: int, batch_norm: bool, slope: float) -> None:
        super().__init__()
        norm = (lambda: nn.BatchNorm2d(channels)) if batch_norm else nn.Identity
        self.f = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1), norm(), nn.LeakyReLU(slope),
                               nn.Conv2d(channels, channels, 3, padding=1), norm())
        self.act = nn.LeakyReLU(slope)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(x + self.f(x))


def _block(conv: nn.Module, channels: int, batch_norm: bool, slope: float, res_blocks: int = 0) -> nn.Sequential:
    layers = [conv]
    if batch_norm:
        layers.append(nn.BatchNorm2d(channels))
    layers.append(nn.LeakyReLU(slope))
    layers += [ResBlock(channels, batch_norm, slope) for _ in range(res_blocks)]
    return nn.Sequential(*layers)


def conv_stack(config: Config) -> tuple[nn.Sequential, tuple[int, ...]]:
    """The encoder's stride-2 conv blocks of config.model and the shape of their output features (C', H', W'):
    the body every family's encoder shares."""
    m, c = config.model, config.input_shape[0]
    k = m.kernel_size
    blocks = []
    for h in m.hidden_dims:  # each stride-2 conv halves H and W
        blocks.append(_block(nn.Conv2d(c, h, k, stride=2, padding=(k - 1) // 2), h, m.batch_norm, m.leaky_slope,
                             m.res_blocks))
        c = h
    convs = nn.Sequential(*blocks)
    with torch.no_grad():  # the real feature shape, whatever the padding arithmetic
        shape = tuple(convs(torch.zeros(1, *config.input_shape)).shape[1:])
    return convs, shape


class Encoder(nn.Module):
    """x (B, C, H, W) in [0, 1] -> (mu, logvar), each (B, latent_dim)."""

    def __init__(self, config: Config) -> None:
        super().__init__()
        m = config.model
        self.convs, self.feature_shape = conv_stack(config)
        flat = math.prod(self.feature_shape)
        self.fc_mu = nn.Linear(flat, m.latent_dim)
        self.fc_logvar = nn.Linear(flat, m.latent_dim)
        self.logvar_max = m.logvar_max

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.convs(x).flatten(1)  # (B, C' * H' * W')
        logvar = self.fc_logvar(h)
        return self.fc_mu(h), logvar if self.logvar_max is None else bound_logvar(logvar, self.logvar_max)


def bound_logvar(logvar: torch.Tensor, limit: float) -> torch.Tensor:
    """The log-variance unchanged up to limit - 1, then bent by a tanh knee (slope 1 where it starts) towards
    `limit`, which it never passes: exp(logvar) cannot overflow, and a run whose log-variance stays below
    limit - 1 computes exactly what it would unbounded.

    Why: at beta = 0 nothing charges the code's variance, and on shapes at the preset's lr the log-variance
    ran away (past 88 within 17 steps, where exp overflows float32 and the KL with it), so a beta = 0 warmup failed
    on the implementation's overflow before its recipe could be tested.
    """
    knee = limit - 1.0
    return torch.where(logvar > knee, knee + torch.tanh(logvar - knee), logvar)


class Decoder(nn.Module):
    """z (B, latent_dim) -> image (B, C, H, W) of probabilities in [0, 1] (after the Sigmoid)."""

    def __init__(self, config: Config, feature_shape: tuple[int, ...]) -> None:
        super().__init__()
        m, (c_out, size, _) = config.model, config.input_shape
        k = m.kernel_size
        self.feature_shape = feature_shape
        self.output_size = size
        self.fc = nn.Linear(m.latent_dim, math.prod(feature_shape))
        dims = list(reversed(m.hidden_dims)) + [c_out]
        blocks = []
        for i, (c_in, c) in enumerate(zip(dims[:-1], dims[1:])):  # mirror: each doubles H and W
            conv = nn.ConvTranspose2d(c_in, c, k, stride=2, padding=(k - 1) // 2, output_padding=k % 2)
            last = i == len(dims) - 2
            blocks.append(conv if last else _block(conv, c, m.batch_norm, m.leaky_slope, m.res_blocks))
        self.deconvs = nn.Sequential(*blocks)

    def forward_logits(self, z: torch.Tensor) -> torch.Tensor:
        """Pre-Sigmoid outputs (logits), resized to the input size."""
        return self.from_features(self.fc(z).view(-1, *self.feature_shape))  # (B, C', H', W') first

    def from_features(self, h: torch.Tensor) -> torch.Tensor:
        """Logits from a feature map of the encoder's shape (B, C', H', W'): the transposed convolutions alone,
        for a family whose code is itself a feature map (the VQ-VAE)."""
        logits = self.deconvs(h)
        if logits.shape[-1] != self.output_size or logits.shape[-2] != self.output_size:
            # Safety step: odd sizes (e.g. 28 -> 14 -> 7 -> 4 -> 8 ...) do not mirror exactly.
            logits = F.interpolate(logits, size=(self.output_size, self.output_size), mode="bilinear",
                                   align_corners=False)
        return logits

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.forward_logits(z))


def prior_draw(model: nn.Module, n: int, temperature: float = 1.0, generator: torch.Generator | None = None
               ) -> torch.Tensor:
    """n codes z ~ N(0, temperature^2 I) (n, model.latent_dim) on the model's device; refuses n < 1."""
    if n < 1:
        raise ValueError(f"n={n!r} is invalid: allowed an integer >= 1")
    return torch.randn(n, model.latent_dim, generator=generator, device=model_device(model)) * temperature


class VAE(Family):
    """Kingma & Welling (2014) VAE with a diagonal Gaussian posterior and a N(0, I) prior."""

    gaussian_posterior = True  # encode(x) -> (mu, logvar) of q(z|x) = N(mu, diag(exp(logvar)))
    TERMS = ("recon", "kl")  # the named terms of loss(), which fit records per step and per epoch
    RATE = "kl"  # the term beta weighs

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        self.encoder = Encoder(config)
        self.decoder = Decoder(config, self.encoder.feature_shape)
        self.use_perceptual(perceptual_distance(config))

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, C, H, W) in [0, 1] -> (mu, logvar), each (B, latent_dim)."""
        self.check_input(x)
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """z (B, latent_dim) -> probabilities (B, C, H, W) in [0, 1]."""
        return self.decoder(z)

    @staticmethod
    def reparameterize(mu: torch.Tensor, logvar: torch.Tensor, generator: torch.Generator | None = None,
                       eps: torch.Tensor | None = None) -> torch.Tensor:
        """z = mu + sigma * eps, eps ~ N(0, I) (Kingma & Welling, 2014, eq. 10); eps drawn unless given."""
        if eps is None:
            eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        return mu + torch.exp(0.5 * logvar) * eps

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None, eps: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns (recon_logits, mu, logvar); apply sigmoid to the logits for probabilities."""
        mu, logvar = self.encode(x)
        z = self.reparameterize(mu, logvar, generator, eps)
        return self.decoder.forward_logits(z), mu, logvar

    def noise(self, n: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
        """The reparameterisation noise of n images, eps ~ N(0, I) (n, latent_dim): fit draws it for the whole
        global batch from its own generator, so every rank and a resumed run draw the same numbers."""
        return torch.randn(n, self.latent_dim, generator=generator, device=device)

    def loss(self, x: torch.Tensor, outputs: tuple[torch.Tensor, ...], beta: float, recon: str | None = None,
             free_bits: float | None = None) -> Loss:
        """The negative ELBO's terms of forward's outputs (losses.elbo): recon + beta * kl, nats per image.
        recon (the likelihood) and free_bits default to the model's config."""
        logits, mu, logvar = outputs
        tc = self.config.train
        t = elbo(x, logits, mu, logvar, beta=beta, kind=tc.recon if recon is None else recon,
                 free_bits=tc.free_bits if free_bits is None else free_bits, distance=self.perceptual,
                 target_rate=tc.target_rate)
        return Loss(total=t.total, terms={"recon": t.recon, "kl": t.kl}, rate="kl", rate_used=t.kl_used)

    @torch.no_grad()
    def sample(self, n: int, temperature: float = 1.0, generator: torch.Generator | None = None
               ) -> torch.Tensor:
        """n images decoded from z ~ N(0, temperature^2 I)."""
        return self.decode(prior_draw(self, n, temperature, generator))

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Decode the posterior mean of x (no sampling noise)."""
        mu, _ = self.encode(x)
        return self.decode(mu)

    def layer_shapes(self) -> list[tuple[str, tuple[int, ...]]]:
        """The output shape of every layer for one input image, from a real forward pass."""
        shapes: list[tuple[str, tuple[int, ...]]] = [("input", (1, *self.config.input_shape))]
        hooks = []
        named = [(f"encoder.{i}", b) for i, b in enumerate(self.encoder.convs)]
        named += [("encoder.fc_mu", self.encoder.fc_mu), ("decoder.fc", self.decoder.fc)]
        named += [(f"decoder.{i}", b) for i, b in enumerate(self.decoder.deconvs)]
        for name, mod in named:
            hooks.append(mod.register_forward_hook(
                lambda _m, _i, out, name=name: shapes.append((name, tuple(out.shape)))))
        try:
            with torch.no_grad(), eval_mode(self):
                device = next(self.parameters()).device
                out = self.reconstruct(torch.zeros(1, *self.config.input_shape, device=device))
        finally:
            for h in hooks:
                h.remove()
        shapes.append(("output", tuple(out.shape)))
        return shapes


def refuse_kl_settings(config: Config, has: str) -> None:
    """Refuse, in one line, the settings that act on a KL term (free bits, a target rate) for a family with none
    (`has`: what the family is, e.g. "an autoencoder"), before anything is built."""
    if config.train.free_bits > 0:
        raise ValueError(f"train.free_bits={config.train.free_bits:g} is invalid for model.kind="
                         f"{config.model.kind!r}: {has} has no KL term to floor; allowed 0")
    if config.train.target_rate is not None:
        raise ValueError(f"train.target_rate={config.train.target_rate:g} is invalid for model.kind="
                         f"{config.model.kind!r}: {has} has no KL term to hold; allowed None")
