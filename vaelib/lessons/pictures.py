"""Pictures of the ideas, drawn from the models themselves (notebook 02 shows them): the architecture as boxes,
posteriors as ellipses against the prior, how much of the prior they cover, and what an autoencoder and a VAE
decode from codes of real images and from codes drawn from the prior."""

from __future__ import annotations

import math
from typing import Any

import matplotlib.patches
import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure

from vaelib.evaluation.plots import example_indices, tile
from vaelib.lessons.architecture import layer_rows
from vaelib.models.base import posterior_stats
from vaelib.models.vae import VAE
from vaelib.runtime import to_float


def architecture_diagram(model: VAE) -> Figure:
    """The model as a picture, drawn from the model itself: one box per layer of VAE.layer_shapes (height by the
    layer's spatial size, width by its channels, both on a log scale), labelled with its output shape and what
    computes it; the bottleneck splits into mu and log sigma^2, which the reparameterisation z = mu + sigma * eps
    joins. Nothing is hand-drawn: another preset or latent size gives another picture."""
    rows = layer_rows(model)
    latent = model.config.model.latent_dim
    fig, ax = plt.subplots(figsize=(max(9.0, 1.45 * (len(rows) + 2)), 4.2))
    x, centres = 0.0, []
    biggest = max(math.prod(_shape(r)[-2:]) for r in rows)
    for row in rows:
        shape = _shape(row)
        c, hw = (shape[1], shape[2]) if len(shape) == 4 else (shape[1], 1)
        height = 0.6 + 2.4 * math.log2(1 + hw) / math.log2(1 + math.isqrt(biggest))
        width = 0.25 + 0.12 * math.log2(c)
        colour = "tab:blue" if row["layer"].startswith("encoder") else (
            "tab:orange" if row["layer"].startswith("decoder") else "0.6")
        if row["layer"].startswith("encoder.fc_mu"):  # the two heads, side by side: mu above, log sigma^2 below
            for dy, label, va in ((0.9, "mu", "bottom"), (-0.9, "log sigma^2", "top")):
                ax.add_patch(plt.Rectangle((x, dy - 0.35), width, 0.7, color="tab:purple", alpha=0.8))
                ax.text(x + width / 2, dy + (0.45 if va == "bottom" else -0.45), f"{label} ({latent})", ha="center",
                        va=va, fontsize=8)
            centres.append(x + width / 2)
            x += width + 0.5
            ax.text(x + 0.3, 0, "z", ha="center", va="center", fontsize=11,
                    bbox={"boxstyle": "circle", "color": "tab:green", "alpha": 0.8})
            ax.text(x + 0.3, -0.45, "z = mu + sigma * eps\neps ~ N(0, I)", ha="center", va="top", fontsize=8)
            centres.append(x + 0.3)
            x += 1.1
            continue
        ax.add_patch(plt.Rectangle((x, -height / 2), width, height, color=colour, alpha=0.8))
        ax.text(x + width / 2, height / 2 + 0.1, row["output shape"].removeprefix("1x"), ha="center",
                va="bottom", fontsize=8)
        what = "Sigmoid" if row["layer"] == "output" else row["modules"].replace(" + ", "\n")
        ax.text(x + width / 2, -height / 2 - 0.1, f"{row['layer']}\n{what}", ha="center", va="top", fontsize=7)
        centres.append(x + width / 2)
        x += width + 0.55
    for a, b in zip(centres[:-1], centres[1:]):
        ax.annotate("", (b - 0.2, 0), (a + 0.2, 0), arrowprops={"arrowstyle": "->", "color": "0.3"})
    ax.set_xlim(-0.3, x)
    ax.set_ylim(-3.4, 2.6)
    ax.axis("off")
    params = sum(p.numel() for p in model.parameters())
    ax.set_title(f"{model.config.name}: encoder (blue) -> posterior (purple) -> sample (green) -> decoder (orange); "
                 f"{params:,} parameters", fontsize="medium")
    fig.tight_layout()
    return fig


def _shape(row: dict[str, Any]) -> tuple[int, ...]:
    return tuple(int(v) for v in row["output shape"].split("x"))


