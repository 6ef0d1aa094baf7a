"""Claims of the source reports, judged: which test, which verdict, and the sentence that states it.

A claim compares setting A with setting B on one metric (`kind`): A is 'higher' or 'lower' than B (a
difference), or A is 'similar' to B or 'no better' than B (lower is better) within a margin declared with the
claim (an equivalence). `judge` runs the test the design allows (vaelib.experiments.stats) and `adjust` applies Holm's
correction across a family of claims, which is what turns a test into a verdict. The seven verdicts and the
rules behind them are written out in docs/findings.md.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vaelib.experiments import stats
from vaelib.experiments.evidence import Estimate

VERDICTS = ("supported", "contradicted", "no effect", "untestable here", "inconclusive", "failed", "not converged")
KINDS = ("higher", "lower", "similar", "no better")
EQUIVALENCE = ("similar", "no better")
RECORD_KEYS = ("claim", "source", "stand_in", "metric", "design", "test", "n", "estimate", "ci95", "margin", "p",
               "p_holm", "values", "verdict")


@dataclass
class Claim:
    """One claim put to the test. `as_dict` is its record (RECORD_KEYS); the rest says how the verdict came."""

    claim: str  # in our own words
    source: str  # which report, which section
    stand_in: str  # which data and architecture stand in for the source's
    metric: str  # what was measured, with units
    arms: tuple[tuple[str, Estimate], tuple[str, Estimate]]
    kind: str
    margin: float | None = None
    design: str = "paired"
    test: str | None = None
    estimate: float | None = None
    ci95: tuple[float, float] | None = None
    p: float | None = None  # the p of the decision the data point to; None where no test was run
    p_holm: float | None = None
    decision: str = "inconclusive"  # the verdict if p_holm < alpha (or the verdict itself, where p is None)
    verdict: str = "inconclusive"
    reason: str = ""  # why this verdict, for the sentence
    detail: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """The claim's record in metrics.json: exactly RECORD_KEYS, no nan (None instead)."""
        fin = (lambda x: None if x is None or not math.isfinite(x) else float(x))  # noqa: E731
        values = [{"setting": name, **e.summary()} for name, e in self.arms]
        return {"claim": self.claim, "source": self.source, "stand_in": self.stand_in, "metric": self.metric,
                "design": self.design, "test": self.test, "n": [e.n for _, e in self.arms],
                "estimate": fin(self.estimate), "ci95": [fin(c) for c in self.ci95] if self.ci95 else None,
                "margin": self.margin, "p": fin(self.p), "p_holm": fin(self.p_holm), "values": values,
                "verdict": self.verdict}


def _pairs(a: Estimate, b: Estimate) -> tuple[np.ndarray, np.ndarray] | None:
    """Values of A and B on the seeds both have a finite value for, in seed order; None if unpaired."""
    if not a.seeds or not b.seeds:
        return None
    va, vb = dict(zip(a.seeds, a.values)), dict(zip(b.seeds, b.values))
    if not set(va) & set(vb):
        return None  # no seed in common: the arms are independent
    common = [s for s in a.seeds if s in vb and math.isfinite(va[s]) and math.isfinite(vb[s])]
    return np.array([va[s] for s in common]), np.array([vb[s] for s in common])


def _precheck(c: Claim, a: Estimate, b: Estimate, needs_convergence: bool,
              bounds: tuple[float, float] | None) -> tuple[str, str] | None:
    """(verdict, reason) where no test can be run: failed runs, unconverged runs, too few seeds, both arms at
    the bound the claim would have to move past."""
    names = [name for name, _ in c.arms]
    failures = [f"{name}: {f}" for name, e in c.arms for f in e.failures]
    missing = [f"{name}: {e.n - len(e.finite_values)} of {e.n} without a value" for name, e in c.arms
               if len(e.finite_values) < e.n]
    if needs_convergence and (failures or missing):
        return "failed", "; ".join(failures or missing)
    if not needs_convergence and missing:
        return "failed", "; ".join(failures or missing)
    if needs_convergence and not (a.all_converged and b.all_converged):
        why = [f"{name}: {u}" for name, e in c.arms for u in e.unsettled]
        return "not converged", "; ".join(why) or "not every run converged"
    if min(len(a.finite_values), len(b.finite_values)) < 2:
        return "inconclusive", f"fewer than 2 seeds in {names[0] if len(a.finite_values) < 2 else names[1]}"
    if bounds is not None and c.kind in ("higher", "lower"):
        bound = bounds[1] if c.kind == "higher" else bounds[0]
        if all(v == bound for v in a.finite_values + b.finite_values):
            return "untestable here", (f"both settings sit at the metric's {'upper' if c.kind == 'higher' else 'lower'}"
                                       f" bound {bound:g} on every seed: there was nothing to change")
    return None


