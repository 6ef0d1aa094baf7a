"""Failure-mode measurements: blur (Laplacian variance, power spectrum), where the error lies (object vs
background, centre vs border), the pull of reconstructions towards the data mean, and posterior collapse.

Images are (N, C, H, W), uint8 or float in [0, 1]; squared errors are summed over channels per pixel unless a
name says otherwise. Every function works on CPU tensors and returns CPU results.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.ticker import LogLocator
from torch import nn

from vaelib.data.shapes import render_shapes
from vaelib.evaluation.metrics import active_units, image_batch, laplacian_variance, reconstructions, test_elbo
from vaelib.evaluation.plots import show, tile
from vaelib.experiments.evidence import MIN_GAIN, learned, objective_curve
from vaelib.experiments.measures import per_seed, run_head
from vaelib.experiments.runs import Run
from vaelib.losses import constant_image_nll
from vaelib.runtime import to_float
from vaelib.training.validation import kl_per_dimension


def radial_frequency(h: int, w: int) -> torch.Tensor:
    """|f| in cycles per pixel of every 2-D FFT bin, (H, W); 0 at DC, 0.5 * sqrt(2) at the corner."""
    fy = torch.fft.fftfreq(h).view(h, 1)
    fx = torch.fft.fftfreq(w).view(1, w)
    return (fy**2 + fx**2).sqrt()


def power_spectrum(images: torch.Tensor) -> torch.Tensor:
    """|FFT2|^2 / (H W) of each image with its per-channel mean removed, summed over channels, (N, H, W)."""
    x = image_batch(images)
    x = x - x.mean(dim=(2, 3), keepdim=True)
    return (torch.fft.fft2(x).abs() ** 2).sum(1) / (x.shape[-1] * x.shape[-2])


def high_frequency_share(images: torch.Tensor, cutoff: float = 0.25) -> torch.Tensor:
    """Fraction of each image's (non-DC) spectral power above `cutoff` cycles per pixel, (N,); 0 for flat images."""
    if not 0 < cutoff < 0.5**0.5:
        raise ValueError(f"cutoff={cutoff!r} is invalid: allowed a value in (0, 0.707) cycles per pixel")
    power = power_spectrum(images)  # (N, H, W)
    high = radial_frequency(*power.shape[1:]) > cutoff
    total = power.flatten(1).sum(1)
    return torch.where(total > 0, power[:, high].sum(1) / total.clamp_min(1e-30), torch.zeros_like(total))


