"""Lesson 06, beyond the Gaussian VAE: four generative models on the same data, budget and measures.

The Gaussian VAE of the earlier lessons; a VQ-VAE (a discrete code, vaelib.models.vqvae) sampled from the uniform
code prior it leaves untrained and from a PixelCNN prior learned over its codes; the same VAE with a perceptual
reconstruction term (vaelib.models.perceptual); and the Gaussian VAE's decoder behind a flow-matching prior learned
in its latent space (vaelib.models.latent_priors). The lesson trains them through the run cache (the priors are
small and fast, trained in the notebook) and measures each: reconstruction error and sharpness, sample quality in
the domain classifier's features, bits per dimension where a density exists, codebook use.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from vaelib.config import Config, with_overrides
from vaelib.evaluation import metrics
from vaelib.evaluation.sample_quality import sample_quality
from vaelib.models.classifier import DATASETS as JUDGED
from vaelib.models.vqvae import codebook_usage

VQ = {"model.kind": "vq", "model.codebook_size": 64}  # a small codebook: its prior learns in seconds


def model_configs(base: Config) -> dict[str, Config]:
    """The three trained models: the base Gaussian VAE, a VQ-VAE of the same encoder and decoder (64 codes of
    latent_dim values at every position), and the VAE with the perceptual term where a feature network for the data
    ships with vaelib (mnist, shapes; elsewhere it needs LPIPS, a download, and is left out)."""
    out = {"Gaussian VAE": base, "VQ-VAE": with_overrides(base, **VQ)}
    if base.data.dataset in JUDGED:
        out["perceptual VAE"] = with_overrides(base, **{"train.recon": "perceptual"})
    return out


class Decoded(nn.Module):
    """A trained model's decoder behind another prior: sample(n) draws n codes from `draw` and decodes them, so
    the sample measures (sample_quality) read it like any model."""

    def __init__(self, model: nn.Module, prior: nn.Module, draw: Callable[[int, torch.Generator | None], Any]
                 ) -> None:
        super().__init__()
        self.model, self.prior, self.draw = model, prior, draw

    @torch.no_grad()
    def sample(self, n: int, temperature: float = 1.0, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.model.decode(self.draw(n, generator))


def samplers(models: dict[str, nn.Module], code_prior: nn.Module, flow: nn.Module) -> dict[str, nn.Module]:
    """What each row of samples is drawn from: each model's own prior (N(0, I); for the VQ-VAE the uniform code
    prior), the VQ-VAE behind its learned PixelCNN prior, the Gaussian VAE behind its latent flow."""
    out: dict[str, nn.Module] = {}
    for name, m in models.items():
        out[name + (" (uniform codes)" if name == "VQ-VAE" else "")] = m
        if name == "VQ-VAE":
            out["VQ-VAE + PixelCNN prior"] = Decoded(m, code_prior, lambda n, g: code_prior.sample(n, generator=g))
    out["Gaussian VAE + latent flow"] = Decoded(models["Gaussian VAE"], flow,
                                                lambda n, g: flow.sample(n, generator=g))
    return out


def measure_rows(models: dict[str, nn.Module], drawn: dict[str, nn.Module], test: Any, judge: Any, *,
                 sample_n: int, seed: int) -> list[dict[str, Any]]:
    """One row per sampler: the reconstruction error (squared error summed over pixels, per image) and sharpness of
    the model it decodes with, the sample Fréchet distance, precision and recall in the domain classifier's features
    (judge; None leaves them out), bits per dimension on the 256-level scale where the model has a density (the
    importance-weighted bound of a Gaussian VAE trained on a likelihood; '-' otherwise), and for a VQ-VAE the
    share of its codebook the test images use and the perplexity of their codes."""
    rows = []
    for name, s in drawn.items():
        base = s.model if isinstance(s, Decoded) else s
        row: dict[str, Any] = {"model": name,
                               "recon error": round(metrics.reconstruction_mse(base, test.images), 2),
                               "sharpness": round(metrics.sharpness_ratio(base, test.images), 3)}
        if judge is not None:
            q = sample_quality(s, judge, test.images, n=sample_n, seed=seed)
            row |= {"sample FD": round(q["fd"], 1), "precision": round(q["precision"], 3),
                    "recall": round(q["recall"], 3)}
        dense = getattr(base, "gaussian_posterior", False) and base.config.train.recon != "perceptual"
        row["bits/dim (256 levels)"] = round(metrics.iw_nll(base, test.images, k=16, seed=seed)[
            "bits_per_dim"] + 8, 3) if dense and not isinstance(s, Decoded) else "-"
        if hasattr(base, "codebook_size"):
            use = codebook_usage(base, test.images)
            row |= {"codes used": f"{use['used_share']:.0%}", "perplexity": round(use["perplexity"], 1)}
        rows.append(row)
    return rows


def beats_data_mean(rows: list[dict[str, Any]], baseline: float) -> dict[str, float]:
    """Each model's reconstruction error as a share of the data-mean baseline (1: no better than outputting the
    mean image)."""
    return {r["model"]: r["recon error"] / baseline for r in rows if math.isfinite(r["recon error"])}


@torch.no_grad()
def sample_images(drawn: dict[str, nn.Module], n: int = 10, seed: int = 0) -> dict[str, torch.Tensor]:
    """n samples from each sampler, each from a generator seeded alike, (n, C, H, W) in [0, 1] on the CPU."""
    out = {}
    for name, s in drawn.items():
        gen = torch.Generator(device=next(s.parameters()).device).manual_seed(seed)
        out[name] = s.sample(n, generator=gen).float().cpu().clamp(0, 1)
    return out