def judge(claim: str, source: str, stand_in: str, metric: str, a: tuple[str, Estimate], b: tuple[str, Estimate],
          kind: str, *, margin: float | None = None, binary: bool = False, bounds: tuple[float, float] | None = None,
          robust: bool = False, needs_convergence: bool = True, untestable: str = "") -> Claim:
    """The test of "A is `kind` than B" (A first). Its verdict is provisional until `adjust` has seen the family.

    margin: the equivalence margin in the metric's units, declared before the numbers exist; required for
    'similar' and 'no better', optional for a difference (then a difference shown inside it is 'no effect').
    binary: the metric is 0/1 per seed (Fisher's exact test). bounds: (low, high) the metric cannot pass.
    robust: heavy tails (a loss that may blow up): the exact sign test over pairs, on the median difference.
    untestable: why the design cannot test the claim at all (written from the run's numbers), or "".
    needs_convergence=False for a metric of the first steps, or one about how runs end (derailing, collapse).
    """
    if kind not in KINDS:
        raise ValueError(f"kind={kind!r} is invalid: allowed {', '.join(KINDS)}")
    if a[0] == b[0]:
        raise ValueError(f"settings {a[0]!r} and {b[0]!r} are invalid: allowed two different settings")
    if kind in EQUIVALENCE and not (margin is not None and margin > 0):
        raise ValueError(f"margin={margin!r} is invalid for a {kind!r} claim: allowed a value > 0, declared with it")
    pairs = _pairs(a[1], b[1])
    c = Claim(claim, source, stand_in, metric, (a, b), kind, margin, "paired" if pairs is not None else "unpaired")
    pre = _precheck(c, a[1], b[1], needs_convergence, bounds)
    if untestable and (pre is None or pre[0] not in ("failed", "not converged")):
        pre = ("untestable here", untestable)
    if pre:
        c.decision, c.reason = pre
        c.verdict = c.decision
        return c
    x, y = pairs if pairs is not None else (np.array(a[1].finite_values), np.array(b[1].finite_values))
    if pairs is not None and len(x) < 2:
        c.decision = c.verdict = "inconclusive"
        c.reason = "fewer than 2 seeds with a value in both settings"
        return c
    _test(c, x, y, binary, robust)
    return c


