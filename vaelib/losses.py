"""The negative ELBO as named terms.

Units and reduction, in one place: every term is in **nats per image**. Pixel terms
are summed over C*H*W (as in the source reports, MSE with reduction 'sum'), KL is
summed over latent dimensions, and both are then averaged over the batch. So
`total = recon + beta * kl` is the negative ELBO per image when beta = 1. With
recon='bernoulli' the recon term is an exact negative log-likelihood; with recon='mse'
the sum of squared errors equals the negative log-likelihood of a Gaussian decoder
with variance 1/2 per pixel, up to the constant 0.5 * log(pi) per pixel.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from vaelib.runtime import to_float


@dataclass
class ELBOTerms:
    total: torch.Tensor  # () recon + beta * kl_used, nats per image
    recon: torch.Tensor  # () reconstruction term, nats per image
    kl: torch.Tensor  # () KL(q(z|x) || N(0, I)), nats per image (before free bits)
    kl_per_dim: torch.Tensor  # (latent_dim,) KL of each dimension, averaged over the batch
    beta: float
    kl_used: torch.Tensor  # () the KL term as optimised: each dimension floored at free_bits, or |kl - target_rate|
    #   (= kl without either)


@dataclass
class Loss:
    """A model family's loss on one batch (`model.loss(x, outputs, beta)`), every term in nats per image.

    total: what training optimises (with free bits, the rate as floored); terms: the family's named terms, in the
    order of its TERMS (the trainer records each one per step and per epoch); rate: the name of the term beta
    weighs (the VAE's "kl"), None for a family without one; rate_used: that term as optimised (free bits), or None.
    """

    total: torch.Tensor
    terms: dict[str, torch.Tensor]
    rate: str | None = None
    rate_used: torch.Tensor | None = None

    def objective(self, beta: float) -> torch.Tensor:
        """The true objective at beta: the other terms plus beta times the rate (free bits left out): at beta = 1
        the VAE's negative ELBO."""
        rest = [v for k, v in self.terms.items() if k != self.rate]
        out = rest[0]
        for v in rest[1:]:
            out = out + v
        return out + beta * self.terms[self.rate] if self.rate is not None else out


def kl_per_dim(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Analytic KL(N(mu, sigma^2) || N(0, 1)) per element, (B, D) in nats.

    Kingma & Welling (2014), Appendix B: -0.5 * (1 + log sigma^2 - mu^2 - sigma^2).
    """
    return -0.5 * (1 + logvar - mu.pow(2) - logvar.exp())


def _squared_error(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return (torch.sigmoid(logits) - x).pow(2).flatten(1).sum(1)  # (B,)


def _gaussian_half_log_prob(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    # N(x; sigmoid(logits), 1/2 per pixel) on R^D: -(x - x_hat)^2 - 0.5 log(pi) per pixel
    return -_squared_error(logits, x) - 0.5 * x[0].numel() * math.log(math.pi)


def _bce(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)  # (B,)


@dataclass(frozen=True)
class Likelihood:
    """A decoder likelihood p(x|z) as vaelib uses it, from decoder logits (B, C, H, W) and targets x in [0, 1].

    nll: the training term, (B,) per image summed over pixels; None for a term built per model from a feature
    distance (`likelihood(kind, distance)` builds it; `needs_distance`). log_prob: log p(x|z), (B,), which the
    importance-weighted bound needs; None where the term is not the log of a normalised density (or probability), so
    that no bound on -log p(x) exists (a perceptual loss is not one): `normalised` says which.
    """
    name: str
    nll: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None
    log_prob: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None
    note: str

    @property
    def normalised(self) -> bool:
        return self.log_prob is not None

    @property
    def needs_distance(self) -> bool:
        return self.nll is None


PERCEPTUAL_NOTE = ("sum of squared errors over the pixels plus over a frozen feature network's activations (Hou et "
                   "al., 2017): a distance, not the log of a density, so no bound on -log p(x) exists")

LIKELIHOODS = {lik.name: lik for lik in (  # the one registry: elbo, the IW bound, the baselines and the config use it
    Likelihood("mse", _squared_error, _gaussian_half_log_prob,
               "sum of squared errors = -log N(x; x_hat, 1/2 per pixel) on R^D, up to 0.5 log(pi) per pixel"),
    Likelihood("bernoulli", _bce, lambda logits, x: -_bce(logits, x),
               "BCE with logits: -log Bernoulli(x; x_hat), normalised for binary x; on grey levels in [0, 1] it "
               "is the usual unnormalised form, not the continuous Bernoulli"),
    Likelihood("perceptual", None, None, PERCEPTUAL_NOTE),  # its nll needs the model's feature distance
)}


def likelihood(kind: str, distance: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None
               ) -> Likelihood:
    """The registered likelihood `kind`, ready to compute its nll; refuses an unknown name, naming those allowed. A
    kind that `needs_distance` is returned with its nll built from `distance` (images x_hat, x in [0, 1] -> (B,)),
    and refused without one."""
    if kind not in LIKELIHOODS:
        raise ValueError(f"recon kind {kind!r} is invalid: allowed {', '.join(LIKELIHOODS)}")
    lik = LIKELIHOODS[kind]
    if not lik.needs_distance:
        return lik
    if distance is None:
        raise ValueError(f"recon kind {kind!r} needs the model's feature distance: allowed through model.loss, or "
                         "reconstruction(..., distance=vaelib.models.perceptual.perceptual_distance(config))")
    return dataclasses.replace(
        lik, nll=lambda logits, x: _squared_error(logits, x) + distance(torch.sigmoid(logits), x))


def reconstruction(recon_logits: torch.Tensor, x: torch.Tensor, kind: str = "mse",
                   distance: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """Per-image reconstruction term (B,), summed over pixels: the registered likelihood's nll.

    Args:
        recon_logits: decoder outputs *before* the Sigmoid (logits), (B, C, H, W).
        x: targets in [0, 1], (B, C, H, W).
        kind: 'mse' (squared error of sigmoid(logits) vs x, summed), 'bernoulli' (BCE with logits, summed) or
            'perceptual' (the squared error plus `distance`, a feature network's: vaelib.models.perceptual).
    """
    return likelihood(kind, distance).nll(recon_logits, x)


@torch.no_grad()
def constant_image_nll(mean: torch.Tensor, x: torch.Tensor, kind: str = "mse", chunk: int = 4096,
                       distance: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None) -> float:
    """The reconstruction term (nats per image, averaged over x) of decoding every image of x to one image `mean`
    ((C, H, W) or (1, C, H, W), probabilities in [0, 1]): the model that ignores its input, whose KL is 0.
    x: uint8 or float in [0, 1], (N, C, H, W), converted and summed in chunks (it may be large), in float64: with
    kind='mse' it is the squared error of predicting `mean` (data.data_mean_baseline); the other kinds clamp the
    mean into [1e-6, 1 - 1e-6] (a pixel no training image lit costs 13.8 nats where a test image lights it)."""
    eps = 1e-12 if kind == "mse" else 1e-6  # mse reads sigmoid(logit(mean)) = mean: no clamp it could feel
    logits = torch.logit(to_float(mean, dtype=torch.float64).reshape(1, *x.shape[1:]).clamp(eps, 1 - eps))
    logits = logits.to(x.device)
    if distance is not None:  # a feature network runs in its own precision: float32
        logits = logits.float()
    dtype = torch.float32 if distance is not None else torch.float64
    total = sum(float(reconstruction(logits.expand(len(part), -1, -1, -1), to_float(part, dtype=dtype),
                                     kind, distance).sum())
                for part in x.split(chunk))
    return total / len(x)


def elbo(x: torch.Tensor, recon_logits: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor,
         beta: float = 1.0, kind: str = "mse", free_bits: float = 0.0,
         distance: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
         target_rate: float | None = None) -> ELBOTerms:
    """Negative ELBO terms, each averaged over the batch (nats per image), computed in fp32.

    free_bits > 0 floors each dimension's batch-mean KL at that many nats in the optimised
    total (Kingma et al., 2016, eq. 15); target_rate charges |KL - target_rate| instead of the KL (Burgess et al.,
    2018: with a large enough beta the rate is held at the target). The reported `kl` is always the true KL.
    """
    recon = reconstruction(recon_logits.float(), x.float(), kind, distance).mean()
    kl_dims = kl_per_dim(mu.float(), logvar.float()).mean(0)  # (D,)
    kl = kl_dims.sum()
    kl_used = torch.clamp(kl_dims, min=free_bits).sum() if free_bits > 0 else kl
    if target_rate is not None:
        kl_used = (kl - target_rate).abs()
    return ELBOTerms(total=recon + beta * kl_used, recon=recon, kl=kl, kl_per_dim=kl_dims, beta=beta, kl_used=kl_used)
