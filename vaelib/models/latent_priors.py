"""Priors learned after the model: what a trained VAE's or VQ-VAE's samples are drawn from instead of the prior the
model was trained against.

- `CodePrior`: a small PixelCNN (van den Oord et al., 2016) over a VQ-VAE's grid of codes, trained by maximum
  likelihood on the codes of the training images and sampled position by position in raster order. A VQ-VAE
  leaves its prior untrained (its `sample` draws codes uniformly); this is the prior the VQ-VAE paper samples from.
- `LatentFlow`: a flow-matching model (Lipman et al., 2023; rectified flow, Liu et al., 2023) over a Gaussian
  VAE's posterior means: a small network learns the velocity that carries N(0, I) to the distribution of the
  training codes along straight lines, and is integrated with Euler steps. It stands for the latent diffusion
  models of Rombach et al. (2022): a generative model trained in the autoencoder's latent space, so that samples
  come from where the training codes are, not from wherever N(0, I) puts mass.

Both train deterministically from a seed on the CPU (`fit_code_prior`, `fit_latent_flow`, with their loss per
epoch) and are small enough for a laptop: they see codes, not pixels.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from vaelib.models.base import eval_mode, model_device, posterior_stats
from vaelib.runtime import to_float


def _check_fit_args(epochs: int, batch_size: int, lr: float) -> None:
    for name, value in (("epochs", epochs), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}={value!r} is invalid: allowed an integer >= 1")
    if not (isinstance(lr, (int, float)) and 0 < lr < 1):
        raise ValueError(f"lr={lr!r} is invalid: allowed a number in (0, 1)")


def _batches(n: int, batch_size: int, gen: torch.Generator):
    perm = torch.randperm(n, generator=gen)
    return [perm[i:i + batch_size] for i in range(0, n, batch_size)]


class MaskedConv2d(nn.Conv2d):
    """A convolution that sees only the positions before the centre in raster order (mask "A": not the centre
    itself, for the first layer; "B": the centre too, for the later ones), so output (i, j) depends on inputs
    before it alone."""

    def __init__(self, mask: str, channels_in: int, channels_out: int, kernel: int) -> None:
        super().__init__(channels_in, channels_out, kernel, padding=kernel // 2)
        if mask not in ("A", "B"):
            raise ValueError(f"mask={mask!r} is invalid: allowed 'A' or 'B'")
        m = torch.ones_like(self.weight)
        c = kernel // 2
        m[:, :, c, c + (mask == "B"):] = 0  # the centre row: from the centre (A) or after it (B) on
        m[:, :, c + 1:] = 0  # every row below
        self.register_buffer("mask", m)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.mask, self.bias, padding=self.padding)


class CodePrior(nn.Module):
    """p(codes) = prod over positions of p(code_ij | codes before ij): codes (B, H, W) in [0, K) -> logits
    (B, K, H, W)."""

    def __init__(self, codebook_size: int, code_shape: tuple[int, int], channels: int = 64, layers: int = 4) -> None:
        super().__init__()
        self.codebook_size, self.code_shape = codebook_size, tuple(code_shape)
        self.embed = nn.Embedding(codebook_size, channels)
        self.first = MaskedConv2d("A", channels, channels, 5)
        self.blocks = nn.ModuleList(MaskedConv2d("B", channels, channels, 3) for _ in range(layers - 1))
        self.out = nn.Conv2d(channels, codebook_size, 1)

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.first(self.embed(codes).permute(0, 3, 1, 2)))
        for block in self.blocks:
            h = h + F.relu(block(h))  # residual: a deeper stack still trains in a few epochs
        return self.out(h)

    def nll(self, codes: torch.Tensor) -> torch.Tensor:
        """Negative log-likelihood of each code grid, nats per image (B,)."""
        return F.cross_entropy(self(codes), codes, reduction="none").flatten(1).sum(1)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, temperature: float = 1.0) -> torch.Tensor:
        """n code grids (n, H, W), drawn position by position in raster order (H * W passes)."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n={n!r} is invalid: allowed an integer >= 1")
        if not temperature > 0:
            raise ValueError(f"temperature={temperature!r} is invalid: allowed a number > 0")
        device = model_device(self)
        codes = torch.zeros(n, *self.code_shape, dtype=torch.long, device=device)
        with eval_mode(self):
            for i in range(self.code_shape[0]):
                for j in range(self.code_shape[1]):
                    p = F.softmax(self(codes)[:, :, i, j] / temperature, dim=1)
                    codes[:, i, j] = torch.multinomial(p.cpu(), 1, generator=generator).flatten().to(device)
        return codes