def _test(c: Claim, x: np.ndarray, y: np.ndarray, binary: bool, robust: bool = False) -> None:
    """Fills test, estimate, ci95, p and decision (the verdict waits for adjust)."""
    paired = c.design == "paired"
    same = np.array_equal(x, y) if paired else (np.ptp(np.concatenate([x, y])) == 0)
    if same:  # every seed the same outcome in both settings: nothing to test
        c.estimate, c.decision = 0.0, "no effect"
        c.reason = "every seed gives the same value in both settings"
        c.verdict = c.decision
        return
    c.detail["pairs"] = len(x)
    if binary:  # Fisher conditions on the margins: every run with a value is counted, none paired
        t = stats.fisher(c.arms[0][1].finite_values, c.arms[1][1].finite_values)
        c.design = "unpaired"
    elif paired and (robust or np.ptp(x - y) == 0):
        t = stats.sign_test(x, y)  # heavy tails, or every seed moved by the same amount: no variance for a t test
    elif paired:
        t = stats.paired_t(x, y)
    elif np.ptp(x) == 0 and np.ptp(y) == 0:
        c.decision = c.verdict = "inconclusive"
        c.reason = "neither setting varies over its seeds and they are not paired: no test applies"
        return
    else:
        t = stats.welch(x, y)
    c.test, c.estimate, c.ci95, c.p = t.test, t.estimate, t.ci95, t.p
    c.detail["min_p"] = t.min_p
    m = c.margin
    if m and t.test in ("paired t", "Welch"):
        inside, beyond, above = stats.tost(x, y, m, paired)
        if c.kind in EQUIVALENCE or abs(t.estimate) < m:
            _equivalence(c, inside, beyond, above)
            return
    if c.kind in EQUIVALENCE:  # an exact test cannot show equivalence: no p enters the family
        c.test = c.p = c.ci95 = None
        c.decision = c.verdict = "inconclusive"
        c.reason = f"no equivalence test applies to these values (a {t.test} test would be needed)"
        return
    if t.test == "sign":  # its direction is the majority of the signs, not the median (which may be 0)
        d = x - y
        up = int((d > 0).sum()) - int((d < 0).sum())
    else:
        up = t.estimate
    claimed = up > 0 if c.kind == "higher" else up < 0
    c.decision = "supported" if claimed else "contradicted"


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
    """Holm's correction across the family: p_holm for every tested claim, and its verdict: the decision where
    p_holm < alpha, else inconclusive (saying whether these seeds could have decided it at all)."""
    tested = [c for c in claims if c.p is not None and math.isfinite(c.p)]
    for c, ph in zip(tested, stats.holm([c.p for c in tested])):
        c.p_holm = ph
        if ph < alpha:
            c.verdict, c.reason = c.decision, ""  # _why states a tested verdict from the test itself
        else:
            c.verdict = "inconclusive"
            min_p = c.detail.get("min_p", 0.0)
            c.reason = (f"the design cannot decide: with these seeds the smallest p a {c.test} test can give is "
                        f"{min_p:.2g}, not below {alpha:g}" if min_p >= alpha else
                        f"Holm-adjusted p = {ph:.2g} over {len(tested)} tested claims, not below {alpha:g}")
    return list(claims)


def adjust_records(records: Sequence[dict[str, Any]], alpha: float = stats.ALPHA) -> list[dict[str, Any]]:
    """Holm across a larger family (a report's claims, each already adjusted within its notebook): p_holm anew,
    and a supported / contradicted / no-effect verdict kept only where the new p_holm < alpha. A larger family
    never turns an inconclusive claim into a result."""
    out = [dict(r) for r in records]
    tested = [r for r in out if isinstance(r.get("p"), float | int)]
    for r, ph in zip(tested, stats.holm([r["p"] for r in tested])):
        r["p_holm"] = ph
        if ph >= alpha and r["verdict"] in ("supported", "contradicted", "no effect"):
            r["verdict"] = "inconclusive"
    return out


def _fmt(x: float | None) -> str:
    return "-" if x is None or not math.isfinite(x) else f"{x:.3g}"


def stated_test(c: Claim) -> str:
    """The test in words: 'paired t over 3 seeds: difference -0.041 (95% CI -0.11 to 0.029), p = 0.12', or why
    no test ran."""
    if c.test is None:
        return "no test"
    over = (f"{len(c.arms[0][1].finite_values)} vs {len(c.arms[1][1].finite_values)} runs" if c.design == "unpaired"
            else f"{c.detail.get('pairs', '?')} seeds paired")
    ci = f"95% CI {_fmt(c.ci95[0])} to {_fmt(c.ci95[1])}" if c.ci95 else "no 95% interval from so few pairs"
    margin = f", margin ±{c.margin:g}" if c.margin else ""
    holm = f", Holm p = {_fmt(c.p_holm)}" if c.p_holm is not None else ""
    return f"{c.test} ({over}{margin}): difference {c.estimate:+.3g} ({ci}), p = {_fmt(c.p)}{holm}"


def section_markdown(claims: Sequence[Claim]) -> str:
    """A section's claims as Markdown bullets with their tests; the verdicts wait for the family (adjust)."""
    return "\n\n".join(f"- {c.claim}: {stated_test(c) if c.test else 'no test: ' + c.reason}" for c in claims) + (
        "\n\n*Verdicts: in the claims table at the end, after Holm's correction across every claim of this "
        "notebook.*")


