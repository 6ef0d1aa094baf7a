"""From runs to evidence: whether a run converged (and if not, why), and a metric over seeds with its robust
summary. The verdicts on claims are vaelib.experiments.claims'. The rules are written out in docs/findings.md.

- **Converged**: the run finished without a non-finite step and has at least MIN_EPOCHS epochs; it learned from
  its input (it ends at least MIN_GAIN below the validation objective of the model that ignores its input, else it
  is *derailed*); it improved after its first epoch by at least MIN_GAIN of the objective (else it is *frozen*);
  it does not end well above its best (*drifting*); and the last 20% of its epochs brought less than `tol` of its
  improvement after the first recorded drop (the value after epoch 2 onwards), else it is *still improving*.
  The objective is val_recon + beta_final * val_kl (val_kl_used with free bits), nats per image.
- **Plateau**: among the seeds of one setting, a run that converged by that rule but ends more than PLATEAU_SHARE
  (15%) above the best seed's end has settled where its setting need not: it is counted as not converged
  (`estimate`, `plateaus`), because one flat curve cannot tell a plateau from the end of training and the seeds
  beside it can.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vaelib.config import Config
from vaelib.training.history import History

MIN_EPOCHS = 5  # a shorter run is never judged converged (the tiny budget is for tests)
MIN_GAIN = 0.01  # a run must beat the ignore-the-input model, and improve after epoch 1, by this share
PLATEAU_SHARE = 0.15  # a converged run ending this share above its setting's best seed is on a plateau: converged
#   seeds of one setting end within 12% of each other in the committed reports (most within 6%), runs stuck
#   early 19-37% above (docs/findings.md, "A plateau is not convergence")
STATES = ("converged", "failed", "too short", "derailed", "frozen", "drifting", "still improving")


def _objective(row: dict, history: History, beta: float) -> float:
    """A row's validation objective at beta: the family's other terms plus beta times its rate as optimised
    (val_kl_used, floored per dimension, for a run with free bits); a family without a rate has no beta term."""
    rate = history.rate
    rest = sum(row[f"val_{t}"] for t in history.terms if t != rate)
    return rest + beta * row.get(f"val_{rate}_used", row[f"val_{rate}"]) if rate is not None else rest


def objective_curve(history: History) -> np.ndarray:
    """Per epoch, the validation objective at the run's final beta: for a VAE val_recon + beta_final * val_kl, with
    the KL term as training optimised it (val_kl_used, floored per dimension) for a run with free bits."""
    epochs = history.epochs
    if not epochs:
        return np.array([])
    beta = epochs[-1]["beta"]
    return np.array([_objective(e, history, beta) for e in epochs], dtype=float)


def ignore_input_objective(history: History) -> float:
    """The validation objective, at the run's final beta, of the model that ignores its input: it decodes every
    image to the training mean and its posterior is the prior (KL 0, so free bits charge free_bits per dimension).
    fit records its terms in history.options['ignore_input']; nan for a history without them."""
    terms = history.options.get("ignore_input")
    if not terms or not history.epochs:
        return math.nan
    rate = history.rate
    return float(terms["val_recon"] + history.epochs[-1]["beta"] * terms[f"val_{rate}_used"] if rate is not None
                 else terms["val_recon"])


def learned(value: float, baseline: float) -> bool:
    """Whether a loss (lower is better) beats the ignore-the-input baseline by at least MIN_GAIN of it; True when
    there is no baseline to compare with (nan), False for a non-finite value."""
    if not math.isfinite(value):
        return False
    return not math.isfinite(baseline) or value < baseline - MIN_GAIN * abs(baseline)


def convergence(history: History, tol: float = 0.05, window: float = 0.2, min_window: int = 1,
                baseline: float | None = None, settled: int = 0) -> dict[str, Any]:
    """{'converged': bool, 'state': one of STATES, 'share': the last `window` of epochs' share of the improvement
    after the first recorded drop, 'improvement': their gain relative to the objective, 'epochs': n}.

    baseline: the ignore-the-input objective; None reads it from the history (ignore_input_objective).
    settled: the first epoch from which every step ran at the final beta (settled_epoch): a run converges only once
    its whole window lies in those epochs (else it is still improving), so neither a ramp nor the recovery from it
    is read as convergence."""
    if not 0 < tol < 1 or not 0 < window < 1:
        raise ValueError(f"tol={tol!r}, window={window!r} are invalid: allowed values in (0, 1)")
    curve = objective_curve(history)
    n = len(curve)
    out: dict[str, Any] = {"converged": False, "share": math.nan, "improvement": math.nan, "epochs": n}
    if not np.isfinite(curve).all():
        return {**out, "state": "failed"}
    if n < MIN_EPOCHS:
        return {**out, "state": "too short"}
    w = min(n - 2, max(1, min_window, round(window * n)))
    before, best_after, best = curve[:n - w].min(), curve[n - w:].min(), curve.min()  # best so far: not one noisy epoch
    last = max(0.0, float(before - best_after))
    whole = float(curve[1] - best)  # after the first recorded drop, which would make any later gain look small
    out |= {"share": last / whole if whole > 0 else 0.0, "improvement": last / abs(before),
            "end": float(curve[-1]), "gain": whole}
    baseline = ignore_input_objective(history) if baseline is None else baseline
    if not learned(float(curve[-1]), baseline):
        state = "derailed"
    elif curve[0] - curve[1:].min() < MIN_GAIN * abs(curve[0]):
        state = "frozen"
    elif curve[-1] - best > tol * max(float(curve[0] - best), abs(best)):
        state = "drifting"
    elif out["share"] >= tol or n - w < settled:  # still falling, or its window holds epochs before the final beta
        state = "still improving"
    else:
        state = "converged"
    return {**out, "converged": state == "converged", "state": state}


@dataclass(frozen=True)
class Estimate:
    """A metric over the seeds of one setting: the values (nan where a run has none), their seeds, how many runs
    converged, and what kept the others from converging ('seed 2: frozen') or finishing ('seed 1: non-finite loss
    at step 600, beta 0.1')."""

    values: tuple[float, ...]
    converged: int
    seeds: tuple[int, ...] = ()  # one per value; () when unknown (then the arm cannot be paired)
    unsettled: tuple[str, ...] = ()  # the runs that finished but did not converge, and why
    failures: tuple[str, ...] = ()  # the runs that failed (non-finite), with the step and beta
    finite_values: tuple[float, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.seeds and len(self.seeds) != len(self.values):
            raise ValueError(f"seeds {self.seeds!r} are invalid: allowed one per value ({len(self.values)})")
        object.__setattr__(self, "finite_values", tuple(v for v in self.values if math.isfinite(v)))

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        """Mean over the finite values (nan if none)."""
        return float(np.mean(self.finite_values)) if self.finite_values else math.nan

    @property
    def std(self) -> float:
        """Sample standard deviation over the finite values (nan with fewer than 2)."""
        return float(np.std(self.finite_values, ddof=1)) if len(self.finite_values) >= 2 else math.nan

    @property
    def failed(self) -> int:
        """Runs that failed, or have no finite value of the metric."""
        return max(len(self.failures), self.n - len(self.finite_values))

    @property
    def all_converged(self) -> bool:
        return self.n > 0 and self.converged == self.n

    def summary(self) -> dict[str, Any]:
        """Per-seed values and, over the finite ones, mean, median, sd, min and max; failed and converged runs."""
        v = np.array(self.finite_values)
        stat = (lambda f: float(f(v)) if len(v) else None)  # noqa: E731
        return {"seeds": list(self.seeds), "values": [x if math.isfinite(x) else None for x in self.values],
                "mean": stat(np.mean), "median": stat(np.median),
                "sd": float(v.std(ddof=1)) if len(v) >= 2 else None, "min": stat(np.min), "max": stat(np.max),
                "failed": list(self.failures) or [f"seed {s}: no value" if self.seeds else "a run without a value"
                                                  for s, x in zip(self.seeds or [None] * self.n, self.values)
                                                  if not math.isfinite(x)],
                "converged": self.converged}

    def __str__(self) -> str:
        """'mean ± sd' over the finite values; 'median m [min, max]' beside it where the tail is heavy (the sd is
        larger than the mean's size); failed runs are counted, never averaged in."""
        return self._value() + (f" ({self.failed} of {self.n} runs failed)" if self.failed else "")

    def _value(self) -> str:
        v = self.finite_values
        if not v:
            return "no value" if self.n else "-"
        text = f"{self.mean:.4g} ± {self.std:.2g}" if len(v) >= 2 else f"{v[0]:.4g}"
        if len(v) >= 2 and self.std > abs(self.mean):
            text += f", median {np.median(v):.4g} [{min(v):.4g}, {max(v):.4g}]"
        return text

    def describe(self) -> str:
        """The value with its seeds, failed and converged runs in one bracket, as the claims table shows it."""
        failed = f", {self.failed} failed" if self.failed else ""
        return f"{self._value()} ({self.n} seeds{failed}, {self.converged} converged)"


def plateaus(rows: Sequence[dict[str, Any]], share: float = PLATEAU_SHARE) -> dict[int, str]:
    """{index of a row: why} for the converged runs of one setting that ended on a plateau: more than `share` of
    the best end among its seeds above it (`objective_end`, the validation objective's last value at the final
    beta, measures.run_head). Rows without it: none."""
    ends = [(_number(r, "objective_end"), r.get("seed", "?")) for r in rows]
    finite = [(e, s) for e, s in ends if math.isfinite(e)]
    if len(finite) < 2:
        return {}
    best, best_seed = min(finite, key=lambda t: t[0])
    return {i: f"plateau (ends at {e:.4g}, {(e - best) / abs(best):.0%} above seed {best_seed}'s {best:.4g})"
            for i, (r, (e, _)) in enumerate(zip(rows, ends))
            if r.get("converged") and math.isfinite(e) and e - best > share * abs(best)}


def _number(row: dict[str, Any], key: str) -> float:
    """row[key] as a float (numpy scalars too); nan where it is missing or not a number (a failed run's row)."""
    try:
        return float(row[key])
    except (KeyError, TypeError, ValueError):
        return math.nan


def estimate(rows: Sequence[dict[str, Any]], key: str) -> Estimate:
    """The Estimate of `key` over per-seed rows (measures.summarize, failure_gallery.seed_measures): each has `seed`,
    `converged` and, where the run did not converge, `state` and `failure`; a row without `key` (a failed
    run) contributes nan. A converged run on a plateau (`plateaus`) counts as not converged, with why."""
    seeds = tuple(int(r["seed"]) for r in rows) if all("seed" in r for r in rows) else ()
    failures = tuple(f"seed {r.get('seed', '?')}: {r['failure']}" for r in rows if r.get("failure"))
    flat = plateaus(rows)
    unsettled = tuple(f"seed {r.get('seed', '?')}: {flat.get(i) or r.get('state', 'not converged')}"
                      for i, r in enumerate(rows) if (not r.get("converged") or i in flat) and not r.get("failure"))
    converged = sum(bool(r.get("converged")) for r in rows) - len(flat)
    return Estimate(tuple(_number(r, key) for r in rows), converged, seeds, unsettled, failures)


class StopWhenConverged:
    """fit's stop rule for train.stop_tol > 0 (fit(..., stop=StopWhenConverged(config))): True once
    `stopped(history, config)`."""

    def __init__(self, config: Config) -> None:
        self.config = config

    def __call__(self, history: History) -> bool:
        return stopped(history, self.config)


def stopped(history: History, config: Config) -> bool:
    """With train.stop_tol > 0: the run has converged (`judge_run` at that tol) at its schedule's final beta, after
    at least train.min_epochs epochs, so fit trains no further epoch; or it has derailed and stopped improving by
    then (it ends no better than the model that ignores its input, and its last 20% of epochs brought less than
    stop_tol of its gain): the epochs past min_epochs are for runs that learn but have not settled, and a run flat at
    the trivial model's level reports that, derailed at that length. A derailed run still falling trains on (a
    slow start can beat the trivial model later). Read from the history alone, so a resumed run stops where it
    did."""
    tol = config.train.stop_tol
    if not tol or len(history.epochs) < max(1, config.train.min_epochs):
        return False  # not asked, or not yet the least number of epochs
    if history.epochs[-1]["beta"] != config.train.schedule.beta:
        return False  # a warmup or ramp still under way
    judged = judge_run(history, config)
    return judged["converged"] or (judged["state"] == "derailed" and judged["share"] < tol)


DEFAULT_TOL = 0.05  # the tolerance a run without train.stop_tol is judged at


def settled_epoch(history: History) -> int:
    """The first epoch from which every recorded step ran at the run's final beta: 0 for a constant beta, the epoch
    after a warmup's switch or a ramp's end, and for cyclic annealing the epoch after its last cycle's ramp."""
    betas = [row["beta"] for row in history.steps]
    if not betas or not history.epochs:
        return 0
    off = [i for i, b in enumerate(betas) if b != betas[-1]]
    return off[-1] // (len(betas) // len(history.epochs)) + 1 if off else 0


def judge_run(history: History, config: Config, tol: float | None = None) -> dict[str, Any]:
    """The one convergence rule of a run: `convergence` of its history at `tol` (default: the run's own
    train.stop_tol, else DEFAULT_TOL), converged only once its window lies in epochs at the final beta
    (settled_epoch): for cyclic annealing, after its last ramp, so neither the ramp nor the recovery from it decides.
    The stop rule (`stopped`) and the run cache (experiments.cache.run_config, which stores the result in the run
    folder's marker) both call it, so a run that stopped as converged is recorded as converged; returns
    convergence's dict plus 'tol' and 'settled'."""
    tol = (config.train.stop_tol or DEFAULT_TOL) if tol is None else tol
    settled = settled_epoch(history)
    return {**convergence(history, tol, settled=settled), "tol": tol, "settled": settled}
