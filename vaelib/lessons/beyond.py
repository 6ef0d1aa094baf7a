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
from vaelib.experiments.measures import run_head
from vaelib.experiments.runs import Run
from vaelib.models.base import eval_mode, model_device
from vaelib.models.classifier import DATASETS as JUDGED
from vaelib.models.latent_priors import fit_code_prior, fit_latent_flow
from vaelib.models.vqvae import codebook_usage
from vaelib.runtime import to_float

# A small codebook (its prior learns in seconds), the decoder's output starting at the data's mean colour: from
# mid-grey, the squared error through the sigmoid drove two shapes seeds of three to an all-black output they never
# left (docs/findings.md, "Future work"; model.output_bias)
VQ = {"model.kind": "vq", "model.codebook_size": 64, "model.output_bias": "data_mean"}


def model_configs(base: Config) -> dict[str, Config]:
    """The three trained models: the base Gaussian VAE, a VQ-VAE of the same encoder and decoder (64 codes of
    latent_dim values at every position, its decoder's output started at the data's mean colour: VQ), and the VAE
    with the perceptual term where a feature network for the data ships with vaelib (mnist, shapes; elsewhere it
    needs LPIPS, a download, and is left out)."""
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


# --- the future-work study (notebooks/studies/future_work.ipynb): per-seed rows of every arm it judges ----------

MODELS = ("Gaussian VAE", "VQ-VAE", "perceptual VAE")
# (a prior learned from the codes, the model's own prior): the VQ-VAE's PixelCNN prior is lesson 06's alone (its
# fit and its sampling, one code at a time, take minutes per seed on a CPU, and no source claim rests on it)
PRIOR_ARMS = {"Gaussian VAE": ("Gaussian VAE + latent flow", "Gaussian VAE, N(0, I) prior")}
OWN, OTHER = "own code", "another image's code"


def model_of(arm: str) -> str:
    """The trained model an arm of the study reads: 'VQ-VAE + PixelCNN prior' -> 'VQ-VAE'."""
    name = next((m for m in MODELS if arm == m or arm.startswith((m + ",", m + " +"))), None)
    if name is None:
        raise ValueError(f"arm={arm!r} is invalid: allowed one of {', '.join(MODELS)}, or one of them followed by "
                         "', ...' or ' + ...'")
    return name