def _why(c: Claim) -> str:
    if c.test is None:
        return c.reason or c.verdict
    if c.verdict in ("supported", "contradicted") and c.test != "TOST":
        side = "in the claimed direction" if c.verdict == "supported" else "against the claim"
        return f"a difference {side}, Holm-adjusted p below {stats.ALPHA:g}"
    if c.verdict in ("supported", "contradicted", "no effect") and c.test == "TOST":
        if c.kind == "no better":
            side = "not below" if c.verdict == "supported" else "below"
            return f"the difference lies {side} -{c.margin:g}, the declared margin (one-sided test, Holm-adjusted)"
        where = "within" if abs(c.estimate) < c.margin else "beyond"
        return f"the difference lies {where} the declared margin ±{c.margin:g} (two one-sided tests, Holm-adjusted)"
    return c.reason or c.verdict


def finding(c: Claim) -> str:
    """One Markdown sentence that states the claim's verdict from its numbers (never typed by hand); call it after
    `adjust` has seen the whole family."""
    (name_a, a), (name_b, b) = c.arms
    return (f"**{c.verdict}** — {c.claim} ({c.source}; {c.stand_in}). {c.metric}: {name_a} {a.describe()}, "
            f"{name_b} {b.describe()}; {stated_test(c)}{'; ' if c.test else ': '}{_why(c)}.")


def claims_table(claims: Sequence[Claim]) -> str:
    """The claims as a Markdown table: claim, source, stand-in, metric, numbers, test, p, Holm p, verdict."""
    lines = ["| claim | source | stand-in | metric | our numbers | test | estimate (95% CI) | p | Holm p | verdict |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for c in claims:
        values = "; ".join(f"{name}: {e.describe()}" for name, e in c.arms)
        est = "-" if c.estimate is None else f"{c.estimate:+.3g}" + (
            f" ({_fmt(c.ci95[0])}, {_fmt(c.ci95[1])})" if c.ci95 else "")
        test = (c.test or "-") + (f", margin ±{c.margin:g}" if c.margin else "")
        lines.append(f"| {c.claim} | {c.source} | {c.stand_in} | {c.metric} | {values} | {test} | {est} | "
                     f"{_fmt(c.p)} | {_fmt(c.p_holm)} | **{c.verdict}** |")
    return "\n".join(lines)


def tally(verdicts: Sequence[str]) -> dict[str, int]:
    """How many claims got each verdict, every verdict named (0 where none)."""
    return {v: sum(x == v for x in verdicts) for v in VERDICTS}


def judge_best(claim: str, source: str, stand_in: str, metric: str, best: tuple[str, Estimate],
               rivals: Sequence[tuple[str, Estimate]], kind: str, **kw: Any) -> Claim:
    """The test of "A is the best of these settings": A is `kind` ('lower' or 'higher' is better) than every rival.

    An intersection-union test (Berger, 1982): each rival is tested against A with `judge` (paired by seed), and A
    is shown best only when it is shown better than each of them, so the claim's p is the largest of their p values
    (no correction is owed within the claim). It is contradicted when some rival is shown better than A: then its p
    is the smallest such p times the number of rivals (Bonferroni, since any one of them could have done it). The
    record's second arm is the rival that decides: the closest one for support, the best one for contradiction. No
    rival at all (A alone meets the criterion) leaves nothing to test, and is said so. kw: see judge."""
    if kind not in ("higher", "lower"):
        raise ValueError(f"kind={kind!r} is invalid: allowed higher, lower")
    if not rivals:
        raise ValueError(f"rivals={rivals!r} is invalid: allowed one or more settings to compare {best[0]!r} with")
    tests = [judge(claim, source, stand_in, metric, best, rival, kind, **kw) for rival in rivals]
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
    c = Claim(claim, source, stand_in, metric, (best, decider.arms[1]), kind, decider.margin, decider.design,
              decider.test, decider.estimate, decider.ci95, p, decision=decision, verdict=decision,
              reason=decider.reason, detail={**decider.detail, "rivals": {t.arms[1][0]: t.p for t in tests}})
    if p is not None:
        c.test = f"{decider.test}, intersection-union over {len(rivals)} rivals"
        c.detail["min_p"] = max(t.detail.get("min_p", 0.0) for t in tests)
    return c
