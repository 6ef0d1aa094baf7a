"""Claims of the source reports, judged: declared before any run, tested once, given their verdict once.

A claim is declared as a `ClaimSpec` (its statement, source, stand-in, metric, the two settings it compares, the
direction and, for an equivalence, the margin) before the numbers exist. `judge` runs the test the design allows
(experiments.stats) on the two settings' per-seed values and returns the claim's one record, a `Claim`: the test,
its estimate, interval and p, and the decision the data point to. A notebook records its claims this way and
nothing more. The verdict comes once, from `adjust`: Holm's correction across the one family of a report's claims
(reporting.report applies it to every notebook's records together), which turns each decision into a verdict where
its adjusted p is below alpha. The verdicts and the rules behind them are written out in docs/findings.md.
The claims table is one list of rows (`claim_rows`), rendered as Markdown here and as HTML by reporting.pages.

Before the runs, `plan` finds how many seeds a claim needs (the power of its t-based test against the declared
`min_effect`, or its margin, at the sd of a pilot's per-seed differences) and `with_plan` writes the plan into the
record. `judge(..., family_size=m)` does not run an exact test whose smallest attainable p cannot pass Holm's first
step, alpha / m: the claim's verdict is then "needs the full budget".
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vaelib.experiments import stats
from vaelib.experiments.evidence import Estimate, estimate

FULL_BUDGET = "needs the full budget"  # the design's smallest attainable p cannot pass Holm's first step: not run
ELSEWHERE = "other stand-in"  # the claim runs on its own stand-in's report (planning.runs_here), not in this one
VERDICTS = ("supported", "contradicted", "no effect", "untestable here", "inconclusive", "failed", "not converged",
            FULL_BUDGET, ELSEWHERE)
PENDING = "pending"  # a tested claim's verdict until adjust has seen its family
KINDS = ("higher", "lower", "similar", "no better")
EQUIVALENCE = ("similar", "no better")
RECORD_KEYS = ("claim", "source", "stand_in", "metric", "kind", "design", "test", "n", "pairs", "estimate", "ci95",
               "margin", "p", "min_p", "p_holm", "decision", "reason", "values", "verdict", "detail", "min_effect",
               "pilot_sd", "n_planned", "power")


@dataclass(frozen=True)
class ClaimSpec:
    """A claim declared before any run: "setting arms[0] is `direction` than setting arms[1] in `metric`".

    direction: 'higher' or 'lower' (a difference), 'similar' or 'no better' (lower is better; an equivalence, which
    needs the margin, in the metric's units). key: the field of the per-seed rows it reads (judge_rows).
    binary: the metric is 0/1 per seed (McNemar's exact test on seeds paired, Fisher's on unpaired arms).
    bounds: (low, high) the metric cannot pass.
    robust: heavy tails (a loss that may blow up): the exact sign test over pairs, on the median difference.
    needs_convergence=False for a metric of the first steps, or one about how runs end (derailing, collapse).
    min_effect: the smallest difference that matters, in the metric's units, declared with the claim (and
    min_effect_reason, why that size): what `plan` powers a 'higher' or 'lower' claim against. Optional, but a
    difference claim without it cannot be planned.
    """

    statement: str  # in our own words
    source: str  # which report, which section
    stand_in: str  # which data and architecture stand in for the source's
    metric: str  # what is measured, with units
    arms: tuple[str, str]  # (setting A, setting B)
    direction: str
    key: str = ""
    margin: float | None = None
    binary: bool = False
    bounds: tuple[float, float] | None = None
    robust: bool = False
    needs_convergence: bool = True
    min_effect: float | None = None
    min_effect_reason: str = ""

    def __post_init__(self) -> None:
        if self.direction not in KINDS:
            raise ValueError(f"direction={self.direction!r} is invalid: allowed {', '.join(KINDS)}")
        if len(self.arms) != 2 or self.arms[0] == self.arms[1]:
            raise ValueError(f"arms={self.arms!r} are invalid: allowed two different settings")
        if self.direction in EQUIVALENCE and self.margin is None:
            raise ValueError(f"margin={self.margin!r} is invalid for a {self.direction!r} claim: allowed a value > 0, "
                             "declared with it")
        if self.margin is not None and not _size(self.margin):
            raise ValueError(f"margin={self.margin!r} is invalid: allowed a finite value > 0, in the metric's units")
        m = self.min_effect
        if m is not None and not _size(m):
            raise ValueError(f"min_effect={m!r} is invalid: allowed None or a finite value > 0, in the metric's units")


def _size(x: Any) -> bool:
    """A margin or effect size: a finite number > 0 (not a bool)."""
    return not isinstance(x, bool) and isinstance(x, (int, float)) and math.isfinite(x) and x > 0


def _fin(x: Any) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


@dataclass
class Claim:
    """One claim put to the test: its one record (`as_dict`, RECORD_KEYS; `from_dict` reads it back). `verdict` is
    'pending' for a tested claim until `adjust` has seen the family, else the decision itself (no test ran)."""

    claim: str
    source: str
    stand_in: str
    metric: str
    kind: str
    values: tuple[dict[str, Any], ...]  # per setting: its name, Estimate.summary() and how the table shows it
    margin: float | None = None
    design: str = "paired"
    test: str | None = None
    estimate: float | None = None
    ci95: tuple[float, float] | None = None
    pairs: int | None = None
    p: float | None = None  # the p of the decision the data point to; None where no test was run
    min_p: float | None = None  # the smallest p this test could give with these seeds
    decision: str = "inconclusive"  # the verdict if p_holm < alpha (or the verdict itself, where p is None)
    reason: str = ""  # why this decision or verdict, for the sentence
    p_holm: float | None = None
    verdict: str = PENDING
    detail: dict[str, Any] = field(default_factory=dict)
    min_effect: float | None = None  # the declared smallest effect that matters (ClaimSpec.min_effect)
    pilot_sd: float | None = None  # the plan (with_plan): sd of the pilot's per-seed differences
    n_planned: int | None = None  # the seeds the plan asks for (None: more than its n_max)
    power: float | None = None  # the planned test's power at n_planned (at n_max where none reached it)

    @property
    def settings(self) -> tuple[str, str]:
        return self.values[0]["setting"], self.values[1]["setting"]

    def as_dict(self) -> dict[str, Any]:
        """The claim's record in metrics.json: exactly RECORD_KEYS, no nan (None instead)."""
        return {"claim": self.claim, "source": self.source, "stand_in": self.stand_in, "metric": self.metric,
                "kind": self.kind, "design": self.design, "test": self.test,
                "n": [len(v["values"]) for v in self.values],
                "pairs": self.pairs, "estimate": _fin(self.estimate),
                "ci95": [_fin(c) for c in self.ci95] if self.ci95 else None, "margin": self.margin,
                "p": _fin(self.p), "min_p": _fin(self.min_p), "p_holm": _fin(self.p_holm), "decision": self.decision,
                "reason": self.reason, "values": [dict(v) for v in self.values], "verdict": self.verdict,
                "detail": dict(self.detail), "min_effect": _fin(self.min_effect), "pilot_sd": _fin(self.pilot_sd),
                "n_planned": self.n_planned, "power": _fin(self.power)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Claim:
        """A record read back (a report's metrics.json; records written before `decision` existed take their
        verdict as the decision; those written before the plan's keys read None for them)."""
        return cls(d["claim"], d["source"], d["stand_in"], d["metric"], d.get("kind", "higher"),
                   tuple(d["values"]), d.get("margin"), d.get("design", "paired"), d.get("test"), d.get("estimate"),
                   tuple(d["ci95"]) if d.get("ci95") else None, d.get("pairs"), d.get("p"), d.get("min_p"),
                   d.get("decision", d.get("verdict", "inconclusive")), d.get("reason", ""), d.get("p_holm"),
                   d.get("verdict", PENDING), dict(d.get("detail") or {}), d.get("min_effect"), d.get("pilot_sd"),
                   d.get("n_planned"), d.get("power"))


def _arm(name: str, e: Estimate) -> dict[str, Any]:
    return {"setting": name, **e.summary(), "described": e.describe()}


def _pairs(a: Estimate, b: Estimate) -> tuple[np.ndarray, np.ndarray] | None:
    """Values of A and B on the seeds both have a finite value for, in seed order; None if unpaired."""
    if not a.seeds or not b.seeds:
        return None
    va, vb = dict(zip(a.seeds, a.values)), dict(zip(b.seeds, b.values))
    if not set(va) & set(vb):
        return None  # no seed in common: the arms are independent
    common = [s for s in a.seeds if s in vb and math.isfinite(va[s]) and math.isfinite(vb[s])]
    return np.array([va[s] for s in common]), np.array([vb[s] for s in common])


def _precheck(spec: ClaimSpec, a: Estimate, b: Estimate) -> tuple[str, str] | None:
    """(decision, reason) where no test can be run: failed runs, unconverged runs, too few seeds, both arms at
    the bound the claim would have to move past."""
    arms = tuple(zip(spec.arms, (a, b)))
    failures = [f"{name}: {f}" for name, e in arms for f in e.failures]
    missing = [f"{name}: {e.n - len(e.finite_values)} of {e.n} without a value" for name, e in arms
               if len(e.finite_values) < e.n]
    if spec.needs_convergence and (failures or missing):
        return "failed", "; ".join(failures or missing)
    if not spec.needs_convergence and missing:
        return "failed", "; ".join(failures or missing)
    if spec.needs_convergence and not (a.all_converged and b.all_converged):
        why = [f"{name}: {u}" for name, e in arms for u in e.unsettled]
        return "not converged", "; ".join(why) or "not every run converged"
    if min(len(a.finite_values), len(b.finite_values)) < 2:
        return "inconclusive", f"fewer than 2 seeds in {spec.arms[0] if len(a.finite_values) < 2 else spec.arms[1]}"
    if spec.bounds is not None and spec.direction in ("higher", "lower"):
        bound = spec.bounds[1] if spec.direction == "higher" else spec.bounds[0]
        if all(v == bound for v in a.finite_values + b.finite_values):
            side = "upper" if spec.direction == "higher" else "lower"
            return "untestable here", (f"both settings sit at the metric's {side} bound {bound:g} on every seed: "
                                       "there was nothing to change")
    return None


def judge(spec: ClaimSpec, a: Estimate, b: Estimate, *, untestable: str = "", family_size: int | None = None) -> Claim:
    """The test of the declared claim on the values of its two settings (A first); its verdict waits for `adjust`.

    untestable: why the design cannot test the claim at all (written from the run's numbers), or "".
    family_size: the number of tests in the report's family (m). Given, a difference claim whose exact test (sign,
    Fisher, McNemar) cannot give a p below alpha / m with these seeds (its smallest attainable p, Holm's first
    step) is not run: its decision and verdict are "needs the full budget", decided here, outside Holm's family.
    None (the default): no such check; adjust still says when the design could not decide."""
    threshold = None if family_size is None else stats.first_step_alpha(family_size)
    pairs = _pairs(a, b)
    c = Claim(spec.statement, spec.source, spec.stand_in, spec.metric, spec.direction,
              (_arm(spec.arms[0], a), _arm(spec.arms[1], b)), spec.margin,
              "paired" if pairs is not None else "unpaired", min_effect=spec.min_effect)
    pre = _precheck(spec, a, b)
    if untestable and (pre is None or pre[0] not in ("failed", "not converged")):
        pre = ("untestable here", untestable)
    if pre:
        return _untested(c, *pre)
    x, y = pairs if pairs is not None else (np.array(a.finite_values), np.array(b.finite_values))
    if pairs is not None and len(x) < 2:
        return _untested(c, "inconclusive", "fewer than 2 seeds with a value in both settings")
    _test(c, spec, x, y, a, b, threshold, family_size)
    return c


def untestable(spec: ClaimSpec, reason: str) -> Claim:
    """The record of a declared claim that no design here can test (no data, no run): its verdict is
    'untestable here', with the reason, which must say why and what tests the closest reading instead."""
    if not isinstance(reason, str) or not reason.strip():
        raise ValueError(f"reason={reason!r} is invalid: allowed a sentence saying why the claim cannot be tested here")
    return _not_run(spec, "untestable here", reason)


def elsewhere(spec: ClaimSpec, where: str) -> Claim:
    """The record of a declared claim that is not run on this data because another dataset is its stand-in
    (experiments.planning.runs_here): verdict 'other stand-in', with the reason naming where it runs. No run, no
    test, outside Holm's family: its verdict is in the report of `where`."""
    if not isinstance(where, str) or not where.strip():
        raise ValueError(f"where={where!r} is invalid: allowed the dataset the claim runs on")
    return _not_run(spec, ELSEWHERE, f"its stand-in is the embedded {where}: it runs in a {where} report "
                                      f"(vaelib report --dataset {where}), not on this data")


def _not_run(spec: ClaimSpec, verdict: str, reason: str) -> Claim:
    """The record of a declared claim with no run behind it: both settings without values, the verdict given."""
    none = Estimate((), 0)
    c = Claim(spec.statement, spec.source, spec.stand_in, spec.metric, spec.direction,
              (_arm(spec.arms[0], none), _arm(spec.arms[1], none)), spec.margin, min_effect=spec.min_effect)
    return _untested(c, verdict, reason)


def judge_rows(spec: ClaimSpec, rows: Mapping[str, Sequence[dict[str, Any]]]) -> Claim:
    """judge on per-seed rows (experiments.measures.summarize): each setting's rows, read at spec.key."""
    if not spec.key:
        raise ValueError(f"claim {spec.statement!r} declares no key: allowed the row field it reads (key=...)")
    missing = [name for name in spec.arms if name not in rows]
    if missing:
        raise ValueError(f"setting {missing[0]!r} is invalid: allowed one of {', '.join(rows)}")
    return judge(spec, estimate(rows[spec.arms[0]], spec.key), estimate(rows[spec.arms[1]], spec.key))


def _untested(c: Claim, decision: str, reason: str) -> Claim:
    c.decision = c.verdict = decision
    c.reason = reason
    return c


def _test(c: Claim, spec: ClaimSpec, x: np.ndarray, y: np.ndarray, a: Estimate, b: Estimate,
          threshold: float | None = None, family_size: int | None = None) -> None:
    """Fills test, estimate, ci95, p and decision (the verdict waits for adjust); or, where threshold (alpha / m)
    is given and the test's smallest attainable p is not below it, the untested verdict "needs the full budget"."""
    paired = c.design == "paired"
    same = np.array_equal(x, y) if paired else (np.ptp(np.concatenate([x, y])) == 0)
    if same:  # every seed the same outcome in both settings: nothing to test
        c.estimate = 0.0
        _untested(c, "no effect", "every seed gives the same value in both settings")
        return
    c.pairs = len(x)
    if spec.binary and paired:  # McNemar: the seeds whose two runs disagree decide
        t = stats.mcnemar_exact(x, y)
    elif spec.binary:  # Fisher conditions on the margins: every run with a value is counted, none paired
        t = stats.fisher(a.finite_values, b.finite_values)
    elif paired and (spec.robust or np.ptp(x - y) == 0):
        t = stats.sign_test(x, y)  # heavy tails, or every seed moved by the same amount: no variance for a t test
    elif paired:
        t = stats.paired_t(x, y)
    elif np.ptp(x) == 0 and np.ptp(y) == 0:
        _untested(c, "inconclusive", "neither setting varies over its seeds and they are not paired: no test applies")
        return
    else:
        t = stats.welch(x, y)
    c.test, c.estimate, c.ci95, c.p, c.min_p = t.test, t.estimate, t.ci95, t.p, t.min_p
    if threshold is not None and c.kind not in EQUIVALENCE and t.min_p >= threshold:
        c.test = c.p = None
        _untested(c, FULL_BUDGET, f"{_design_n(t, x, y, paired)}: the smallest p {_the_test(t.test)} can give is "
                                  f"{t.min_p:.2g}, not below {threshold:.2g} (alpha {stats.ALPHA:g} / {family_size} "
                                  "tests, Holm's first step): not run")
        return
    # A difference smaller than the smallest that matters (min_effect) is tested for equivalence within it: shown
    # inside, the claim has no effect that matters, which a plain difference test could never say.
    m = c.margin or (spec.min_effect if c.kind in ("higher", "lower") else None)
    if m and t.test in ("paired t", "Welch"):
        inside, beyond, above = stats.tost(x, y, m, paired)
        if c.kind in EQUIVALENCE or abs(t.estimate) < m:
            c.margin = m
            _equivalence(c, inside, beyond, above)
            return
    if c.kind in EQUIVALENCE:  # an exact test cannot show equivalence: no p enters the family
        c.test = c.p = c.ci95 = None
        _untested(c, "inconclusive", f"no equivalence test applies to these values (a {t.test} test would be needed)")
        return
    if t.test == "sign":  # its direction is the majority of the signs, not the median (which may be 0)
        d = x - y
        up = int((d > 0).sum()) - int((d < 0).sum())
    else:
        up = t.estimate
    claimed = up > 0 if c.kind == "higher" else up < 0
    c.decision = "supported" if claimed else "contradicted"


def _design_n(t: stats.Test, x: np.ndarray, y: np.ndarray, paired: bool) -> str:
    """The size of the design in words, as its exact test counts it: 'n = 3 pairs' (3 of them discordant)."""
    if not paired:
        return f"n = {len(x)} vs {len(y)} runs"
    moved = int((x != y).sum())
    kind = "discordant" if t.test == "McNemar exact" else "nonzero"
    return f"n = {len(x)} pairs" + (f" ({moved} {kind})" if moved != len(x) else "")


def _equivalence(c: Claim, inside: stats.Test, beyond: stats.Test, above: stats.Test) -> None:
    """'similar' (and a difference claim whose estimate lies inside its margin): TOST, supported (or 'no effect')
    when the 90% interval lies inside the margin, contradicted when it lies beyond it. 'no better' (lower is better)
    is one-sided: supported when A is shown not to beat B by the margin (the 90% interval's lower end above
    -margin), contradicted when A is shown to beat B by more than it."""
    m, d = c.margin, inside.estimate
    c.test, c.ci95 = "TOST", inside.ci95
    if c.kind == "no better":
        c.p, c.decision = (above.p, "supported") if d > -m else (beyond.p, "contradicted")
    elif abs(d) < m:
        c.p, c.decision = inside.p, ("no effect" if c.kind in ("higher", "lower") else "supported")
    else:
        c.p, c.decision = beyond.p, "contradicted"


def adjust(claims: Sequence[Claim], alpha: float = stats.ALPHA) -> list[Claim]:
    """The verdicts, once, for one family: Holm's correction across the claims that were tested gives each its
    p_holm, and its verdict is its decision where p_holm < alpha, else inconclusive (saying whether these seeds
    could have decided it at all). A tested claim whose test cannot reach Holm's first step (its smallest
    attainable p, min_p, is at least alpha / m for the m tests of the family) leaves the family first: its verdict is
    'needs the full budget', naming n and the threshold (repeated until every test left can reach its step). An
    untested claim's verdict is its decision. Returns new Claims."""
    out = [dataclasses.replace(c, detail=dict(c.detail)) for c in claims]
    tested = [c for c in out if c.p is not None and math.isfinite(c.p)]
    while True:  # a test that cannot reach its first Holm step (alpha / m) is not counted: it needs more seeds
        m = len(tested)
        unable = [c for c in tested if (c.min_p or 0.0) >= alpha / m]
        if not unable:
            break
        for c in unable:
            c.decision = FULL_BUDGET
            c.reason = (f"{c.pairs} pairs: the smallest p {_the_test(c.test)} can give is {c.min_p:.2g}, not below "
                        f"{alpha / m:.2g} (alpha {alpha:g} / {m} tested claims, Holm's first step): it needs more "
                        "seeds (the full budget)")
            c.p = None
        tested = [c for c in tested if c.p is not None]
    for c in out:
        if not any(c is t for t in tested):
            c.p_holm, c.verdict = None, c.decision
    for c, ph in zip(tested, stats.holm([c.p for c in tested])):
        c.p_holm = ph
        if ph < alpha:
            c.verdict, c.reason = c.decision, ""  # _why states a tested verdict from the test itself
        else:
            c.verdict = "inconclusive"
            c.reason = (f"the design cannot decide: with these seeds the smallest p {_the_test(c.test)} can give is "
                        f"{c.min_p:.2g}, not below {alpha:g}" if (c.min_p or 0.0) >= alpha else
                        f"Holm-adjusted p = {ph:.2g} over {len(tested)} tested claims, not below {alpha:g}")
    return out


def _the_test(name: str | None) -> str:
    """'the sign test', 'the Fisher test', 'the McNemar exact test': a test's name in a sentence."""
    return f"the {name}" if str(name).endswith("test") else f"the {name} test"


def _fmt(x: float | None) -> str:
    return "-" if x is None or not math.isfinite(x) else f"{x:.3g}"


def stated_test(c: Claim) -> str:
    """The test in words: 'paired t over 3 seeds: difference -0.041 (95% CI -0.11 to 0.029), p = 0.12', or why
    no test ran."""
    if c.test is None:
        return "no test"
    n = [sum(x is not None for x in v["values"]) for v in c.values]
    over = f"{n[0]} vs {n[1]} runs" if c.design == "unpaired" else f"{c.pairs or '?'} seeds paired"
    ci = f"95% CI {_fmt(c.ci95[0])} to {_fmt(c.ci95[1])}" if c.ci95 else "no 95% interval from so few pairs"
    margin = f", margin ±{c.margin:g}" if c.margin else ""
    holm = f", Holm p = {_fmt(c.p_holm)}" if c.p_holm is not None else ""
    return f"{c.test} ({over}{margin}): difference {c.estimate:+.3g} ({ci}), p = {_fmt(c.p)}{holm}"


def section_markdown(claims: Sequence[Claim]) -> str:
    """A section's claims as Markdown bullets with their tests; the verdicts come from the report's family."""
    return "\n\n".join(f"- {c.claim}: {stated_test(c) if c.test else 'no test: ' + c.reason}" for c in claims) + (
        "\n\n*Verdicts: in the report's claims table, after Holm's correction across every claim of the report.*")


def direction(c: Claim) -> str:
    """Which way the numbers point, in words, whether or not a test decides: 'A lower than B on 3 of 3 seeds' (seeds
    paired, read from the record's per-seed values), 'A higher than B on average' (unpaired), or '' where they
    point nowhere (no difference on any seed, or no estimate)."""
    (va, vb) = c.values
    name_a, name_b = va["setting"], vb["setting"]
    if c.design == "paired" and va.get("seeds") and vb.get("seeds"):
        of_b = dict(zip(vb["seeds"], vb["values"]))
        d = [x - of_b[s] for s, x in zip(va["seeds"], va["values"])
             if x is not None and of_b.get(s) is not None and math.isfinite(x) and math.isfinite(of_b[s])]
        up, down = sum(v > 0 for v in d), sum(v < 0 for v in d)
        if up == down:
            return f"{name_a} higher than {name_b} on {up} and lower on {down} of {len(d)} seeds" if up else ""
        side, k = ("higher", up) if up > down else ("lower", down)
        return f"{name_a} {side} than {name_b} on {k} of {len(d)} seeds"
    if c.estimate is None or not math.isfinite(c.estimate) or c.estimate == 0:
        return ""
    return f"{name_a} {'higher' if c.estimate > 0 else 'lower'} than {name_b} on average"


def _why(c: Claim) -> str:
    way = direction(c)
    if c.verdict == FULL_BUDGET:  # not tested (judge), or taken out of the family (adjust): the direction still
        why = c.reason or c.verdict
        return f"{why}; {way}, not tested" if way else why
    if c.test is None:
        return c.reason or c.verdict
    if c.verdict == "inconclusive":
        return f"{c.reason or c.verdict}; {way}, not significant" if way else c.reason or c.verdict
    if c.verdict in ("supported", "contradicted") and c.test != "TOST":
        side = "in the claimed direction" if c.verdict == "supported" else "against the claim"
        return f"a difference {side}, Holm-adjusted p below {stats.ALPHA:g}" + (f" ({way})" if way else "")
    if c.verdict in ("supported", "contradicted", "no effect") and c.test == "TOST":
        if c.kind == "no better":
            side = "not below" if c.verdict == "supported" else "below"
            return f"the difference lies {side} -{c.margin:g}, the declared margin (one-sided test, Holm-adjusted)"
        where = "within" if abs(c.estimate) < c.margin else "beyond"
        return f"the difference lies {where} the declared margin ±{c.margin:g} (two one-sided tests, Holm-adjusted)"
    if c.verdict == PENDING:
        return (f"the test points to '{c.decision}'" + (f" ({way})" if way else "") +
                "; the verdict waits for Holm's correction across the report")
    return c.reason or c.verdict


def _described(v: Mapping[str, Any]) -> str:
    """A setting's numbers as the tables show them (Estimate.describe where the record has it)."""
    if v.get("described"):
        return v["described"]
    return (f"mean {_fmt(v['mean'])}, median {_fmt(v['median'])}, sd {_fmt(v['sd'])} ({len(v['values'])} seeds, "
            f"{len(v['failed'])} failed, {v['converged']} converged)")


def finding(c: Claim) -> str:
    """One Markdown sentence that states the claim's verdict from its numbers (never typed by hand)."""
    (a, b) = c.values
    return (f"**{c.verdict}** — {c.claim} ({c.source}; {c.stand_in}). {c.metric}: {a['setting']} {_described(a)}, "
            f"{b['setting']} {_described(b)}; {stated_test(c)}{'; ' if c.test else ': '}{_why(c)}.")


TABLE_HEADS = ("claim", "source", "stand-in", "metric", "our numbers", "test", "estimate (95% CI)", "p", "Holm p",
               "verdict")


def _planned(c: Claim) -> str:
    """The plan in the test column: '; smallest effect 0.5, 4 seeds planned (power 0.83)'; '' without one."""
    parts = [f"smallest effect {c.min_effect:.3g}"] if c.min_effect is not None else []
    if c.n_planned is not None:
        power = f" (power {c.power:.2f})" if c.power is not None and math.isfinite(c.power) else ""
        parts.append(f"{c.n_planned} seeds planned{power}")
    return "; " + ", ".join(parts) if parts else ""


def claim_rows(claims: Sequence[Claim]) -> list[tuple[str, ...]]:
    """The claims table as one list of rows of text (TABLE_HEADS), rendered as Markdown (claims_table) and as HTML
    (reporting.pages.claims_html). "our numbers" holds one line per setting."""
    rows = []
    for c in claims:
        numbers = "\n".join(f"{v['setting']}: {_described(v)}" for v in c.values)
        est = "-" if c.estimate is None else f"{c.estimate:+.3g}" + (
            f" ({_fmt(c.ci95[0])}, {_fmt(c.ci95[1])})" if c.ci95 else "")
        test = (c.test or "-") + (f", margin ±{c.margin:g}" if c.margin else "") + _planned(c)
        rows.append((c.claim, c.source, c.stand_in, c.metric, numbers, test, est, _fmt(c.p), _fmt(c.p_holm),
                     c.verdict))
    return rows


def claims_table(claims: Sequence[Claim]) -> str:
    """The claims table as Markdown (claim_rows)."""
    lines = ["| " + " | ".join(TABLE_HEADS) + " |", "|" + "---|" * len(TABLE_HEADS)]
    for row in claim_rows(claims):
        cells = [cell.replace("\n", "; ").replace("|", "\\|") for cell in row]
        cells[-1] = f"**{cells[-1]}**"
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def tally(verdicts: Sequence[str]) -> dict[str, int]:
    """How many claims got each verdict, every verdict named (0 where none)."""
    return {v: sum(x == v for x in verdicts) for v in VERDICTS}


def judge_best(spec: ClaimSpec, best: Estimate, rivals: Sequence[tuple[str, Estimate]]) -> Claim:
    """The test of "A is the best of these settings": A (spec.arms[0]) is spec.direction ('lower' or 'higher' is
    better) than every rival; spec.arms[1] names the rivals as a group.

    An intersection-union test (Berger, 1982): each rival is tested against A with `judge` (paired by seed), and A
    is shown best only when it is shown better than each of them, so the claim's p is the largest of their p values
    (no correction is owed within the claim). It is contradicted when some rival is shown better than A: then its p
    is the smallest such p times the number of rivals (Bonferroni, since any one of them could have done it). The
    record's second setting is the rival that decides: the closest one for support, the best one for contradiction.
    No rival at all (A alone meets the criterion) leaves nothing to test, and is said so.

    min_p, the smallest p the claim's test could give with these seeds (what `adjust` reads to take a test that
    cannot reach alpha / m out of Holm's family), follows how p is formed. Support: p is the largest of the rivals'
    p, each at least its own min_p, so its floor is the largest of their min_p. Contradiction: p is k times the
    smallest p among the rivals shown better (k rivals), and any tested rival could have been that one, so its floor
    is min(1, k * the smallest min_p of the rivals tested).

    A margin is refused: a rival shown within it ('no effect') is neither beaten nor better, and the intersection-
    union test has no verdict for that."""
    if spec.direction not in ("higher", "lower"):
        raise ValueError(f"direction={spec.direction!r} is invalid: allowed higher, lower")
    if spec.margin is not None:
        raise ValueError(f"margin={spec.margin!r} is invalid for a best-of-a-sweep claim: allowed None (each rival "
                         "is tested for a difference)")
    if not rivals:
        raise ValueError(f"rivals={rivals!r} is invalid: allowed one or more settings to compare {spec.arms[0]!r} with")
    tests = [judge(dataclasses.replace(spec, arms=(spec.arms[0], name)), best, e) for name, e in rivals]
    untested = [t for t in tests if t.p is None and t.decision != "supported"]
    against = [t for t in tests if t.p is not None and t.decision == "contradicted"]
    if against:
        decider = min(against, key=lambda t: t.p)
        p, decision = min(1.0, decider.p * len(rivals)), "contradicted"
    elif untested:
        decider, p, decision = untested[0], None, untested[0].decision
    else:
        decider = max(tests, key=lambda t: t.p)
        p, decision = decider.p, "supported"
    c = dataclasses.replace(decider, p=p, decision=decision, verdict=PENDING if p is not None else decision,
                            detail={**decider.detail, "rivals": {t.settings[1]: _fin(t.p) for t in tests}})
    if p is not None:
        c.test = f"{decider.test}, intersection-union over {len(rivals)} rivals"
        floors = [t.min_p or 0.0 for t in tests if t.p is not None]  # the rivals whose test ran
        c.min_p = max(floors) if decision == "supported" else min(1.0, min(floors) * len(rivals))
    return c


@dataclass(frozen=True)
class Plan:
    """How many seeds a claim needs, planned before its runs (`plan`): the test planned for, the effect it is powered
    against (min_effect, or the margin of an equivalence), the sd of the pilot's per-seed differences, the level
    alpha / m (Holm's first step), the pairs planned (None: more than n_max) and the power there (at n_max where none
    reached the target)."""

    test: str  # 'paired t' (two-sided), 'TOST' (true difference 0), 'one-sided t' ('no better', true difference 0)
    effect: float
    pilot_sd: float
    pilot_pairs: int
    alpha: float  # the level used: alpha / family_size
    target: float  # the power asked for
    n_max: int
    n_planned: int | None
    power: float

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def __str__(self) -> str:
        seeds = (f"{self.n_planned} seeds" if self.n_planned is not None else f"more than {self.n_max} seeds")
        return (f"{self.test} against {self.effect:g} at alpha {self.alpha:.2g}, pilot sd {self.pilot_sd:.3g} "
                f"({self.pilot_pairs} pairs): {seeds} for power {self.target:g} (power {self.power:.2f})")


def plan(spec: ClaimSpec, pilot_differences: Sequence[float], family_size: int, n_max: int = 100, *,
         power: float = 0.8, alpha: float = stats.ALPHA) -> Plan:
    """The seeds a claim needs for `power`, from a pilot's per-seed differences A_s - B_s (their sd, ddof 1; non-finite
    ones, from failed runs, are dropped) and the level alpha / family_size: Holm's first step, conservative for a
    claim further down the steps (stats.first_step_alpha). The planned test is the one judge runs on varying
    differences: 'higher' / 'lower' the two-sided paired t against spec.min_effect (stats.seeds_for_power);
    'similar' TOST within the margin at a true difference of 0 (stats.seeds_for_tost); 'no better' the one-sided t
    against -margin at a true difference of 0. Refused (ValueError): a difference claim without min_effect, a binary
    or robust claim (their exact tests are not planned here: see min_p), a pilot with fewer than 2 finite pairs or
    no spread."""
    if spec.binary or spec.robust:
        raise ValueError(f"claim {spec.statement!r} is {'binary' if spec.binary else 'robust'}: allowed a claim judged "
                         "by a t test (plan powers paired t and TOST only)")
    d = np.asarray([float(x) for x in pilot_differences], dtype=float)
    d = d[np.isfinite(d)]
    if len(d) < 2:
        raise ValueError(f"pilot_differences={list(pilot_differences)!r} are invalid: allowed 2 or more finite "
                         "per-seed differences")
    sd = float(d.std(ddof=1))
    if np.ptp(d) == 0:
        raise ValueError(f"pilot_differences={list(pilot_differences)!r} are invalid: allowed differences that vary "
                         "(an sd of 0 cannot size a t test)")
    level = stats.first_step_alpha(family_size, alpha)
    if spec.direction in ("higher", "lower"):
        if spec.min_effect is None:
            raise ValueError(f"claim {spec.statement!r} declares no min_effect: allowed the smallest effect that "
                             "matters (min_effect=..., in the metric's units), to plan its seeds")
        test, effect = "paired t", spec.min_effect
        at = lambda n: stats.paired_t_power(effect, sd, n, level)  # noqa: E731
        n = stats.seeds_for_power(effect, sd, level, power, n_max)
    elif spec.direction == "similar":
        test, effect = "TOST", spec.margin
        at = lambda n: stats.tost_power(effect, sd, n, level)  # noqa: E731
        n = stats.seeds_for_tost(effect, sd, level, power, n_max)
    else:  # 'no better': one-sided, "difference <= -margin" rejected
        test, effect = "one-sided t", spec.margin
        at = lambda n: stats.paired_t_power(effect, sd, n, level, sided=1)  # noqa: E731
        n = stats.seeds_for_power(effect, sd, level, power, n_max, sided=1)
    return Plan(test, float(effect), sd, len(d), level, power, n_max, n, at(n if n is not None else n_max))


def with_plan(c: Claim, p: Plan) -> Claim:
    """The claim's record with its plan written in (pilot_sd, n_planned, power); a new Claim."""
    return dataclasses.replace(c, detail=dict(c.detail), pilot_sd=p.pilot_sd, n_planned=p.n_planned, power=p.power)
