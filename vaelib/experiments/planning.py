"""How many seeds a claim needs, and what a study does with that: the pilot, the plan, the added seeds, the verdict
"needs the full budget".

A study trains every arm on its pilot seeds (the notebook's `seeds`, 3 by default) and judges each declared claim
on them (claims.judge). From the pilot's per-seed differences, `plan_record` sizes the claim's test for 80% power at
Holm's first step over the report's declared family (alpha / FAMILY_SIZE):

- a claim judged by a t test (a difference against its declared `min_effect`, an equivalence against its margin)
  gets claims.plan: the exact power of the paired t (or TOST) at the pilot's sd of the differences;
- a claim judged by an exact test (binary outcomes: McNemar; heavy tails, or differences without spread: the sign
  test) needs `exact_seeds` pairs, every one of them discordant, before its smallest attainable p can pass
  alpha / m: a number that does not depend on the pilot.

`powered` then trains the arms of every claim whose plan fits the budget's cap (`seed_cap`) on the added seeds,
judges those claims again on all of them, and writes each plan into its record. A claim whose plan asks for more
seeds than the budget runs is not tested at that budget: its verdict is "needs the full budget", with the n it
needs, and no p of it enters Holm's family. A claim the pilot already decided without a test (failed or unconverged
runs, no effect by identity, untestable here) keeps that decision.

The pilot's seeds are part of the final sample (an internal pilot, Wittes & Brittain, 1990): only the sd of the
differences is read from it, never the direction, so the level is kept up to the small bias of re-estimating a
variance. The rules are written out in docs/findings.md.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from vaelib.config import Config
from vaelib.data.datasets import STAND_IN
from vaelib.experiments import stats
from vaelib.experiments.claims import (
    ELSEWHERE,
    FULL_BUDGET,
    Claim,
    ClaimSpec,
    Plan,
    elsewhere,
    judge_rows,
    plan,
    untestable,
    with_plan,
)
from vaelib.experiments.runs import Run, run_seeds

# Every claim the studies can test, by the source's data it is about, counted at their most (a claim that a dataset
# cannot carry, e.g. MIG without ground-truth factors, is still counted, and so is one the data leave untestable;
# one that no design here can test, recorded with `recorded`, is not).
# A report's family holds the claims that run on its data (runs_here): its size, fixed before any run, is
# family_size(dataset). tests/test_planning.py checks that each committed report's study records exactly that many.
STUDY_CLAIMS = {"studies/stability": {"fashion_mnist": 8, "cifar10": 1, "celeba": 5},
                "studies/failure_modes": {"fashion_mnist": 1, "celeba": 7},
                "studies/batchnorm": {"celeba": 2},
                "studies/future_work": {"cifar10": 3, "celeba": 1}}
FAMILY_SIZE = sum(n for by_source in STUDY_CLAIMS.values() for n in by_source.values())  # every claim: a dataset
# that stands in for none of the sources' data runs them all
SEED_CAP = {"tiny": 3, "small": 6, "full": 30}  # the most seeds a budget trains per arm of a claim
POWER = 0.8
TESTED = ("inconclusive", "supported", "contradicted", "no effect")  # decisions a test (or too few seeds) made


def runs_here(dataset: str, source_data: str) -> bool:
    """Whether a claim about `source_data` ('fashion_mnist', 'cifar10', 'celeba') runs on `dataset`: on the source's
    own data, and on its embedded stand-in (data.datasets.STAND_IN: mnist for Fashion-MNIST, shapes for CIFAR-10 and
    CelebA), but not on the other embedded stand-in, whose report does not carry it (each claim on its own stand-in
    only). Any other dataset (digits, or another source's data) runs every claim, as a secondary stand-in."""
    own = runs_on(source_data)  # refuses an unknown source first
    return dataset in (source_data, own) or dataset not in STAND_IN.values()


def runs_on(source_data: str) -> str:
    """The embedded dataset a claim about `source_data` runs on (its stand-in)."""
    if source_data not in STAND_IN:
        raise ValueError(f"source_data={source_data!r} is invalid: allowed {', '.join(STAND_IN)}")
    return STAND_IN[source_data]


def family_size(dataset: str, studies: Mapping[str, Mapping[str, int]] = STUDY_CLAIMS) -> int:
    """The declared size of Holm's family in a report on `dataset`: the claims of every study that run on it
    (runs_here), counted at their most (STUDY_CLAIMS)."""
    return sum(n for by_source in studies.values() for src, n in by_source.items() if runs_here(dataset, src))


def seed_cap(budget: str, pilot: int) -> int:
    """The most seeds `budget` trains per arm (SEED_CAP), and never fewer than the pilot's."""
    if budget not in SEED_CAP:
        raise ValueError(f"budget={budget!r} is invalid: allowed {', '.join(SEED_CAP)}")
    return max(SEED_CAP[budget], pilot)


def exact_seeds(family_size: int = FAMILY_SIZE, alpha: float = stats.ALPHA, n_max: int = 100) -> int | None:
    """The fewest pairs at which the two-sided exact sign test (or McNemar's, on its discordant pairs) can give a p
    below alpha / family_size: its smallest p, 2 * 0.5^n with every pair one way, must be below that level. None
    past n_max."""
    level = stats.first_step_alpha(family_size, alpha)
    for n in range(1, n_max + 1):
        if 2 * 0.5 ** n < level:
            return n
    return None


def pilot_differences(c: Claim) -> np.ndarray:
    """A record's per-seed differences A - B on the seeds both arms have a finite value for (its values, as the
    claims table shows them); empty for unpaired arms."""
    (va, vb) = c.values
    if not va.get("seeds") or not vb.get("seeds"):
        return np.array([])
    of_b = dict(zip(vb["seeds"], vb["values"]))
    d = [x - of_b[s] for s, x in zip(va["seeds"], va["values"])
         if x is not None and of_b.get(s) is not None and math.isfinite(x) and math.isfinite(of_b[s])]
    return np.array(d, dtype=float)


def _exact_plan(test: str, pairs: int, family_size: int, n_max: int) -> Plan:
    n = exact_seeds(family_size, n_max=n_max)
    return Plan(test, math.nan, math.nan, pairs, stats.first_step_alpha(family_size), POWER, n_max, n, math.nan)


def plan_record(c: Claim, spec: ClaimSpec, family_size: int = FAMILY_SIZE, n_max: int = 100) -> Plan | None:
    """The plan of a claim judged on its pilot (see the module's docstring), or None where the pilot decided it
    without a test that more seeds could change (failed, not converged, untestable here). A pilot whose every seed
    gives the same value in both settings ("no effect" without a test) is no evidence of no effect: it is planned as
    the exact test that more seeds would run."""
    if c.decision not in TESTED:
        return None
    d = pilot_differences(c)
    if c.design != "paired" or len(d) < 2:
        return None  # unpaired arms, or fewer than 2 pairs: nothing to size a paired test from
    if c.test is None and c.decision == "no effect":  # every pilot seed the same in both: that is no evidence of no
        return _exact_plan("McNemar exact" if spec.binary else "sign test", len(d), family_size, n_max)  # effect
    if spec.binary:
        return _exact_plan("McNemar exact", len(d), family_size, n_max)
    if spec.robust or (len(d) >= 2 and np.ptp(d) == 0):
        return _exact_plan("sign test", len(d), family_size, n_max)
    return plan(spec, d, family_size, n_max, power=POWER)


def finish(c: Claim, p: Plan | None, n_cap: int, how: str = "at --budget full") -> Claim:
    """The claim's record with its plan: tested as judged where the plan fits n_cap seeds; else not tested at this
    budget (verdict "needs the full budget", with the seeds it needs, out of Holm's family). how: what runs it, said
    to the reader, `{n}` standing for the seeds the plan asks for: "at --budget full" where the budget's cap
    (seed_cap) sets n_cap, "with -p seeds {n}" where n_cap is the pilot's seeds and nothing adds any."""
    if p is None:
        return c
    c = with_plan(c, p)
    if p.n_planned is not None and p.n_planned <= n_cap:
        return c
    need = f"{p.n_planned} seeds" if p.n_planned is not None else f"more than {p.n_max} seeds"
    reach = f"it runs {how.format(n=p.n_planned)}" if p.n_planned is not None else "no budget here runs that many"
    sized = (f"{p.test} at alpha {p.alpha:.2g} (0.05 / {round(stats.ALPHA / p.alpha)} declared claims), every pair "
             "one way" if math.isnan(p.effect) else str(p))
    return dataclasses.replace(c, test=None, p=None, min_p=None, ci95=None, p_holm=None, decision=FULL_BUDGET,
                               verdict=FULL_BUDGET, reason=f"the plan asks for {need} ({sized}); this run takes at "
                                                           f"most {n_cap}: not tested here, {reach}")


Rows = Mapping[str, Sequence[dict[str, Any]]]


def powered(specs: Sequence[ClaimSpec], rows: Rows, *, n_cap: int, family_size: int = FAMILY_SIZE,
            more: Callable[[dict[str, list[int]]], Rows] | None = None,
            judge: Callable[[ClaimSpec, Rows], Claim] = judge_rows,
            away: Mapping[str, str] | None = None, how: str = "at --budget full"
            ) -> tuple[list[Claim], dict[str, list[dict]]]:
    """Each declared claim judged on the pilot rows, planned (plan_record), given the seeds its plan asks for where
    they fit n_cap, and finished (finish). more({arm: seeds}) trains each named arm on the seeds given (those after
    its last, up to the plan's n) and returns their rows (`more_seeds` builds it from the configs); without it, no
    seed is added and a plan above the pilot's size reads "needs the full budget", run with more pilot seeds. how:
    what runs a plan above n_cap, for the reader (finish). away maps the stand-in (a
    ClaimSpec's stand_in) of the claims that do not run on this data to the dataset they run on (runs_here): those
    are recorded in place, not judged (claims.elsewhere), and their arms need no rows. Returns the claims, in the
    order declared, and the rows they were judged on (the pilot's plus the added)."""
    away = away or {}
    away_records = {i: r for i, s in enumerate(specs) if (r := moved(s, away)) is not None}
    if away_records:
        kept, rows = powered([s for s in specs if s.stand_in not in away], rows, n_cap=n_cap,
                             family_size=family_size, more=more, judge=judge, how=how)
        it = iter(kept)
        return [away_records[i] if i in away_records else next(it) for i in range(len(specs))], rows
    rows = {k: list(v) for k, v in rows.items()}
    pilot = [judge(s, rows) for s in specs]
    plans = [plan_record(c, s, family_size) for c, s in zip(pilot, specs)]
    have = {arm: len(rs) for arm, rs in rows.items()}
    need: dict[str, int] = {}
    for s, p in zip(specs, plans):
        if p is not None and p.n_planned is not None and p.n_planned <= n_cap:
            for arm in s.arms:
                if p.n_planned > have.get(arm, 0):
                    need[arm] = max(need.get(arm, 0), p.n_planned)
    if need and more is not None:
        added_seeds = {arm: _next_seeds(rows.get(arm, []), n) for arm, n in need.items()}
        for arm, added in more(added_seeds).items():
            rows[arm] = rows.get(arm, []) + list(added)
    elif more is None:  # no seed can be added: the budget runs the pilot's seeds and no more
        n_cap = min(n_cap, min((have[a] for s in specs for a in s.arms if a in have), default=n_cap))
        how = "with -p seeds {n}"
    final = [judge(s, rows) if any(a in need for a in s.arms) else c for s, c in zip(specs, pilot)]
    return [finish(c, p, n_cap, how) for c, p in zip(final, plans)], rows


def planned(c: Claim, spec: ClaimSpec, family_size: int, pilot: int) -> Claim:
    """A claim judged on estimates of its own, with no rows that seeds could be added to (a pick made on each pilot
    seed, a scan's test point): planned (plan_record) and finished against the pilot's seeds, the only ones it gets:
    tested where they hold what its plan asks for, else "needs the full budget", run with -p seeds N (finish)."""
    return finish(c, plan_record(c, spec, family_size), pilot, "with -p seeds {n}")


def moved(spec: ClaimSpec, away: Mapping[str, str] | None) -> Claim | None:
    """The record of a claim whose stand-in is another dataset's (away, as in `powered`): 'other stand-in', its own
    stand-in's report names it (claims.elsewhere); None where the claim runs on this data."""
    return elsewhere(spec, away[spec.stand_in]) if away and spec.stand_in in away else None


def recorded(spec: ClaimSpec, reason: str, away: Mapping[str, str] | None = None) -> Claim:
    """A claim no design here can test: 'untestable here' with the reason (claims.untestable), or, where its
    stand-in is another dataset's (away, as in `powered`), 'other stand-in': its own stand-in's report says why.
    Untestable whatever the data, it is not counted in STUDY_CLAIMS: its record says so (detail['counted'] False),
    where a claim that the data left untestable (a scan that found no test point) is counted, declared before any
    run."""
    c = moved(spec, away) or untestable(spec, reason)
    return dataclasses.replace(c, detail={**c.detail, "counted": False})


def counted(records: Sequence[Mapping[str, Any]]) -> int:
    """How many of a study's claim records (as in metrics.json) count in STUDY_CLAIMS on the data they were made
    on: every one but those recorded as run on another stand-in and those no design here can test (`recorded`)."""
    return sum(r["verdict"] != ELSEWHERE and (r.get("detail") or {}).get("counted", True) for r in records)


def _next_seeds(rows: Sequence[dict[str, Any]], n: int) -> list[int]:
    """The seeds after the last of `rows` that bring them to n."""
    last = max((int(r["seed"]) for r in rows if "seed" in r), default=-1)
    return list(range(last + 1, last + 1 + n - len(rows)))


def more_seeds(configs: Mapping[str, Config], rows_of: Callable[[dict[str, list[Run]]], Rows], train: Any, val: Any,
               model_of: Callable[[str], str] | None = None, **fit_kw: Any) -> Callable[[dict[str, list[int]]], Rows]:
    """`powered`'s more: each named arm's config trained (or loaded from the run cache) on the seeds asked for
    (experiments.runs.run_seeds, with fit_kw: root, retrain, device), measured by rows_of (the section's own
    per-seed rows). model_of maps an arm to the config it reads where the two differ (one trained model measured
    as several arms: its own prior and a learned one); each config is then trained once on the union of the seeds
    its arms ask for, and each arm gets the rows of its own seeds."""
    def more(need: dict[str, list[int]]) -> Rows:
        of = model_of or (lambda arm: arm)
        by_config: dict[str, set[int]] = {}
        for arm, seeds in need.items():
            by_config.setdefault(of(arm), set()).update(seeds)
        measured: dict[str, list[dict[str, Any]]] = {}
        for label, seeds in by_config.items():
            for arm, rows in rows_of(run_seeds({label: configs[label]}, sorted(seeds), train, val, **fit_kw)).items():
                measured.setdefault(arm, []).extend(rows)
        return {arm: [r for r in measured.get(arm, []) if r.get("seed") in seeds] for arm, seeds in need.items()}
    return more