def radial_profile(images: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Radially averaged power spectrum: (frequencies in cycles per pixel (R,), mean power per bin (R,))."""
    power = power_spectrum(images).mean(0)  # (H, W)
    h, w = power.shape
    bins = (radial_frequency(h, w) * min(h, w)).round().long()  # bin width 1 / min(H, W) cycles per pixel
    keep = (bins > 0) & (bins <= min(h, w) // 2)  # no DC, no corners beyond Nyquist
    sums = torch.zeros(int(bins.max()) + 1, dtype=torch.float64).index_add_(0, bins[keep], power[keep].double())
    counts = torch.zeros_like(sums).index_add_(0, bins[keep], torch.ones_like(power[keep], dtype=torch.float64))
    r = torch.arange(len(sums))[counts > 0]
    return (r / min(h, w)).numpy(), (sums[counts > 0] / counts[counts > 0]).numpy()


@torch.no_grad()
def squared_error(images: torch.Tensor, recon: torch.Tensor) -> torch.Tensor:
    """Squared error per pixel, summed over channels, (N, H, W)."""
    x, r = image_batch(images), image_batch(recon)
    if x.shape != r.shape:
        raise ValueError(f"recon of shape {tuple(r.shape)} is invalid: allowed the images' shape {tuple(x.shape)}")
    return (x - r).pow(2).sum(1)


def error_images(error: torch.Tensor) -> torch.Tensor:
    """Per-pixel errors (N, H, W) as grey images (N, 1, H, W), each scaled to a maximum of 1 (for display)."""
    return (error / error.amax((1, 2), keepdim=True).clamp_min(1e-12))[:, None]


def object_mask(factors: torch.Tensor, image_size: int) -> torch.Tensor:
    """Pixels covered by the shape, bool (N, H, W): the same factors rendered on a plain (black) background."""
    return render_shapes(torch.as_tensor(factors), image_size, "plain").amax(1) > 0


def border_mask(image_size: int, width: int) -> torch.Tensor:
    """Pixels within `width` of the image edge, bool (H, W)."""
    if not 0 < 2 * width < image_size:
        raise ValueError(f"width={width!r} is invalid: allowed 1 <= width < {image_size / 2:g}")
    m = torch.ones(image_size, image_size, dtype=torch.bool)
    m[width:-width, width:-width] = False
    return m


def region_errors(error: torch.Tensor, mask: torch.Tensor) -> dict[str, float]:
    """Mean per-pixel error inside and outside a mask ((N, H, W) or (H, W), broadcast), and their ratio."""
    mask = mask.expand_as(error)
    if mask.all() or not mask.any():
        raise ValueError("mask is invalid: allowed a mask with pixels both inside and outside")
    inside, outside = error[mask].mean().item(), error[~mask].mean().item()
    return {"inside": inside, "outside": outside, "ratio": inside / outside if outside > 0 else float("inf"),
            "share_inside": error[mask].sum().item() / max(error.sum().item(), 1e-30)}


def explained(error: torch.Tensor, baseline: torch.Tensor, mask: torch.Tensor) -> dict[str, float]:
    """1 - error / baseline error (e.g. of the data mean) inside and outside a mask: 0 = no better than the baseline."""
    e, b = region_errors(error, mask), region_errors(baseline, mask)
    return {"inside": 1 - e["inside"] / b["inside"], "outside": 1 - e["outside"] / b["outside"]}


def distance_to_mean(images: torch.Tensor, recon: torch.Tensor, mean: torch.Tensor) -> dict[str, float]:
    """How far reconstructions moved towards the data mean (C, H, W); squared L2 per image, averaged.

    pull = 1 - |recon - mean|^2 / |x - mean|^2 (0: as spread out as the data, 1: every recon is the mean);
    closer_to_mean: the fraction of reconstructions nearer the data mean than their own input.
    """
    x, r, m = image_batch(images), image_batch(recon), to_float(mean.detach().cpu())
    d_rm, d_rx, d_xm = ((a - b).pow(2).flatten(1).sum(1) for a, b in ((r, m), (r, x), (x, m)))  # (N,) each
    return {"recon_to_mean": d_rm.mean().item(), "recon_to_input": d_rx.mean().item(),
            "input_to_mean": d_xm.mean().item(), "pull": 1 - d_rm.mean().item() / d_xm.mean().item(),
            "closer_to_mean": (d_rm < d_rx).double().mean().item()}


def collapse_summary(model: nn.Module, images: torch.Tensor, threshold: float = 0.01) -> dict[str, Any]:
    """KL per dimension (nats), dimensions above `threshold` nats, active units (Burda et al., 2016)."""
    kl = kl_per_dimension(model, images)
    return {"kl_per_dim": [float(v) for v in kl], "kl_total": float(kl.sum()), "latent_dim": len(kl),
            "dims_above": int((kl > threshold).sum()), "active_units": active_units(model, images)}


def image_rows(rows: dict[str, torch.Tensor], title: str) -> Figure:
    """One labelled row of images (n, C, H, W) in [0, 1] per entry."""
    n = max(len(v) for v in rows.values())
    fig, axes = plt.subplots(len(rows), 1, figsize=(min(1.0 * n + 1.5, 14), 1.15 * len(rows) + 0.7), squeeze=False)
    for ax, (label, images) in zip(axes[:, 0], rows.items()):
        show(ax, tile(images, nrow=n))
        ax.set_ylabel(label, rotation=0, ha="right", va="center")
    axes[0, 0].set_title(title)
    fig.tight_layout()
    return fig


def spectrum_plot(profiles: dict[str, tuple[np.ndarray, np.ndarray]], cutoff: float | None = None) -> Figure:
    """Radially averaged power spectra (log) of several image sets; right: each one's power over the first's."""
    fig, (ax, ax_ratio) = plt.subplots(1, 2, figsize=(11, 4))
    ref = next(iter(profiles.values()))[1]
    for label, (f, p) in profiles.items():
        ax.semilogy(f, p, marker=".", label=label)
        ax_ratio.semilogy(f, p / ref, marker=".", label=label)
    ax_ratio.axhline(1, color="black", lw=0.8)
    for a in (ax, ax_ratio):
        if cutoff:
            a.axvline(cutoff, color="gray", ls="--", lw=1, label=f"cutoff {cutoff:g}")
        a.set_xlabel("spatial frequency (cycles per pixel)")
        a.grid(alpha=0.3)
        a.legend(fontsize="small")
    ax.set_ylabel("mean power (log)")
    ax.set_title("Radially averaged power spectrum")
    ax_ratio.set_ylabel(f"power / power of {next(iter(profiles))} (log)")
    ax_ratio.set_title("Power kept at each frequency (1 = all of it)")
    fig.tight_layout()
    return fig


def error_maps_plot(maps: dict[str, torch.Tensor], title: str) -> Figure:
    """Mean per-pixel error maps (H, W) side by side, each on its own colour scale (its own bar): a map whose
    error is small everywhere still shows where it lies. Compare levels by the bars, patterns by the colours."""
    fig, axes = plt.subplots(1, len(maps), figsize=(3.6 * len(maps), 3.4), squeeze=False)
    for ax, (label, m) in zip(axes[0], maps.items()):
        im = ax.imshow(m.numpy(), cmap="magma", vmin=0, vmax=max(float(m.max()), 1e-12))
        ax.set_title(label, fontsize="small")
        ax.set_xticks([])
        ax.set_yticks([])
        fig.colorbar(im, ax=ax, shrink=0.8)
    fig.suptitle(f"{title} (each panel on its own scale)")
    return fig


def kl_bars(kls: dict[str, np.ndarray], threshold: float = 0.01) -> Figure:
    """KL per latent dimension (sorted, largest first) for several runs, one panel each, on a shared log axis with a
    tick at every decade. A dimension below threshold / 100 (nothing left to see on a log axis) is drawn at that
    floor, and the panel's title counts the dimensions above the threshold."""
    floor = threshold / 100
    top = max([float(np.max(k)) for k in kls.values() if len(k)] + [threshold * 10])
    fig, axes = plt.subplots(1, len(kls), figsize=(4.2 * len(kls), 3.4), sharey=True, squeeze=False)
    for ax, (label, kl) in zip(axes[0], kls.items()):
        kl = np.sort(np.asarray(kl, dtype=float))[::-1]
        ax.bar(np.arange(len(kl)), np.maximum(kl, floor), color=np.where(kl > threshold, "tab:blue", "tab:gray"))
        ax.axhline(threshold, color="tab:red", ls="--", lw=1, label=f"{threshold:g} nats")
        ax.set_yscale("log")
        ax.set_ylim(floor, top * 2)
        ax.yaxis.set_major_locator(LogLocator(base=10, numticks=12))
        ax.grid(axis="y", alpha=0.3)
        ax.set_title(f"{label}\n{int((kl > threshold).sum())}/{len(kl)} dims > {threshold:g} nats", fontsize="small")
        ax.set_xlabel("latent dimension (sorted)")
    axes[0, 0].set_ylabel(f"KL (nats per image; floor {floor:g})")
    axes[0, 0].legend(fontsize="small", loc="upper right")
    fig.tight_layout()
    return fig


# --- measurements per seed: the rows the claims of notebook 04 are judged on ----------------------------

def seed_measures(runs: dict[str, list[Run]], measure: Callable[[Run], dict[str, float]], tol: float = 0.05
                  ) -> dict[str, list[dict[str, Any]]]:
    """{label: [row per seed]}: each finished run's `measure(run)` with its seed and whether it converged
    (experiments.measures.run_head); a failed run's row has no measurements, so its estimates show the gap."""
    return per_seed(runs, lambda run: run_head(run, tol) if run.failed else {**run_head(run, tol), **measure(run)})


def blur_measure(test_images: torch.Tensor, cutoff: float) -> Callable[[Run], dict[str, float]]:
    """Per run: the share of the test images' high-frequency power its reconstructions keep (1 = all), and
    the Laplacian-variance sharpness relative to the test images'."""
    hf_data = high_frequency_share(test_images, cutoff).mean().item()
    lap_data = laplacian_variance(test_images).mean().item()

    def measure(run: Run) -> dict[str, float]:
        r = reconstructions(run.model, test_images)
        return {"hf_kept": high_frequency_share(r, cutoff).mean().item() / hf_data,
                "sharpness": laplacian_variance(r).mean().item() / lap_data}
    return measure


def rate_measure(test_images: torch.Tensor) -> Callable[[Run], dict[str, float]]:
    """Per run: its rate, the KL term of the negative ELBO on the test split (nats per image)."""
    return lambda run: {"rate": test_elbo(run.model, test_images, run.config)["kl"]}


def at_matched_rate(rows: dict[str, list[dict[str, Any]]], low: str, high: str, at: str, key: str = "hf_kept",
                    rate: str = "rate") -> tuple[list[dict[str, Any]], str]:
    """Per seed, `key` of the family of settings `low` and `high` (e.g. MSE at two betas) read off at the rate of
    setting `at` (e.g. a Bernoulli run), by linear interpolation in the rate between the two: rows for
    evidence.estimate (seed; converged when both runs did) and why no comparison is possible, or "".

    A seed whose `at` rate lies outside the range of the two settings' rates gets no value (no extrapolation): the
    reason names it."""
    out, outside = [], []
    for a, b, c in zip(rows[low], rows[high], rows[at]):
        head = {"seed": a["seed"], "converged": a["converged"] and b["converged"],
                "state": a["state"] if not a["converged"] else b["state"], "failure": a["failure"] or b["failure"]}
        try:
            (ra, va), (rb, vb), rc = (a[rate], a[key]), (b[rate], b[key]), c[rate]
        except KeyError:
            out.append(head)
            continue
        if not min(ra, rb) <= rc <= max(ra, rb) or ra == rb:
            outside.append(f"seed {a['seed']}: {rc:.3g} nats outside {min(ra, rb):.3g}-{max(ra, rb):.3g}")
            out.append(head)
            continue
        out.append({**head, key: va + (vb - va) * (rc - ra) / (rb - ra), rate: rc})
    why = (f"the {at} run's rate lies outside the range of the {low} and {high} runs' rates, so no matched-rate "
           f"value exists without extrapolating ({'; '.join(outside)})") if outside else ""
    return out, why


def background_measure(test_images: torch.Tensor, obj: torch.Tensor, border: torch.Tensor,
                       mean_image: torch.Tensor) -> Callable[[Run], dict[str, float]]:
    """Per run: how much of the data-mean baseline's error it removes on the object and on the background,
    the background's share of its error, and its border/centre error ratio."""
    baseline = squared_error(test_images, mean_image.expand(len(test_images), -1, -1, -1))

    def measure(run: Run) -> dict[str, float]:
        e = squared_error(test_images, reconstructions(run.model, test_images))
        o, ex = region_errors(e, obj), explained(e, baseline, obj)
        return {"explained_object": ex["inside"], "explained_background": ex["outside"],
                "background_share": 1 - o["share_inside"], "object/background": o["ratio"],
                "border/centre": region_errors(e, border)["ratio"]}
    return measure


def mean_pull_measure(test_images: torch.Tensor, mean_image: torch.Tensor) -> Callable[[Run], dict[str, float]]:
    """Per run: distance_to_mean of its reconstructions (pull, closer_to_mean, ...)."""
    return lambda run: distance_to_mean(test_images, reconstructions(run.model, test_images), mean_image)


def collapse_measure(test_images: torch.Tensor, mean_image: torch.Tensor | None = None
                     ) -> Callable[[Run], dict[str, float]]:
    """Per run: total KL, dimensions above 0.01 nats and active units on the test split, and its test
    reconstruction term (nats per image), with which `objective_at` prices the run at any beta. Given the data-mean
    image, also `explained`: the share of that image's squared error the reconstructions remove (0 = the decoder
    uses nothing of the code, as a model that ignores its input; 1 = perfect), which no KL floor guarantees."""
    baseline = None if mean_image is None else squared_error(
        test_images, mean_image.expand(len(test_images), -1, -1, -1)).sum().item()

    def measure(run: Run) -> dict[str, float]:
        s = collapse_summary(run.model, test_images)
        recon = test_elbo(run.model, test_images, run.config)["recon"]
        out = {"kl_total": s["kl_total"], "dims_above_0.01": s["dims_above"], "active_units": s["active_units"],
               "test_recon": recon}
        if baseline is not None:
            error = squared_error(test_images, reconstructions(run.model, test_images)).sum().item()
            out["explained"] = 1 - error / baseline
        return out
    return measure


def objective_at(rows: list[dict[str, Any]], beta: float) -> list[float]:
    """Each seed's test objective recon + beta * KL (nats per image, true KL: no free bits) from collapse_measure
    rows: what that run would score on the objective of a static beta (nan for a failed run)."""
    return [r["test_recon"] + beta * r["kl_total"] if "test_recon" in r else float("nan") for r in rows]


SCAN_SEED_OFFSET = 100  # the early-collapse scan's seed is the study's first seed + this: no plan adds it (at most 30)
COLLAPSED_BELOW = 0.05  # a run that removes less than this share of the data-mean image's error has collapsed


def scan_betas(start: float, step: float, stop: float, most: int = 20) -> list[float]:
    """The early-collapse scan's ladder: start, start + step, ... below stop, then stop (at most `most` rungs)."""
    if not 0 < start <= stop:
        raise ValueError(f"scan_from={start!r} is invalid: allowed 0 < scan_from <= collapse_beta ({stop!r})")
    n = math.ceil((stop - start) / step - 1e-9) if step > 0 else math.inf  # rungs below stop
    if n + 1 > most:
        raise ValueError(f"scan_step={step!r} is invalid: allowed a value > 0 that climbs from {start!r} to "
                         f"{stop!r} in at most {most} runs")
    return [*(round(start + i * step, 10) for i in range(n)), stop]


def collapsed(row: dict[str, Any], below: float = COLLAPSED_BELOW) -> bool:
    """Whether a collapse_measure row's run has collapsed: it removes less than `below` of the data-mean image's
    error (`explained`). A failed run (no `explained`) has not: where it would have collapsed is unknown."""
    return row.get("explained", math.nan) < below


def early_collapse_scan(betas: Sequence[float], row_at: Callable[[float, str], dict[str, Any]],
                        ignore: float, *, annealed: Sequence[str], below: float = COLLAPSED_BELOW
                        ) -> tuple[list[dict[str, Any]], float | None, str]:
    """Where an annealing schedule could prevent a collapse: up the ladder `betas`, `row_at(beta, "static")` trains
    (or loads) a static run at that beta and returns its collapse_measure row (with `explained`, `test_recon`,
    `kl_total`; a failed run's row has none). The scan stops at the first beta whose static run has collapsed
    (`collapsed`), and only there trains each annealed run too (`row_at(beta, label)` for each label of
    `annealed`): the runs at lower betas cannot change where it stops. That beta is the test point when any run
    there beats the model that ignores its input (test objective `ignore`, KL 0) on that beta's objective
    (evidence.learned: by MIN_GAIN of it): the collapse is then not the objective's optimum, so a schedule has
    something to prevent and something to gain. Where none beats it, nothing here shows that the collapse is not the
    optimum, and the optimum only moves towards the collapse at a higher beta (the best objective any model reaches
    rises with beta; the ignoring model's stays put). A static run that failed (no measurements) stops the scan:
    where it would have collapsed is unknown.

    Returns the table (one row per beta and run), the beta to test at or None, and why there is none ("" if one)."""
    if isinstance(annealed, str) or not annealed or "static" in annealed or len(set(annealed)) < len(annealed):
        raise ValueError(f"annealed={list(annealed)!r} is invalid: allowed distinct labels other than 'static', "
                         "at least one")
    table: list[dict[str, Any]] = []

    def measured(beta: float, label: str) -> dict[str, Any]:
        row = row_at(beta, label)
        price = objective_at([row], beta)[0]
        table.append({"beta": beta, "run": label, "failed": "explained" not in row,
                      "explained": row.get("explained", math.nan), "kl_total": row.get("kl_total", math.nan),
                      "objective": price, "collapsed": collapsed(row, below), "beats ignoring": learned(price, ignore)})
        return table[-1]

    ladder = ", ".join(f"{b:g}" for b in betas)
    for beta in betas:
        static = measured(beta, "static")
        if static["failed"]:
            return table, None, (f"the static run of the scan ({ladder}; seed of its own) at beta {beta:g} failed, "
                                 "so where a static run first collapses is unknown")
        if not static["collapsed"]:
            continue
        runs = [static, *(measured(beta, label) for label in annealed)]
        if any(r["beats ignoring"] for r in runs):
            return table, beta, ""
        first = " (the scan's first beta: no lower one was tried)" if beta == betas[0] else ""
        scored = ", ".join(f"the {r['run']} run {'failed' if r['failed'] else format(r['objective'], '.1f')}"
                           for r in runs)
        return table, None, (
            f"the lowest beta of the scan ({ladder}; seed of its own) at which the static run collapses is "
            f"{beta:g}{first}, and there no run beats the model that ignores its input on that beta's objective by "
            f"{MIN_GAIN:.0%} ({ignore:.1f} nats per image; {scored}): "
            "nothing here shows that the collapse is not the optimum there, and at a higher beta the optimum only "
            "moves towards it, so the scan found no beta where a schedule has a collapse to prevent that its "
            "objective does not prefer")
    return table, None, (f"no static run of the scan ({ladder}; seed of its own) collapsed, so there is no "
                         "collapse here for a schedule to prevent")


def no_collapse_shown(rows: Sequence[dict[str, Any]], beta: float, below: float = COLLAPSED_BELOW) -> str:
    """Why a schedule has no collapse to prevent on the study's seeds at the scan's test point `beta`, or "" where
    it has one: the static run's collapse_measure rows (one per seed) must show a collapse on more than half of the
    seeds (`collapsed`); a failed run shows none. The reason names the seeds and their `explained`."""
    fell = [r["seed"] for r in rows if collapsed(r, below)]
    if 2 * len(fell) > len(rows):
        return ""
    seeds = [r["seed"] for r in rows]
    failed = [r["seed"] for r in rows if "explained" not in r]
    on = f"only on seeds {fell}" if fell else "on none"
    shares = ", ".join(f"{r.get('explained', math.nan):.3f}" for r in rows)
    return (f"the static run collapsed at beta {beta:g} on the scan's seed, but {on} of the study's seeds {seeds} "
            f"(explained {shares}; collapsed below {below:g})" + (f", and failed on {failed}" if failed else "")
            + ": no collapse is shown on most of them for a schedule to prevent")


def early_objective(run: Run, epoch: int) -> dict[str, float]:
    """The validation objective (at the run's final beta) after `epoch` epochs and at the end: how fast it fell."""
    curve = objective_curve(run.history)
    if not 1 <= epoch <= len(curve):
        raise ValueError(f"epoch={epoch!r} is invalid: allowed 1..{len(curve)} (the run's finished epochs)")
    return {f"val_objective_epoch_{epoch}": float(curve[epoch - 1]), "val_objective_final": float(curve[-1])}


@torch.no_grad()
def mean_image_nll(test_images: torch.Tensor, mean_image: torch.Tensor, recon: str = "mse") -> float:
    """The test negative ELBO (nats per image) of the model that ignores its input: it decodes every image to the
    data-mean image and its posterior is the prior (KL 0). Any VAE can reach it, so a run that ends above it has
    learned nothing from the images. With recon='mse' it is data.data_mean_baseline for the mean passed in, in the
    likelihood the run was trained with; fit records the same number on the validation split
    (train.ignore_input_terms)."""
    return constant_image_nll(mean_image, test_images, recon)


def mark_derailed(rows: dict[str, list[dict[str, Any]]], baseline: float) -> dict[str, list[dict[str, Any]]]:
    """Adds `derailed` to every seed's row (from measures.summarize): 1.0 when the run hit a non-finite step or its
    test negative ELBO does not beat `baseline` (mean_image_nll) by evidence.MIN_GAIN of it, else 0.0."""
    def derailed(r: dict[str, Any]) -> float:
        total = r.get("test_total", float("nan"))
        return float(bool(r.get("nonfinite_steps")) or not learned(total, baseline))  # nan (failed): derailed

    return {label: [{**r, "derailed": derailed(r)} for r in rs] for label, rs in rows.items()}