@torch.no_grad()
def encode_codes(model: nn.Module, images: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """The VQ-VAE's code grid of every image, (N, H', W') int64, on the CPU."""
    device = model_device(model)
    with eval_mode(model):  # a BatchNorm reads its running statistics and keeps them
        return torch.cat([model.encode(to_float(images[i:i + batch_size], device)).cpu()
                          for i in range(0, len(images), batch_size)])


def fit_code_prior(model: nn.Module, images: torch.Tensor, *, epochs: int = 10, batch_size: int = 64,
                   lr: float = 2e-3, seed: int = 0, channels: int = 64, layers: int = 4, quiet: bool = True
                   ) -> tuple[CodePrior, list[float]]:
    """A CodePrior trained on the codes a trained VQ-VAE gives `images`; returns it and its mean training
    negative log-likelihood per epoch (nats per image). Same seed, model and images: the same prior."""
    if not hasattr(model, "codebook_size"):
        raise ValueError(f"model family {type(model).__name__!r} is invalid for a code prior: allowed a VQ-VAE "
                         "(model.kind='vq')")
    _check_fit_args(epochs, batch_size, lr)
    codes = encode_codes(model, images)
    torch.manual_seed(seed)
    prior = CodePrior(model.codebook_size, tuple(codes.shape[1:]), channels, layers)
    return prior, _train(prior, lambda b: prior.nll(codes[b]).mean(), len(codes), epochs, batch_size, lr, seed,
                         quiet, "code prior")


class LatentFlow(nn.Module):
    """A velocity field v(z, t) on R^D (an MLP of z and t), over codes standardised by the training codes' mean and
    standard deviation: integrated from t = 0 (z ~ N(0, I)) to t = 1 it carries the prior to the codes."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor, width: int = 256, depth: int = 3) -> None:
        super().__init__()
        d = mean.numel()
        self.register_buffer("mean", mean.float().clone())
        self.register_buffer("std", std.float().clamp_min(1e-6).clone())
        layers: list[nn.Module] = []
        for k in range(depth):
            layers += [nn.Linear(d + 1 if k == 0 else width, width), nn.SiLU()]
        self.net = nn.Sequential(*layers, nn.Linear(width, d))

    @property
    def dim(self) -> int:
        return self.mean.numel()

    def forward(self, z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([z, t[:, None]], 1))

    def loss(self, codes: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Conditional flow matching: the mean squared error (summed over dimensions) between v(z_t, t) and
        x1 - x0 on the straight line z_t = (1 - t) x0 + t x1, x0 ~ N(0, I), x1 the standardised codes."""
        x1 = (codes - self.mean) / self.std
        x0 = torch.randn(x1.shape, generator=generator).to(x1)
        t = torch.rand(len(x1), generator=generator).to(x1)
        zt = (1 - t[:, None]) * x0 + t[:, None] * x1
        return (self(zt, t) - (x1 - x0)).pow(2).sum(1).mean()

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, steps: int = 50) -> torch.Tensor:
        """n codes (n, D) in the VAE's latent space: Euler steps from N(0, I) at t = 0 to t = 1, un-standardised."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n={n!r} is invalid: allowed an integer >= 1")
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"steps={steps!r} is invalid: allowed an integer >= 1")
        z = torch.randn(n, self.dim, generator=generator).to(self.mean)
        for k in range(steps):
            t = torch.full((n,), k / steps, device=z.device)
            z = z + self(z, t) / steps
        return z * self.std + self.mean


def fit_latent_flow(model: nn.Module, images: torch.Tensor, *, epochs: int = 50, batch_size: int = 256,
                    lr: float = 1e-3, seed: int = 0, width: int = 256, depth: int = 3, quiet: bool = True
                    ) -> tuple[LatentFlow, list[float]]:
    """A LatentFlow trained on the posterior means a trained Gaussian VAE gives `images`; returns it and its mean
    training loss per epoch. Same seed, model and images: the same flow."""
    if not getattr(model, "gaussian_posterior", False):
        raise ValueError(f"model family {type(model).__name__!r} is invalid for a latent flow: allowed a Gaussian "
                         "VAE (model.kind='vae')")
    _check_fit_args(epochs, batch_size, lr)
    mu = posterior_stats(model, images)[0].float().cpu()  # (N, D)
    torch.manual_seed(seed)
    flow = LatentFlow(mu.mean(0), mu.std(0), width, depth)
    gen = torch.Generator().manual_seed(seed + 1)  # the flow's noise and times, apart from the batch order's
    return flow, _train(flow, lambda b: flow.loss(mu[b], gen), len(mu), epochs, batch_size, lr, seed, quiet,
                        "latent flow")


def _train(module: nn.Module, batch_loss: Any, n: int, epochs: int, batch_size: int, lr: float, seed: int,
           quiet: bool, what: str) -> list[float]:
    """Adam on batch_loss(indices) over `epochs` seeded passes; the mean loss of each epoch."""
    opt = torch.optim.Adam(module.parameters(), lr=lr)
    order = torch.Generator().manual_seed(seed)
    curve = []
    module.train()
    for _ in tqdm(range(epochs), desc=what, disable=quiet):
        total = 0.0
        batches = _batches(n, batch_size, order)
        for b in batches:
            loss = batch_loss(b)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item() * len(b)
        curve.append(total / n)
    module.eval()
    return curve
