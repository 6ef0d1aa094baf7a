"""Figures for notebooks and reports: image grids, reconstructions, samples, interpolations, curves.

Every function builds and returns its own matplotlib Figure and never calls `plt.show()`, so it works
with the Agg backend; save one with `save_figure`. Losses are in nats per image.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from torch import nn

from vaelib.io.files import atomic_write_bytes
from vaelib.models.base import eval_mode, model_device, posterior_stats
from vaelib.runtime import to_float
from vaelib.training.history import History

COLORS = {"total": "black", "recon": "tab:blue", "kl": "tab:red", "beta": "tab:green"}


def tile(images: torch.Tensor, nrow: int, pad: int = 1) -> np.ndarray:
    """(N, C, H, W) in [0, 1] -> one (rows*H, nrow*W, C) array with `pad` pixels of white between."""
    from torchvision.utils import make_grid  # heavy: torchvision takes about 2 s to load; only a grid needs it

    x = to_float(images.detach().cpu()).clamp(0, 1)  # (N, C, H, W)
    grid = make_grid(x, nrow=nrow, padding=pad, pad_value=1)  # (3 if C == 1 else C, H', W') with an outer border
    border = pad if len(x) > 1 else 0  # make_grid returns a single image as it is, with no border
    grid = grid[:x.shape[1], border:grid.shape[1] - border, border:grid.shape[2] - border]  # grey: 1 of 3 copies
    return grid.permute(1, 2, 0).numpy()  # (H', W', C)


def example_indices(labels: torch.Tensor | None, n: int, seed: int = 0) -> torch.Tensor:
    """Indices of n examples for a figure: a seeded shuffle that takes the classes in turn (labels (N,), a class
    or a factor index per image), so a strip shows as many classes as it can. The splits are sorted by class, so
    their first n images would all be one class. torch.zeros(N) gives a plain seeded shuffle."""
    if labels is None or labels.ndim != 1:
        raise ValueError("labels are invalid: allowed one class index per image, shape (N,)")
    if not 1 <= n <= len(labels):
        raise ValueError(f"n={n!r} is invalid: allowed 1..{len(labels)} (the images there are)")
    perm = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    shuffled = labels[perm]
    rank = torch.zeros(len(perm), dtype=torch.long)  # how many of the same class come before, in shuffled order
    for c in shuffled.unique():
        where = (shuffled == c).nonzero().flatten()
        rank[where] = torch.arange(len(where))
    order = sorted(range(len(perm)), key=lambda i: (int(rank[i]), i))  # round robin over the classes
    return perm[torch.tensor(order[:n])]


def split_example_indices(split: Any, n: int, seed: int = 0) -> torch.Tensor:
    """example_indices over a split: its classes in turn (one label per image), else, on shapes, its shape factor
    (factors[:, 0]), else a plain seeded shuffle."""
    if split.labels is not None and split.labels.ndim == 1:
        labels = split.labels
    else:
        labels = split.factors[:, 0] if split.factors is not None else torch.zeros(len(split))
    return example_indices(labels, n, seed)


def show(ax: plt.Axes, grid: np.ndarray) -> None:
    """Draw a tiled grid (H', W', C) in [0, 1] without ticks, grey for one channel."""
    if grid.shape[-1] == 1:
        ax.imshow(grid[..., 0], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    else:
        ax.imshow(grid, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


def _check_images(images: torch.Tensor) -> None:
    if images.dim() != 4 or len(images) == 0:
        raise ValueError(f"images of shape {tuple(images.shape)} are invalid: allowed (N, C, H, W) with N >= 1")


def image_grid(images: torch.Tensor, nrow: int = 8, title: str | None = None) -> Figure:
    """A grid of images (N, C, H, W), uint8 or float in [0, 1]; grey for C=1; `nrow` images per row."""
    _check_images(images)
    if nrow < 1:
        raise ValueError(f"nrow={nrow!r} is invalid: allowed an integer >= 1")
    grid = tile(images, nrow)
    scale = 6 / max(grid.shape[:2])
    fig, ax = plt.subplots(figsize=(max(2.0, grid.shape[1] * scale), max(2.0, grid.shape[0] * scale)))
    show(ax, grid)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def _one_image(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    x = x if x.dim() == 4 else x[None]  # (1, C, H, W)
    if len(x) != 1:
        raise ValueError(f"image of shape {tuple(x.shape)} is invalid: allowed (C, H, W) or (1, C, H, W)")
    return to_float(x, device)


def _strip(rows: list[tuple[str, torch.Tensor]], title: str, xlabel: str | None = None) -> Figure:
    """One labelled row of images per entry, (n, C, H, W) each."""
    n = len(rows[0][1])
    fig, axes = plt.subplots(len(rows), 1, figsize=(min(1.1 * n + 1, 14), 1.3 * len(rows) + 0.6), squeeze=False)
    for ax, (label, images) in zip(axes[:, 0], rows):
        show(ax, tile(images, nrow=n))
        ax.set_ylabel(label)
    axes[0, 0].set_title(title)
    if xlabel:
        axes[-1, 0].set_xlabel(xlabel)
    fig.tight_layout()
    return fig


@torch.no_grad()
def reconstruction_grid(model: nn.Module, images: torch.Tensor, n: int = 8) -> Figure:
    """The first n originals (top row) above their posterior-mean reconstructions (bottom row)."""
    _check_images(images)
    x = to_float(images[:n], model_device(model))  # (n, C, H, W)
    with eval_mode(model):
        recon = model.reconstruct(x)
    return _strip([("original", x), ("reconstruction", recon)], "Reconstructions (decoded posterior mean)")


@torch.no_grad()
def sample_grid(model: nn.Module, n: int = 64, temperature: float = 1.0, seed: int = 0) -> Figure:
    """n images decoded from z ~ N(0, temperature^2 I), with a fixed seed."""
    gen = torch.Generator(device=model_device(model)).manual_seed(seed)
    with eval_mode(model):
        images = model.sample(n, temperature=temperature, generator=gen)
    return image_grid(images, nrow=math.ceil(math.sqrt(n)), title=f"Samples from the prior (T={temperature:g})")


def interpolate_latents(z_a: torch.Tensor, z_b: torch.Tensor, steps: int, spherical: bool = False) -> torch.Tensor:
    """(steps, D) codes from z_a to z_b inclusive; spherical=True uses slerp (White, 2016, "Sampling
    Generative Networks"; Shoemake, 1985), which keeps the norm when |z_a| = |z_b|."""
    if steps < 2:
        raise ValueError(f"steps={steps!r} is invalid: allowed an integer >= 2")
    z_a, z_b = z_a.reshape(-1), z_b.reshape(-1)  # (D,)
    if z_a.shape != z_b.shape:
        raise ValueError(f"z_b of shape {tuple(z_b.shape)} is invalid: allowed the shape of z_a, {tuple(z_a.shape)}")
    t = torch.linspace(0, 1, steps, dtype=torch.float64, device=z_a.device)[:, None]  # (steps, 1)
    a, b = z_a.double(), z_b.double()
    cos = torch.dot(a, b) / (a.norm() * b.norm()).clamp_min(1e-12)
    omega = torch.arccos(cos.clamp(-1, 1))
    if spherical and omega.sin().abs() > 1e-6:
        out = (torch.sin((1 - t) * omega) * a + torch.sin(t * omega) * b) / torch.sin(omega)
    else:  # linear, or slerp between (anti)parallel codes, where it is undefined or equal to lerp
        out = (1 - t) * a + t * b
    out = out.to(z_a.dtype)
    out[0], out[-1] = z_a, z_b  # exact endpoints, free of rounding
    return out


@torch.no_grad()
def interpolation(model: nn.Module, x_a: torch.Tensor, x_b: torch.Tensor, steps: int = 10,
                  spherical: bool = False) -> Figure:
    """Decoded interpolation between the posterior means of two images (C, H, W) or (1, C, H, W)."""
    device = model_device(model)
    with eval_mode(model):
        mu_a, _ = model.encode(_one_image(x_a, device))  # (1, D)
        mu_b, _ = model.encode(_one_image(x_b, device))
        images = model.decode(interpolate_latents(mu_a[0], mu_b[0], steps, spherical))  # (steps, C, H, W)
    kind = "spherical" if spherical else "linear"
    return _strip([("decoded", images)], f"Latent interpolation ({kind}, {steps} steps)", "x_a  ->  x_b")


def trend_sentence(values: list[float] | np.ndarray, name: str, unit: str = "nats per image",
                   tail: float = 0.2, flat: float = 0.02) -> str:
    """What a per-step curve did, in words written from its numbers (for a caption that must not state a result by
    hand): its start, its extreme, the mean of its last `tail` share of steps, and whether it was still rising or
    falling there (the change between the first and last half of that tail, relative to its mean, beyond `flat`)."""
    y = np.asarray(values, dtype=float)
    y = y[np.isfinite(y)]
    if len(y) < 10:
        return f"{name}: too few finite steps ({len(y)}) to describe"
    n_tail = max(4, int(tail * len(y)))
    end = y[-n_tail:]
    first, second = end[: n_tail // 2].mean(), end[n_tail // 2:].mean()
    change = (second - first) / abs(end.mean()) if end.mean() else 0.0
    trend = "still rising" if change > flat else "still falling" if change < -flat else "flat"
    hi, lo = int(y.argmax()), int(y.argmin())
    return (f"{name} ({unit}): {y[0]:.3g} at the first step, highest {y[hi]:.3g} (step {hi}), lowest {y[lo]:.3g} "
            f"(step {lo}); over the last {n_tail} steps it averages {end.mean():.3g} and is {trend} "
            f"({change:+.1%} from their first half to their second)")


def training_curves(history: History, per: str = "step", log_y: bool = False) -> Figure:
    """Total, recon and KL (nats per image, one axis) with beta on a twin axis; per 'step' or 'epoch'."""
    if per not in ("step", "epoch"):
        raise ValueError(f"per={per!r} is invalid: allowed 'step' or 'epoch'")
    rows = history.steps if per == "step" else history.epochs
    if not rows:
        raise ValueError(f"history has no {per + 's'!r} rows: allowed a history returned by fit")
    x = [r[per] + (1 if per == "epoch" else 0) for r in rows]  # epochs counted from 1 once finished
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for key in ("total", "recon", "kl"):
        if per == "step":
            ax.plot(x, [r[key] for r in rows], color=COLORS[key], lw=1, label=key)
        else:
            ax.plot(x, [r["train_" + key] for r in rows], color=COLORS[key], marker="o", label=f"train {key}")
            ax.plot(x, [r["val_" + key] for r in rows], color=COLORS[key], ls="--", marker="s", label=f"val {key}")
    if log_y:
        ax.set_yscale("log")
    ax.set_xlabel(per)
    ax.set_ylabel("loss (nats per image)")
    ax.grid(alpha=0.3)
    twin = ax.twinx()
    twin.plot(x, [r["beta"] for r in rows], color=COLORS["beta"], lw=1.5, ls=":", label="beta")
    twin.set_ylabel("beta (KL weight)", color=COLORS["beta"])
    lines = ax.get_legend_handles_labels()
    extra = twin.get_legend_handles_labels()
    twin.set_ylim(bottom=0, top=max(max(r["beta"] for r in rows), 1e-3) * 1.1)
    if per == "epoch":
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(lines[0] + extra[0], lines[1] + extra[1], loc="best", fontsize="small", ncol=2)
    ax.set_title(f"Training curves per {per} (total = recon + beta * KL)")
    fig.tight_layout()
    return fig


def kl_per_dimension_plot(kl: np.ndarray, sort: bool = True, threshold: float = 0.01) -> Figure:
    """Bar chart of the mean KL of each latent dimension (nats), largest first when sort=True.

    The dashed line marks `threshold` nats: dimensions below it carry almost no information (collapsed).
    This is a KL heuristic; Burda et al.'s active-unit test (metrics.active_units) thresholds Var_x(mu) instead.
    """
    kl = np.asarray(kl, dtype=float).reshape(-1)  # (D,)
    order = np.argsort(-kl) if sort else np.arange(len(kl))
    fig, ax = plt.subplots(figsize=(min(max(4.0, 0.25 * len(kl) + 2), 14), 4))
    ax.bar(np.arange(len(kl)), kl[order], color=np.where(kl[order] > threshold, "tab:blue", "tab:gray"))
    if len(kl) <= 40:
        ax.set_xticks(np.arange(len(kl)), [str(i) for i in order], fontsize="small")
    ax.axhline(threshold, color="tab:red", ls="--", lw=1, label=f"{threshold:g} nats")
    ax.set_xlabel("latent dimension" + (" (sorted by KL)" if sort else ""))
    ax.set_ylabel("KL (nats per image)")
    used = int((kl > threshold).sum())
    ax.set_title(f"KL per latent dimension: {used} of {len(kl)} above {threshold:g} nats, total {kl.sum():.1f}")
    ax.legend(fontsize="small")
    fig.tight_layout()
    return fig


@torch.no_grad()
def latent_traversal(model: nn.Module, x: torch.Tensor, dim: int, span: float = 3.0, steps: int = 9) -> Figure:
    """Decode the posterior mean of x with dimension `dim` swept over [-span, span]."""
    device = model_device(model)
    with eval_mode(model):
        mu, _ = model.encode(_one_image(x, device))  # (1, D)
        if not 0 <= dim < mu.shape[1]:
            raise ValueError(f"dim={dim!r} is invalid: allowed 0 <= dim < {mu.shape[1]}")
        z = mu.repeat(steps, 1)  # (steps, D)
        z[:, dim] = torch.linspace(-span, span, steps, device=device)
        images = model.decode(z)
    return _strip([(f"z[{dim}]", images)], f"Traversal of latent {dim}", f"z[{dim}] from {-span:g} to {span:g}")


def rate_distortion(points: list[dict[str, float]], mark: float | None = None, mark_label: str = "") -> Figure:
    """Rate (KL) against distortion (recon), both nats per image, one labelled point per beta; error bars where
    a point carries kl_std / recon_std (over seeds); the point whose beta equals `mark` is ringed."""
    if not points:
        raise ValueError("points=[] is invalid: allowed a non-empty list of dicts with beta, recon, kl")
    for i, p in enumerate(points):
        if not {"beta", "recon", "kl"} <= set(p):
            raise ValueError(f"points[{i}]={p!r} is invalid: allowed a dict with keys beta, recon, kl")
    pts = sorted(points, key=lambda p: p["kl"])
    fig, ax = plt.subplots(figsize=(6, 4.5))
    ax.plot([p["kl"] for p in pts], [p["recon"] for p in pts], color="gray", lw=1, zorder=1)
    ax.scatter([p["kl"] for p in pts], [p["recon"] for p in pts], color="tab:blue", zorder=2)
    if any("kl_std" in p or "recon_std" in p for p in pts):
        ax.errorbar([p["kl"] for p in pts], [p["recon"] for p in pts], xerr=[p.get("kl_std", 0) for p in pts],
                    yerr=[p.get("recon_std", 0) for p in pts], fmt="none", ecolor="tab:blue", capsize=3, zorder=2)
    for p in pts:
        if mark is not None and p["beta"] == mark:
            ax.scatter([p["kl"]], [p["recon"]], s=220, facecolors="none", edgecolors="tab:red", lw=1.5, zorder=3,
                       label=mark_label or f"beta={mark:g}")
            ax.legend(fontsize="small", loc="upper right")
        ax.annotate(f"beta={p['beta']:g}", (p["kl"], p["recon"]), textcoords="offset points", xytext=(5, 5),
                    fontsize="small")
    ax.set_xlabel("rate: KL (nats per image)")
    ax.set_ylabel("distortion: recon (nats per image)")
    ax.set_title("Rate-distortion trade-off (Alemi et al., 2018)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def latent_map(model: nn.Module, images: torch.Tensor, labels: torch.Tensor | None = None,
               dims: tuple[int, int] = (0, 1),
               n: int = 15, span: float = 3.0) -> Figure:
    """A 2-D view of a latent space: left, the posterior means of `images` on latent dimensions `dims`, coloured by
    class when labels are given; right, the decoded manifold: an n x n grid of codes over [-span, span] on those two
    dimensions (every other dimension at 0, the prior's mean), top row = highest second coordinate."""
    d = model.config.model.latent_dim
    if len(dims) != 2 or dims[0] == dims[1] or not all(0 <= k < d for k in dims):
        raise ValueError(f"dims={dims!r} is invalid: allowed two different latent dimensions in 0..{d - 1}")
    if n < 2 or not span > 0:
        raise ValueError(f"n={n!r}, span={span!r} are invalid: allowed n >= 2 and span > 0")
    mu = posterior_stats(model, images)[0].cpu()[:, list(dims)].numpy()  # (N, 2)
    grid = torch.linspace(-span, span, n)
    z = torch.zeros(n * n, d)
    z[:, dims[0]] = grid.repeat(n)  # x varies fastest within a row
    z[:, dims[1]] = grid.flip(0).repeat_interleave(n)  # rows from +span (top) to -span
    with eval_mode(model), torch.no_grad():
        decoded = model.decode(z.to(model_device(model))).cpu()
    fig, (ax_map, ax_grid) = plt.subplots(1, 2, figsize=(12, 5.6))
    colors = None if labels is None else np.asarray(labels)
    sc = ax_map.scatter(mu[:, 0], mu[:, 1], c=colors, cmap="tab10" if colors is not None else None, s=6, alpha=0.7)
    if colors is not None:
        ax_map.legend(*sc.legend_elements(), title="class", fontsize="small", loc="best", markerscale=1.2)
    ax_map.add_patch(plt.Rectangle((-span, -span), 2 * span, 2 * span, fill=False, ls="--", color="grey"))
    ax_map.set_xlabel(f"z[{dims[0]}] (posterior mean)")
    ax_map.set_ylabel(f"z[{dims[1]}] (posterior mean)")
    ax_map.set_title("Test codes (dashed: the decoded square)")
    show(ax_grid, tile(decoded, n, pad=0))
    ax_grid.set_title(f"Decoded grid, z[{dims[0]}] and z[{dims[1]}] in [-{span:g}, {span:g}]")
    fig.tight_layout()
    return fig


def save_figure(fig: Figure, path: str | Path, dpi: int = 120) -> Path:
    """Save to path (creating its folder) at `dpi`, cropped tight, through vaelib.io.files' atomic writer (a link at
    path is replaced, never followed); the format comes from the suffix (.png, .pdf, .svg); returns the path."""
    path = Path(path)
    fmt = path.suffix.lstrip(".").lower() or "png"
    return atomic_write_bytes(path, lambda f: fig.savefig(f, format=fmt, dpi=dpi, bbox_inches="tight"))
