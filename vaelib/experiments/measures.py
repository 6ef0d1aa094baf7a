"""Statistics of one run, read from its history: per-step traces, early noise, late spread, KL spikes, the share
of clipped steps, convergence, and the summary row a table prints for it (with its test metrics)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from vaelib.evaluation import metrics
from vaelib.experiments.evidence import DEFAULT_TOL, judge_run, objective_curve
from vaelib.experiments.runs import Run, failure


def trace(run: Run, key: str) -> np.ndarray:
    """The per-step values of `key` (total, recon, kl, beta, grad_norm, lr) of a run, (steps,)."""
    return np.array([row[key] for row in run.history.steps], dtype=float)


def loss_spread(run: Run, last: int = 100) -> float:
    """Standard deviation of the total loss over the last `last` recorded steps (nan when none)."""
    total = trace(run, "total")[-last:]
    return float(total.std()) if len(total) else math.nan


def volatility(run: Run, key: str = "total", first: int = 100, at_final_beta: bool = False) -> float:
    """Noise of the first `first` steps: std of the step-to-step change of log(key), whatever the trend.

    at_final_beta=True starts counting at the first step trained at the run's final beta (after a warmup's
    switch; step 0 for a static beta), where a KL term charged at full weight could spike. Meant for static and
    warmup schedules: for a cyclic one it is the first peak of the first cycle.
    """
    start = 0
    if at_final_beta:
        beta = trace(run, "beta")
        start = int(np.argmax(beta == beta[-1])) if len(beta) else 0
    values = trace(run, key)[start:start + first]
    values = values[np.isfinite(values) & (values > 0)]
    return float(np.diff(np.log(values)).std()) if len(values) > 2 else math.nan


def separates_at(run: Run, other: Run, rel: float = 0.01) -> int | None:
    """The first step at which `run`'s total loss differs from `other`'s by more than `rel` of `other`'s: where two
    arms that share a seed (same initial weights, batches and noise) stop being the same run. None when they stay
    within `rel` on every step both recorded (a failed run counts up to its last finite step)."""
    if not rel > 0:
        raise ValueError(f"rel={rel!r} is invalid: allowed a share > 0")
    a, b = trace(run, "total"), trace(other, "total")
    n = min(len(a), len(b))
    apart = ~(np.abs(a[:n] - b[:n]) <= rel * np.abs(b[:n]))  # a non-finite step counts as apart
    return int(np.argmax(apart)) if apart.any() else None


def kl_spike(run: Run, start: int, steps: int = 50, median_of: int = 10) -> float:
    """The largest spike of the KL term in steps [start, start + steps): the largest ratio of a step's KL to the
    median KL of the (up to) `median_of` steps before it (1 = no step rose above its recent level). Measured on the
    same steps in every run it compares, e.g. the steps after a warmup's switch in both the warmup and a static run.
    Step 0 has nothing before it, so a window starting there starts at step 1."""
    if start < 0 or steps < 1 or median_of < 1:
        raise ValueError(f"start={start!r}, steps={steps!r}, median_of={median_of!r} are invalid: allowed start >= 0, "
                         "steps >= 1, median_of >= 1")
    kl, start = trace(run, "kl"), max(start, 1)
    if len(kl) < start + steps or not np.isfinite(kl[:start + steps]).all():
        return math.nan  # the run did not reach the end of the window (it failed)
    recent = [np.median(kl[max(0, t - median_of):t]) for t in range(start, start + steps)]
    return float((kl[start:start + steps] / np.maximum(recent, 1e-12)).max())


def clipped_share(run: Run) -> float:
    """The share of a run's steps whose pre-clip gradient norm exceeded its clipping threshold (0 without one)."""
    clip, norms = run.config.train.grad_clip, trace(run, "grad_norm")
    return float((norms > clip).mean()) if clip is not None and len(norms) else 0.0


