"""Evaluation metrics for a trained VAE: ELBO, reconstruction error, KL use, importance-weighted NLL, MIG.

Every model metric runs batched under `torch.no_grad()` on the model's device, in eval mode, and
accepts images as uint8 (N, C, H, W) or float in [0, 1]. Units: nats per image unless a name says
otherwise (`psnr` in dB, `bits_per_dim`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import mutual_info_score
from torch import nn

from vaelib.config import Config
from vaelib.losses import LIKELIHOODS
from vaelib.models.base import batches, eval_mode, model_device, posterior_stats, require_gaussian_posterior
from vaelib.runtime import to_float
from vaelib.training.validation import evaluate


def test_elbo(model: nn.Module, images: torch.Tensor, config: Config, batch_size: int = 512,
              seed: int = 1234) -> dict[str, float]:
    """Negative ELBO at beta = 1 (total, recon, kl; nats per image), one posterior sample per image."""
    return evaluate(model, images, config, beta=1.0, batch_size=batch_size, seed=seed)


test_elbo.__test__ = False  # not a pytest test, despite the name


@torch.no_grad()
def reconstruction_errors(model: nn.Module, images: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """Per-image sum of squared errors of `model.reconstruct` (posterior-mean decoding), (N,) on CPU."""
    device = model_device(model)
    out = []
    with eval_mode(model):
        for x in batches(images, batch_size, device):
            out.append((model.reconstruct(x) - x).pow(2).flatten(1).sum(1).cpu())  # (B,)
    return torch.cat(out)


def reconstruction_mse(model: nn.Module, images: torch.Tensor, batch_size: int = 512) -> float:
    """Squared error summed over pixels, averaged over images (the unit of the data-mean baseline)."""
    return reconstruction_errors(model, images, batch_size).mean().item()


def psnr_from_mse(mse: float | torch.Tensor, peak: float = 1.0) -> float | torch.Tensor:
    """PSNR in dB = 10 log10(peak^2 / mse); inf where mse is 0."""
    if isinstance(mse, torch.Tensor):
        return 10 * torch.log10(peak**2 / mse)  # division by 0 gives inf
    if mse < 0:
        raise ValueError(f"mse={mse!r} is invalid: allowed a value >= 0")
    return math.inf if mse == 0 else 10 * math.log10(peak**2 / mse)


def psnr(model: nn.Module, images: torch.Tensor, batch_size: int = 512) -> float:
    """PSNR in dB (peak 1.0), computed per image from its per-pixel MSE, then averaged over images."""
    pixels = math.prod(images.shape[1:])
    per_image = psnr_from_mse(reconstruction_errors(model, images, batch_size).double() / pixels)
    return per_image.mean().item()


def posterior_mean_variance(model: nn.Module, images: torch.Tensor, batch_size: int = 512) -> np.ndarray:
    """Var_x(E_q(z|x)[z_u]) for each latent unit u, (D,): the activity statistic of Burda et al. (2016)."""
    mu, _ = posterior_stats(model, images, batch_size)
    return mu.double().var(0, unbiased=False).cpu().numpy()


def active_units(model: nn.Module, images: torch.Tensor, threshold: float = 0.01, batch_size: int = 512) -> int:
    """Units with Cov_x(E_q(z|x)[z_u]) > threshold (Burda et al., 2016, Section 5.2: A_u, threshold 0.01)."""
    return int((posterior_mean_variance(model, images, batch_size) > threshold).sum())


def _iw_log_px(model: nn.Module, x: torch.Tensor, k: int, likelihood: str, gen: torch.Generator,
               decode_batch: int) -> torch.Tensor:
    """log (1/k) sum_i w_i for each image of a batch x (B, C, H, W) -> (B,)."""
    mu, logvar = model.encode(x)  # (B, D)
    std = torch.exp(0.5 * logvar)
    chunk = max(1, decode_batch // len(x))  # samples per image decoded at once
    log_w = []
    for start in range(0, k, chunk):
        c = min(chunk, k - start)
        eps = torch.randn((len(x), c, mu.shape[1]), generator=gen, device=x.device)  # (B, c, D)
        z = mu[:, None] + std[:, None] * eps  # (B, c, D)
        logits = model.decoder.forward_logits(z.flatten(0, 1)).float()  # (B*c, C, H, W)
        x_rep = x[:, None].expand(-1, c, *x.shape[1:]).flatten(0, 1)  # (B*c, C, H, W)
        log_px = LIKELIHOODS[likelihood].log_prob(logits, x_rep).view(len(x), c)  # (B, c): log p(x|z)
        # log p(z) - log q(z|x); the 0.5 log(2 pi) per dimension cancels between the two.
        log_pz_minus_qz = (-0.5 * z.pow(2) + 0.5 * eps.pow(2) + 0.5 * logvar[:, None]).sum(-1)  # (B, c)
        log_w.append(log_px + log_pz_minus_qz)
    return torch.logsumexp(torch.cat(log_w, 1).double(), 1) - math.log(k)  # (B,)


@torch.no_grad()
def iw_nll(model: nn.Module, images: torch.Tensor, k: int = 64, batch_size: int = 64, seed: int = 0,
           likelihood: str | None = None, decode_batch: int = 4096) -> dict[str, Any]:
    """Importance-weighted upper bound on -log p(x), nats per image (Burda et al., 2016, eq. 8).

    log p(x) >= log (1/k) sum_i p(x|z_i) p(z_i) / q(z_i|x), z_i ~ q(z|x); k=1 is the ELBO and the
    bound tightens as k grows.

    Args:
        likelihood: None uses the model's training loss (`model.config.train.recon`). 'bernoulli':
            log p(x|z) = -BCE-with-logits summed over pixels (the usual "Bernoulli" on x in [0, 1], not
            the normalised continuous Bernoulli). 'mse': a Gaussian with variance 1/2 per pixel,
            log p(x|z) = -sum (x - x_hat)^2 - 0.5 * D * log(pi), as in vaelib.losses.
        decode_batch: at most this many (image, sample) pairs are decoded at once, to bound memory.

    The mse likelihood is a continuous density on [0, 1], so its bits/dim is not comparable with papers
    that report discrete (e.g. 256-way or discretised logistic) likelihoods.
    """
    require_gaussian_posterior(model, "the importance-weighted bound")
    likelihood = model.config.train.recon if likelihood is None else likelihood
    if likelihood not in LIKELIHOODS:
        raise ValueError(f"likelihood={likelihood!r} is invalid: allowed one of {', '.join(LIKELIHOODS)}")
    if not LIKELIHOODS[likelihood].normalised:
        raise ValueError(f"likelihood={likelihood!r} is not a normalised density ({LIKELIHOODS[likelihood].note}): "
                         "no importance-weighted bound on -log p(x) exists for it")
    if k < 1:
        raise ValueError(f"k={k!r} is invalid: allowed an integer >= 1")
    device = model_device(model)
    gen = torch.Generator(device=device).manual_seed(seed)
    with eval_mode(model):
        log_px = torch.cat([_iw_log_px(model, x, k, likelihood, gen, decode_batch).cpu()
                            for x in batches(images, batch_size, device)])
    nll = -log_px.mean().item()
    pixels = math.prod(images.shape[1:])
    return {"nll_nats": nll, "bits_per_dim": nll / (pixels * math.log(2)), "k": k, "likelihood": likelihood,
            "n_images": len(images)}


def _discretize(latents: np.ndarray, n_bins: int) -> np.ndarray:
    """Each column into n_bins equal-width histogram bins (as disentanglement_lib), (N, D) ints."""
    out = np.zeros(latents.shape, dtype=np.int64)
    for j in range(latents.shape[1]):
        edges = np.histogram(latents[:, j], n_bins)[1]
        out[:, j] = np.digitize(latents[:, j], edges[:-1])
    return out


def mutual_information_gap(latents: np.ndarray, factors: np.ndarray, n_bins: int = 20) -> dict[str, Any]:
    """MIG (Chen et al., 2018, eq. 6) with the discretised estimator of disentanglement_lib.

    Args:
        latents: (N, D) codes, usually posterior means; D >= 2.
        factors: (N, F) integer ground-truth factors.
    MI of every binned latent with every factor is divided by the factor's entropy H(v_k); the gap is
    top-1 minus top-2 over latents, averaged over factors. A factor that is constant in the sample has
    no entropy: its gap is nan and it is left out of the mean.
    """
    latents, factors = np.asarray(latents, dtype=np.float64), np.asarray(factors)
    if latents.ndim != 2 or latents.shape[1] < 2:
        raise ValueError(f"latents of shape {latents.shape} are invalid: allowed (N, D) with D >= 2")
    if factors.ndim != 2 or len(factors) != len(latents):
        raise ValueError(f"factors of shape {factors.shape} are invalid: allowed (N, F) with N={len(latents)}")
    if n_bins < 2:
        raise ValueError(f"n_bins={n_bins!r} is invalid: allowed an integer >= 2")
    binned = _discretize(latents, n_bins)  # (N, D)
    n_dims, n_factors = latents.shape[1], factors.shape[1]
    mi = np.array([[mutual_info_score(factors[:, f], binned[:, d]) for f in range(n_factors)]
                   for d in range(n_dims)])  # (D, F) nats
    entropy = np.array([mutual_info_score(factors[:, f], factors[:, f]) for f in range(n_factors)])  # (F,)
    top = np.sort(mi, axis=0)[::-1]  # (D, F), largest first
    with np.errstate(divide="ignore", invalid="ignore"):
        gaps = np.where(entropy > 0, (top[0] - top[1]) / entropy, np.nan)  # (F,)
    if np.all(np.isnan(gaps)):
        raise ValueError("factors are all constant: allowed factors that vary across the sample")
    return {"mig": float(np.nanmean(gaps)), "per_factor": gaps.tolist(), "mi": mi}


def mig_score(model: nn.Module, split: Any, n_bins: int = 20, batch_size: int = 512) -> dict[str, Any]:
    """MIG of the posterior means of `split.images` against `split.factors`."""
    if getattr(split, "factors", None) is None:
        raise ValueError("MIG needs ground-truth factors; only the shapes dataset has them")
    mu, _ = posterior_stats(model, split.images, batch_size)
    factors = torch.as_tensor(split.factors).cpu().numpy()
    return mutual_information_gap(mu.cpu().numpy(), factors, n_bins)


# --- blur and baselines --------------------------------------------------------------------------

LAPLACIAN = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]])  # 4-neighbour discrete Laplacian


def image_batch(images: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A CPU float copy in [0, 1] of an image batch (N, C, H, W), N >= 1; refuses any other shape."""
    if images.dim() != 4 or len(images) == 0:
        raise ValueError(f"images of shape {tuple(images.shape)} are invalid: allowed (N, C, H, W) with N >= 1")
    return to_float(images.detach().cpu(), dtype=dtype)


