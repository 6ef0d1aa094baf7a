"""From runs to findings: the convergence rule, seeds aggregated with their uncertainty, the verdict rule, and
claims written from the numbers.

The rules, as documented in docs/findings.md:
- **Converged**: the learning curve has flattened: the last 20% of the run's epochs (at least one) brought less
  than `tol` (default 5%) of the run's whole improvement of the validation objective at its final beta
  (val_recon + beta_final * val_kl, nats per image; improvement from the first epoch to the best), and the run
  finished without a non-finite step and does not end well above its best (diverging). The window is at least
  `min_window` epochs (a whole cycle for cyclic annealing, whose model moves with beta within a cycle), and the
  value before it is the best before it, not one noisy epoch. A run of fewer than 5 epochs is not judged
  converged. The relative
  improvement over the last 20% (`improvement`) is reported beside it, so a reader can apply a stricter rule.
- **Verdict** on a claim "setting A gives a higher (or lower) metric than setting B": with n >= 2 seeds
  each, d = mean(A) - mean(B) and its standard error se = sqrt(var(A)/n_A + var(B)/n_B) (sample variances).
  `supported` when d points the claimed way and |d| > 2 se, `contradicted` when it points the other way
  and |d| > 2 se, `inconclusive` otherwise. A claim of "no better" (A does not beat B) is `contradicted`
  only when A beats B by more than 2 se, else `supported`. Fewer than 2 seeds in a setting gives
  `inconclusive`. Any unconverged or failed run in either group makes the verdict `not converged`, whatever the
  numbers say, except for metrics that do not depend on a run having settled: those of the first steps (early
  noise), and whether a run derailed, which is the point of a run that never converges.
  When every seed gives the same value (se = 0), any difference counts as separated.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from .history import History

VERDICTS = ("supported", "contradicted", "inconclusive", "not converged")
DIRECTIONS = ("higher", "lower", "no better")
MIN_EPOCHS = 5


def objective_curve(history: History) -> np.ndarray:
    """Per epoch, the validation objective at the run's final beta: val_recon + beta_final * val_kl, with the KL
    term as training optimised it (val_kl_used, floored per dimension) for a run with free bits."""
    epochs = history.epochs
    if not epochs:
        return np.array([])
    beta = epochs[-1]["beta"]
    return np.array([e["val_recon"] + beta * e.get("val_kl_used", e["val_kl"]) for e in epochs], dtype=float)


def convergence(history: History, tol: float = 0.05, window: float = 0.2, min_window: int = 1
                ) -> dict[str, Any]:
    """{'converged': bool, 'share': the last `window` of epochs' share of the whole improvement,
    'improvement': their improvement relative to the objective's value, 'epochs': n}."""
    if not 0 < tol < 1 or not 0 < window < 1:
        raise ValueError(f"tol={tol!r}, window={window!r} are invalid: allowed values in (0, 1)")
    curve = objective_curve(history)
    n = len(curve)
    if n < MIN_EPOCHS or not np.isfinite(curve).all():
        return {"converged": False, "share": math.nan, "improvement": math.nan, "epochs": n}
    w = min(n - 1, max(1, min_window, round(window * n)))
    before, best_after, best = curve[:n - w].min(), curve[n - w:].min(), curve.min()  # best so far: not one noisy epoch
    last = max(0.0, float(before - best_after))
    whole = float(curve[0] - best)
    share = last / whole if whole > 0 else 0.0  # a curve that never improved is flat: nothing left to gain
    drifting = curve[-1] - best > tol * max(whole, abs(best))  # ends well above its best: diverging, not settled
    return {"converged": bool(share < tol and not drifting), "share": share, "improvement": last / abs(before),
            "epochs": n}


@dataclass(frozen=True)
class Estimate:
    """A metric over seeds: mean, sample standard deviation, n, and how many of the runs converged."""

    values: tuple[float, ...]
    converged: int  # runs that converged (and did not fail)

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return float(np.mean(self.values)) if self.values else math.nan

    @property
    def std(self) -> float:
        return float(np.std(self.values, ddof=1)) if self.n >= 2 else math.nan

    @property
    def all_converged(self) -> bool:
        return self.n > 0 and self.converged == self.n

    def __str__(self) -> str:
        """'mean ± std' over the seeds with a finite value; seeds without one (failed runs) are counted, not
        shown as nan."""
        missing = self.failed
        return self._value() + (f" ({missing} of {self.n} runs failed)" if missing and self.n > missing else "")

    @property
    def failed(self) -> int:
        """Runs without a finite value (failed runs)."""
        return sum(not math.isfinite(v) for v in self.values)

    def _value(self) -> str:
        finite = Estimate(tuple(v for v in self.values if math.isfinite(v)), 0)
        if not finite.n:
            return f"no value ({self.failed} of {self.n} runs failed)" if self.n else "-"
        return f"{finite.mean:.4g} ± {finite.std:.2g}" if finite.n >= 2 else f"{finite.mean:.4g}"

    def describe(self) -> str:
        """The value with its seeds, failures and converged runs in one bracket, as the claims table shows it."""
        failed = f", {self.failed} failed" if self.failed and self.failed < self.n else ""
        return f"{self._value()} ({self.n} seeds{failed}, {self.converged} converged)"


def estimate(rows: Sequence[dict[str, Any]], key: str) -> Estimate:
    """The Estimate of `key` over per-seed rows with a boolean `converged`; a row without `key` (a failed run,
    which never counts as converged) contributes nan, so the mean says so too."""
    return Estimate(tuple(float(r.get(key, math.nan)) for r in rows), sum(bool(r.get("converged")) for r in rows))


def verdict(a: Estimate, b: Estimate, direction: str, needs_convergence: bool = True) -> dict[str, Any]:
    """The verdict on 'A is `direction` than B' (see the module docstring), with d, se and |d|/se.

    needs_convergence=False for metrics that do not wait for a run to settle (the noise of the first steps,
    whether a run derailed): then an unconverged or failed run still counts (its value must be finite).
    """
    if direction not in DIRECTIONS:
        raise ValueError(f"direction={direction!r} is invalid: allowed {', '.join(DIRECTIONS)}")
    d = a.mean - b.mean
    se = math.sqrt(a.std ** 2 / a.n + b.std ** 2 / b.n) if a.n >= 2 and b.n >= 2 else math.nan
    out: dict[str, Any] = {"difference": d, "standard_error": se,
                           "z": abs(d) / se if se and math.isfinite(se) and se > 0 else math.nan}
    if a.n < 2 or b.n < 2:
        return {**out, "verdict": "inconclusive"}
    if needs_convergence and not (a.all_converged and b.all_converged):
        return {**out, "verdict": "not converged"}
    if not math.isfinite(se) or not math.isfinite(d):
        return {**out, "verdict": "inconclusive"}
    separated = abs(d) > 2 * se
    if direction == "no better":  # A is lower-is-better here: A beats B when it is lower by more than 2 se
        return {**out, "verdict": "contradicted" if separated and d < 0 else "supported"}
    claimed = d > 0 if direction == "higher" else d < 0
    return {**out, "verdict": ("supported" if claimed else "contradicted") if separated else "inconclusive"}


@dataclass
class Claim:
    """One claim of a source report, put to the test: what, where, measured how, our numbers, the verdict."""

    claim: str  # in our own words
    source: str  # which report, which section
    metric: str  # what was measured, with units
    values: list[dict[str, str]]  # [A, B], each {"setting": name, "estimate": "mean ± std (n seeds, k converged)"}
    verdict: str
    detail: dict[str, Any] = field(default_factory=dict)  # difference, standard error, z

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def compare(claim: str, source: str, metric: str, a: tuple[str, Estimate], b: tuple[str, Estimate],
            direction: str, needs_convergence: bool = True) -> Claim:
    """A Claim on 'A is `direction` than B in `metric`' from two Estimates (A first, then B); see verdict for
    needs_convergence."""
    if a[0] == b[0]:
        raise ValueError(f"settings {a[0]!r} and {b[0]!r} are invalid: allowed two different settings")
    v = verdict(a[1], b[1], direction, needs_convergence)
    values = [{"setting": name, "estimate": e.describe()} for name, e in (a, b)]
    runs = {name: {"seeds": e.n, "converged": e.converged, "failed": e.failed} for name, e in (a, b)}
    return Claim(claim, source, metric, values, v["verdict"],
                 {**{k: v[k] for k in ("difference", "standard_error", "z")}, "direction": direction, "runs": runs})


def _unsettled(c: Claim) -> str:
    """Which runs kept a 'not converged' verdict from being a result: failed (non-finite) and still unconverged
    runs per setting, e.g. 'CIFAR-10 warmup: 1 of 3 failed (non-finite loss)'."""
    parts = []
    for name, r in c.detail.get("runs", {}).items():
        n, failed = r["seeds"], r["failed"]
        open_ = n - r["converged"] - failed
        what = ([f"{failed} of {n} failed (non-finite loss)"] * bool(failed)
                + [f"{open_} of {n} did not converge"] * bool(open_))
        if what:
            parts.append(f"{name}: {', '.join(what)}")
    return "; ".join(parts)


def finding(c: Claim) -> str:
    """One Markdown sentence that states the claim's result from its numbers (never typed by hand)."""
    (name_a, val_a), (name_b, val_b) = ((v["setting"], v["estimate"]) for v in c.values[:2])
    d, se = c.detail.get("difference", math.nan), c.detail.get("standard_error", math.nan)
    gap = f"difference {d:+.3g} ± {se:.2g} (1 standard error)" if math.isfinite(se) else f"difference {d:+.3g}"
    why = {"supported": "larger than twice its standard error, in the claimed direction",
           "contradicted": "larger than twice its standard error, against the claim",
           "inconclusive": "within twice its standard error: these seeds cannot tell the settings apart"
           if math.isfinite(se) else "fewer than 2 seeds per setting: no standard error, so no verdict",
           "not converged": f"but not every run converged ({_unsettled(c) or 'see the table'}), so this is not a "
                            "result"}[c.verdict]
    if c.verdict in ("supported", "contradicted") and c.detail.get("direction") == "no better":
        if c.verdict == "contradicted":
            why = f"{name_a} beats {name_b} by more than twice the standard error"
        elif math.isfinite(se) and d > 2 * se:
            why = f"{name_a} does not beat {name_b}: it is worse by more than twice the standard error"
        else:
            why = f"{name_a} does not beat {name_b} by more than twice the standard error"
    return (f"**{c.verdict}** — {c.claim} ({c.source}). {c.metric}: {name_a} {val_a}, {name_b} {val_b}; "
            f"{gap}, {why}.")


def claims_table(claims: Sequence[Claim]) -> str:
    """The claims as a Markdown table: claim, source, metric, values, verdict."""
    lines = ["| claim | source | metric | our numbers | verdict |", "|---|---|---|---|---|"]
    for c in claims:
        values = "; ".join(f"{v['setting']}: {v['estimate']}" for v in c.values)
        lines.append(f"| {c.claim} | {c.source} | {c.metric} | {values} | **{c.verdict}** |")
    return "\n".join(lines)