def _code(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """What the decoder reads: the posterior mean of a Gaussian VAE, the code indices of a VQ-VAE."""
    out = model.encode(x)
    return out[0] if isinstance(out, tuple) else out


def derangement(n: int, seed: int) -> torch.Tensor:
    """A seeded permutation of range(n) that moves every index (n >= 2): each image gets another's code."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 2:
        raise ValueError(f"n={n!r} is invalid: allowed an integer >= 2 (one image has no other to swap with)")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    out = torch.empty(n, dtype=torch.long)
    out[order] = order.roll(-1)  # order[i] takes the code of order[i + 1]: a single cycle, no fixed point
    return out


@torch.no_grad()
def swapped_errors(model: nn.Module, images: torch.Tensor, seed: int = 0, batch_size: int = 512
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image squared error (summed over pixels), (N,) each, of the reconstruction decoded from the image's own
    code and from another image's code (`derangement`). A decoder that ignores its code (posterior collapse) gives
    the same error from either; one that uses it, a lower error from its own."""
    device = model_device(model)
    with eval_mode(model):
        x = to_float(images, device)
        codes = torch.cat([_code(model, x[i:i + batch_size]) for i in range(0, len(x), batch_size)])
        other = derangement(len(x), seed).to(device)
        own, swapped = [], []
        for i in range(0, len(x), batch_size):
            xb = x[i:i + batch_size]
            own.append((model.decode(codes[i:i + batch_size]) - xb).pow(2).flatten(1).sum(1).cpu())
            swapped.append((model.decode(codes[other[i:i + batch_size]]) - xb).pow(2).flatten(1).sum(1).cpu())
    return torch.cat(own), torch.cat(swapped)


def _quality(sampler: nn.Module, judge: Any, test_images: torch.Tensor, n: int, seed: int) -> dict[str, float]:
    q = sample_quality(sampler, judge, test_images, n=n, seed=seed)
    return {"fd": q["fd"], "log_fd": math.log(q["fd"]) if q["fd"] > 0 else -math.inf,
            "precision": q["precision"], "recall": q["recall"]}


def learned_sampler(model: nn.Module, images: torch.Tensor, *, seed: int, flow_epochs: int = 30,
                    prior_epochs: int = 8) -> Decoded:
    """A trained model's decoder behind a prior learned from the codes of `images`: a PixelCNN over a VQ-VAE's
    code grids (prior_epochs), a flow-matching prior in a Gaussian VAE's latent space (flow_epochs); seeded."""
    if hasattr(model, "codebook_size"):
        prior, _ = fit_code_prior(model, images, epochs=prior_epochs, seed=seed)
    else:
        prior, _ = fit_latent_flow(model, images, epochs=flow_epochs, seed=seed)
    return Decoded(model, prior, lambda n, g: prior.sample(n, generator=g))


def study_rows(runs: dict[str, list[Run]], *, train: Any, test: Any, judge: Any, baseline: float, sample_n: int,
               tol: float, flow_epochs: int = 30, prior_epochs: int = 8) -> dict[str, list[dict[str, Any]]]:
    """{arm: [row per seed]} of the models' runs ({model name: [run per seed]}), every row headed by its run's seed
    and convergence (measures.run_head):

    - the model itself: `error_share` (reconstruction error over the data-mean image's, `baseline`), `sharpness`
      (the reconstructions' Laplacian variance over the test images'), and for a VQ-VAE its codebook use;
    - '<model>, own code' and '<model>, another image's code': `error_share` of the reconstructions decoded from
      each image's own code and from another test image's;
    - with a judge (the domain classifier), the two samplers of a Gaussian VAE (PRIOR_ARMS): a latent flow
      prior, fitted here on the run's seed, and the model's own prior N(0, I): `fd`, `log_fd`, `precision`,
      `recall` of `sample_n` samples in the judge's features.

    A failed run's rows carry its head only."""
    lap_data = metrics.laplacian_variance(test.images).mean().item()
    out: dict[str, list[dict[str, Any]]] = {}

    def add(arm: str, row: dict[str, Any]) -> None:
        out.setdefault(arm, []).append(row)

    for name, seeds in runs.items():
        for run in seeds:
            head = run_head(run, tol)
            arms = [name, f"{name}, {OWN}", f"{name}, {OTHER}", *PRIOR_ARMS.get(name, ())[:2 if judge else 0]]
            if run.failed:
                for arm in arms:
                    add(arm, dict(head))
                continue
            m, seed = run.model, run.config.train.seed
            own, swapped = swapped_errors(m, test.images, seed)
            recon = metrics.reconstructions(m, test.images)
            row = {**head, "error_share": own.mean().item() / baseline,
                   "sharpness": metrics.laplacian_variance(recon).mean().item() / lap_data}
            if hasattr(m, "codebook_size"):
                use = codebook_usage(m, test.images)
                row |= {"codes_used": use["used_share"], "perplexity": use["perplexity"]}
            add(name, row)
            add(f"{name}, {OWN}", {**head, "error_share": own.mean().item() / baseline})
            add(f"{name}, {OTHER}", {**head, "error_share": swapped.mean().item() / baseline})
            if judge is None or name not in PRIOR_ARMS:
                continue
            learned = learned_sampler(m, train.images, seed=seed, flow_epochs=flow_epochs, prior_epochs=prior_epochs)
            add(PRIOR_ARMS[name][0], {**head, **_quality(learned, judge, test.images, sample_n, seed)})
            add(PRIOR_ARMS[name][1], {**head, **_quality(m, judge, test.images, sample_n, seed)})
    return out