def posterior_ellipses(model: VAE, images: torch.Tensor, labels: torch.Tensor | None = None, n: int = 40,
                       seed: int = 0) -> Figure:
    """Posteriors as what they are, distributions: for n images of a model with a 2-D latent space, the ellipse of
    one standard deviation of q(z|x) = N(mu, diag(sigma^2)) around each mean (coloured by class), against the
    prior N(0, I)'s circles of 1 and 2 standard deviations. Where the ellipses cover the prior, a code drawn from it
    lands where some image was encoded; where they leave holes, the decoder never learned what to draw there."""
    if model.config.model.latent_dim != 2:
        raise ValueError(f"latent_dim={model.config.model.latent_dim} is invalid for posterior_ellipses: allowed 2 "
                         "(a model with a 2-D latent space)")
    pick = example_indices(labels if labels is not None else torch.zeros(len(images)), min(n, len(images)), seed)
    mu, logvar = (t.cpu().numpy() for t in posterior_stats(model, images[pick]))
    sigma = np.exp(0.5 * logvar)
    fig, ax = plt.subplots(figsize=(6.2, 6))
    cmap = plt.get_cmap("tab10")
    for r in (1, 2):
        ax.add_patch(plt.Circle((0, 0), r, fill=False, ls="--", color="black", lw=1.2))
        ax.text(r * 0.71, r * 0.71, f"prior {r} sd", fontsize=8)
    classes = labels[pick].numpy() if labels is not None else np.zeros(len(pick), dtype=int)
    for (mx, my), (sx, sy), k in zip(mu, sigma, classes):
        ax.add_patch(matplotlib.patches.Ellipse((mx, my), 2 * sx, 2 * sy, color=cmap(int(k) % 10), alpha=0.3))
        ax.plot(mx, my, ".", color=cmap(int(k) % 10), ms=3)
    lim = max(2.5, float(np.abs(mu).max() + 2 * sigma.max()))
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    ax.set_xlabel("z[0]")
    ax.set_ylabel("z[1]")
    if labels is not None:
        ax.legend(handles=[matplotlib.patches.Patch(color=cmap(int(k) % 10), label=str(int(k)))
                           for k in np.unique(classes)], title="class", fontsize="small", loc="upper right")
    ax.set_title(f"q(z|x) of {len(pick)} test images (1 sd ellipses) against the prior N(0, I)")
    fig.tight_layout()
    return fig


def prior_coverage(model: VAE, images: torch.Tensor, draws: int = 2000, seed: int = 0) -> float:
    """The share of `draws` codes z ~ N(0, I) that fall inside the 1-sd ellipse of at least one posterior
    q(z|x) of `images` (Mahalanobis distance <= 1 under that posterior's diagonal Gaussian): how much of the prior
    the encoded images cover, for a model of any latent size (in many dimensions the share is small)."""
    if draws < 1:
        raise ValueError(f"draws={draws!r} is invalid: allowed an integer >= 1")
    mu, logvar = (t.cpu().double() for t in posterior_stats(model, images))
    z = torch.randn(draws, mu.shape[1], generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    inv_sd = torch.exp(-0.5 * logvar)
    inside = torch.zeros(draws, dtype=torch.bool)
    for part in range(0, len(mu), 256):  # (draws, 256, D) at a time
        d2 = ((z[:, None] - mu[None, part:part + 256]) * inv_sd[None, part:part + 256]).pow(2).sum(-1)
        inside |= (d2 <= 1).any(1)
    return inside.double().mean().item()


def sampling_contrast(models: dict[str, torch.nn.Module], images: torch.Tensor, n: int = 10, seed: int = 0
                      ) -> Figure:
    """For each model (e.g. {"autoencoder": ..., "VAE": ...}): a row of reconstructions of the same n test images
    and a row of n decodes of codes drawn from N(0, I) with the same seed, so the two rows of each model compare
    what it does with codes of real images and with codes from the prior."""
    x = to_float(images[example_indices(torch.zeros(len(images)), n, seed)])
    rows = [("test images", x)]
    for name, model in models.items():
        device = next(model.parameters()).device
        with torch.no_grad():
            recon = model.reconstruct(x.to(device)).cpu()
            sample = model.sample(n, generator=torch.Generator(device=device).manual_seed(seed)).cpu()
        rows += [(f"{name}: reconstructions", recon), (f"{name}: samples from N(0, I)", sample)]
    fig, axes = plt.subplots(len(rows), 1, figsize=(1.1 * n, 1.3 * len(rows)))
    for ax, (title, imgs) in zip(axes, rows):
        ax.imshow(tile(imgs, n, pad=1).squeeze(), cmap="gray" if imgs.shape[1] == 1 else None, vmin=0, vmax=1)
        ax.set_title(title, fontsize="medium", loc="left")
        ax.axis("off")
    fig.tight_layout()
    return fig