def run_convergence(run: Run, tol: float = DEFAULT_TOL) -> dict[str, Any]:
    """Whether a run converged (evidence.judge_run): the judgement stored with the run when it was trained (its
    folder's marker, Run.convergence) where that was made at this `tol`; a failed run never converged. Asked at
    another tolerance than the run was judged at, the same rule is applied to its history at that tolerance."""
    if run.failed:
        return {"converged": False, "share": math.nan, "improvement": math.nan, "state": "failed"}
    stored = run.convergence
    if stored and stored.get("tol") == tol and stored.get("epochs") == len(run.history.epochs) and "settled" in stored \
            and ("end" in stored or not stored.get("converged")):
        return stored
    return judge_run(run.history, run.config, tol)


def run_head(run: Run, tol: float = DEFAULT_TOL, conv: dict[str, Any] | None = None) -> dict[str, Any]:
    """What every per-seed row starts with: the seed, whether the run converged (run_convergence, tolerance
    `tol`; or `conv` already computed), its state, what became of it if it failed (experiments.runs.failure), and
    where its validation objective ended (evidence.plateaus compares it with its seeds'; nan where not measured)."""
    conv = run_convergence(run, tol) if conv is None else conv
    return {"seed": run.config.train.seed, "converged": bool(conv["converged"]), "state": conv["state"],
            "failure": failure(run), "objective_end": conv.get("end", math.nan)}


def per_seed(runs: dict[str, list[Run]], row: Callable[[Run], dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """{label: [row(run) for each seed's run]}: the rows the claims are judged on (evidence.estimate reads them)."""
    return {label: [row(r) for r in seeds] for label, seeds in runs.items()}


def summarize(run: Run, test: Any, last: int = 100, tol: float = DEFAULT_TOL,
              first: int | None = None) -> dict[str, Any]:
    """The table row of a run: convergence (evidence.convergence, tolerance `tol`), the noise of its first `first`
    steps (None: `last`) and the spread of its last `last` ones, and its test metrics (ELBO terms at beta = 1)."""
    conv = run_convergence(run, tol)
    first = last if first is None else first
    grad = trace(run, "grad_norm")
    final = float(trace(run, "total")[-last:].mean()) if len(grad) else math.nan
    row: dict[str, Any] = {"run": run.label, **run_head(run, tol, conv), "steps": len(grad),
                           "last_20pct_share": conv["share"],
                           "last_20pct_improvement": conv["improvement"],
                           "early_volatility": volatility(run, "total", first),
                           "early_kl_volatility": volatility(run, "kl", first),
                           "kl_volatility_at_final_beta": volatility(run, "kl", first, at_final_beta=True),
                           "failed_step": run.failed_step,
                           "nonfinite_steps": int(run.failed),  # fit stops at the first non-finite step
                           "loss_spread": loss_spread(run, last), "final_total": final,
                           "relative_spread": loss_spread(run, last) / final if len(grad) else math.nan,
                           "max_grad_norm": float(grad.max()) if len(grad) else math.nan,
                           "median_grad_norm": float(np.median(grad)) if len(grad) else math.nan}
    if run.model is None:
        return {**row, "test_total": math.nan, "test_recon": math.nan, "test_kl": math.nan, "active_units": math.nan}
    elbo = metrics.test_elbo(run.model, test.images, run.config)
    return {**row, **{f"test_{k}": v for k, v in elbo.items()},
            "active_units": metrics.active_units(run.model, test.images)}


def epochs_to(run: Run, target: float) -> float:
    """How fast a run gets somewhere: the number of epochs after which its validation objective (at its final beta,
    evidence.objective_curve) is first at or below `target`; one more than its epochs where it never gets there (a
    censored value: compare such numbers by their order, with a sign test, not by their mean); nan for a failed run
    or a target that is not a number."""
    curve = objective_curve(run.history)
    if run.failed or not math.isfinite(target) or not len(curve):
        return math.nan
    hit = np.flatnonzero(curve <= target)
    return float(hit[0] + 1) if len(hit) else float(len(curve) + 1)
