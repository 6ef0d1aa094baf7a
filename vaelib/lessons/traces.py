"""Curves of runs per optimiser step, every seed drawn (thin lines and their median), for lessons 03 and 04 and
their studies: trace_plot, curves_with_beta; sample_rows, prior samples of each run from the same codes; and
run_rows, the one-seed table a lesson prints under its figures."""

from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure

from vaelib.evaluation import metrics
from vaelib.evaluation.plots import split_example_indices
from vaelib.experiments.measures import clipped_share, trace
from vaelib.experiments.runs import Run


def _seed_lines(ax, seeds: list[Run], key: str, color: Any, label: str) -> None:
    """One thin line per seed and a thick median over the seeds still running at each step (one seed: one line);
    a failed run ends in a red x at the step it went non-finite."""
    ys = [trace(run, key) for run in seeds]
    for run, y in zip(seeds, ys):
        ax.plot(np.arange(len(y)), y, lw=0.6 if len(seeds) > 1 else 0.8, alpha=0.35 if len(seeds) > 1 else 0.85,
                color=color, label=None if len(seeds) > 1 else label)
        if run.failed:
            ax.plot([run.failed_step or len(y)], [y[-1] if len(y) else 1], "x", color="red", ms=10, mew=2)
    if len(seeds) > 1 and max(map(len, ys), default=0):
        grid = np.full((len(ys), max(map(len, ys))), np.nan)
        for j, y in enumerate(ys):
            grid[j, :len(y)] = y
        half = (~np.isnan(grid)).sum(0) * 2 >= len(ys)  # steps that at least half the seeds reached
        median = np.full(grid.shape[1], np.nan)
        median[half] = np.nanmedian(grid[:, half], axis=0)
        ax.plot(np.arange(grid.shape[1]), median, lw=1.4, color=color, label=f"{label} (median of {len(seeds)} seeds)")


def trace_plot(runs: dict[str, Run | list[Run]], key: str = "total", log_y: bool = True, title: str = "",
               clip_lines: bool = False) -> Figure:
    """`key` per step for every setting on one axis. A setting with several seeds (a list of runs) is drawn as
    one thin line per seed and a thick line for their median at each step (over the seeds still running there);
    a failed run ends in a red x at the step it went non-finite."""
    fig, ax = plt.subplots(figsize=(8, 4.2))
    for i, (label, seeds) in enumerate(runs.items()):
        seeds = seeds if isinstance(seeds, list) else [seeds]
        _seed_lines(ax, seeds, key, f"C{i}", label)
        if clip_lines and seeds[0].config.train.grad_clip:
            ax.axhline(seeds[0].config.train.grad_clip, color=f"C{i}", ls=":", lw=1)
    if log_y:
        ax.set_yscale("log")
    ax.set_xlabel("optimiser step")
    ax.set_ylabel(f"{key} (pre-clip)" if key == "grad_norm" else f"{key} (nats per image)")
    ax.set_title(title or f"{key} per step")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize="small")
    fig.tight_layout()
    return fig


def curves_with_beta(runs: dict[str, Run | list[Run]], key: str = "total", title: str = "", paired: bool = False
                     ) -> Figure:
    """`key` per step for every setting (solid, log axis; several seeds: thin lines and their median, as
    trace_plot) with the setting's beta on a twin axis (dotted; the same for every seed).

    paired=True colours settings two by two in one hue, light then dark (e.g. a static run, then its warmup).
    """
    fig, ax = plt.subplots(figsize=(8, 4.8))
    twin = ax.twinx()
    name = "KL" if key == "kl" else key
    runs = {label: seeds if isinstance(seeds, list) else [seeds] for label, seeds in runs.items()}
    for i, (label, seeds) in enumerate(runs.items()):
        color = plt.cm.tab20(i ^ 1) if paired else f"C{i}"
        _seed_lines(ax, seeds, key, color, f"{label}: {name}")
        twin.plot(trace(seeds[0], "beta"), lw=1.5, ls=":", color=color, label=f"{label}: beta")
    ax.set_yscale("log")
    ax.set_xlabel("optimiser step")
    ax.set_ylabel(f"{name} (nats per image, log)")
    twin.set_ylabel("beta (dotted)")
    twin.set_ylim(0, 1.1 * max(float(trace(r[0], "beta").max(initial=0)) for r in runs.values()) or 1)
    lines, labels = ax.get_legend_handles_labels()
    lines2, labels2 = twin.get_legend_handles_labels()
    ax.legend(lines + lines2, labels + labels2, fontsize="small", ncol=len(runs), loc="upper center",
              bbox_to_anchor=(0.5, -0.14))
    ax.set_title(title or f"{name} per step, with beta")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


@torch.no_grad()
def sample_rows(runs: dict[str, Run], n: int = 8, seed: int = 0) -> dict[str, torch.Tensor]:
    """n prior samples per trained run, all from the same z (fixed seed), (n, C, H, W) each."""
    out = {}
    for label, run in runs.items():
        if run.model is not None:
            gen = torch.Generator(device=next(run.model.parameters()).device).manual_seed(seed)
            out[label] = run.model.sample(n, generator=gen).cpu()
    return out


def outcome(run: Run) -> str:
    """How a run ended, in words: 'finished after N steps' or 'non-finite at step N'."""
    if run.failed:
        return f"non-finite at step {run.failed_step}" if run.failed_step is not None else "failed"
    return f"finished after {len(trace(run, 'total'))} steps"


def run_rows(runs: dict[str, Run], test_images: torch.Tensor, extra: Any = None, clipping: bool = False
             ) -> list[dict[str, Any]]:
    """One row per run of a lesson (one seed): how it ended, its share of clipped steps (clipping=True), its test
    negative ELBO at beta = 1 and its terms (nats per image), its active units, and `extra(run)`'s columns for a
    run that finished. A failed run has no test numbers ('-')."""
    rows = []
    for label, run in runs.items():
        row: dict[str, Any] = {"run": label, "outcome": outcome(run)}
        if clipping:
            row["clipped_share"] = round(clipped_share(run), 3)
        if run.model is None:
            rows.append({**row, "test_total": "-", "test_recon": "-", "test_kl": "-", "active_units": "-"})
            continue
        elbo = metrics.test_elbo(run.model, test_images, run.config)
        rows.append({**row, **{f"test_{k}": round(v, 2) for k, v in elbo.items()},
                     "active_units": metrics.active_units(run.model, test_images), **(extra(run) if extra else {})})
    return rows


def example_images(split: Any, n: int = 8, seed: int = 0) -> torch.Tensor:
    """n images of a split for a figure, the classes (or, for shapes, the shape factor) in turn from a seeded
    shuffle (evaluation.plots.split_example_indices): the splits are sorted by class, so their first n are one
    class."""
    return split.images[split_example_indices(split, n, seed)]