def reconstructions(model: nn.Module, images: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """Posterior-mean reconstructions of every image, float (N, C, H, W) in [0, 1] on CPU."""
    device = model_device(model)
    with eval_mode(model), torch.no_grad():
        return torch.cat([model.reconstruct(to_float(images[i:i + batch_size], device)).cpu()
                          for i in range(0, len(images), batch_size)])


def laplacian_variance(images: torch.Tensor) -> torch.Tensor:
    """Variance of the 3x3 Laplacian over interior pixels, averaged over channels, (N,): low = blurry
    (Pech-Pacheco et al., 2000)."""
    x = image_batch(images)
    n, c, h, w = x.shape
    lap = F.conv2d(x.reshape(n * c, 1, h, w), LAPLACIAN.view(1, 1, 3, 3))  # (N*C, 1, H-2, W-2), no padding
    return lap.flatten(1).var(1, unbiased=False).view(n, c).mean(1)


def sharpness_ratio(model: nn.Module, images: torch.Tensor, batch_size: int = 512) -> float:
    """Mean Laplacian variance of the reconstructions over that of the images themselves: 1 = as sharp as the
    data, below 1 = blurrier (the data's own sharpness is the reference line)."""
    recon = reconstructions(model, image_batch(images), batch_size)
    return float(laplacian_variance(recon).mean() / laplacian_variance(images).mean())


def pca_baseline(train: torch.Tensor, test: torch.Tensor, k: int) -> float:
    """Test SSE per image (pixels in [0, 1], summed over C*H*W, mean over images) of the best rank-k linear
    reconstruction: PCA with k components fitted on train (float64). k = 0 is the data-mean baseline."""
    x, y = (image_batch(t, torch.float64).flatten(1) for t in (train, test))  # (N, D)
    if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k <= min(x.shape):
        raise ValueError(f"k={k!r} is invalid: allowed an integer in 0..{min(x.shape)}")
    mean = x.mean(0)
    xc, yc = x - mean, y - mean
    if k:
        _, _, vh = torch.linalg.svd(xc, full_matrices=False)  # rows of vh: principal directions, largest first
        basis = vh[:k].T  # (D, k)
        yc = yc - (yc @ basis) @ basis.T
    return float(yc.pow(2).sum(1).mean())



@torch.no_grad()
def samples_vs_reconstructions(model: nn.Module, images: torch.Tensor, n: int = 512, seed: int = 0
                               ) -> dict[str, float]:
    """How n prior samples compare with the posterior-mean reconstructions of n test images and with the images
    themselves: sharpness (mean Laplacian variance over the images', 1 = as sharp) and spread (the per-pixel
    standard deviation across the set, averaged over pixels, in [0, 1] units)."""
    x = image_batch(images[:n])
    gen = torch.Generator(device=model_device(model)).manual_seed(seed)
    with eval_mode(model):
        s = model.sample(len(x), generator=gen).float().cpu()
    r = reconstructions(model, x)
    lap = laplacian_variance(x).mean().item()
    return {"sample_sharpness": laplacian_variance(s).mean().item() / lap,
            "recon_sharpness": laplacian_variance(r).mean().item() / lap,
            "sample_spread": s.std(0).mean().item(), "recon_spread": r.std(0).mean().item(),
            "data_spread": x.std(0).mean().item()}
