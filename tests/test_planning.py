"""vaelib.experiments.planning: the seeds a claim's plan asks for, the seeds a study adds, and the verdict "needs the
full budget" where the plan does not fit the budget."""

import math

import numpy as np
import pytest

from vaelib.experiments import planning, stats
from vaelib.experiments.claims import FULL_BUDGET, ClaimSpec, adjust, judge_rows, plan


def _rows(values: dict[str, list[float]], first_seed: int = 0) -> dict[str, list[dict]]:
    return {arm: [{"seed": first_seed + i, "converged": True, "m": v} for i, v in enumerate(vs)]
            for arm, vs in values.items()}


def _spec(a: str, b: str, direction: str = "lower", **kw) -> ClaimSpec:
    return ClaimSpec(f"{a} is {direction} than {b}", "a source §1", "mnist", "m (units)", (a, b), direction, key="m",
                     **kw)


def test_exact_seeds_is_the_first_n_whose_smallest_sign_test_p_passes_holms_first_step():
    for m in (1, 5, 26):
        n = planning.exact_seeds(m)
        level = stats.first_step_alpha(m)
        assert 2 * 0.5 ** n < level <= 2 * 0.5 ** (n - 1), m
        assert stats.sign_test(np.arange(n) + 1.0, np.zeros(n)).p < level  # every pair one way: it can decide
    assert planning.exact_seeds(26) == 11  # 2 / 2^10 = 0.00195 is not below 0.05 / 26 = 0.00192
    assert planning.exact_seeds(10**9, n_max=20) is None


def test_a_t_claim_is_planned_from_its_pilots_differences_and_an_exact_one_by_its_test():
    rows = _rows({"a": [1.0, 1.5, 0.8], "b": [2.0, 2.1, 2.2]})
    spec = _spec("a", "b", min_effect=0.5, min_effect_reason="half a unit matters")
    c = judge_rows(spec, rows)
    p = planning.plan_record(c, spec, family_size=10)
    assert p == plan(spec, [1.0 - 2.0, 1.5 - 2.1, 0.8 - 2.2], 10, 100)  # the same differences, the same plan
    robust = planning.plan_record(judge_rows(_spec("a", "b", robust=True), rows), _spec("a", "b", robust=True), 10)
    assert robust.test == "sign test" and robust.n_planned == planning.exact_seeds(10) and math.isnan(robust.power)
    binary_rows = _rows({"a": [0.0, 0.0, 1.0], "b": [1.0, 1.0, 1.0]})
    binary = _spec("a", "b", binary=True, bounds=(0, 1))
    assert planning.plan_record(judge_rows(binary, binary_rows), binary, 10).test == "McNemar exact"
    with pytest.raises(ValueError, match="declares no min_effect"):  # a difference claim must say what matters
        planning.plan_record(c, _spec("a", "b"), 10)


def test_a_claim_the_pilot_decided_without_a_test_keeps_its_decision_unless_more_seeds_could_change_it():
    broken = [{"seed": 0, "failure": "non-finite", "converged": False}, {"seed": 1, "m": 1.0, "converged": True}]
    failed = judge_rows(_spec("a", "b", min_effect=1.0), {"a": broken, "b": _rows({"b": [2.0, 3.0]})["b"]})
    assert failed.decision == "failed" and planning.plan_record(failed, _spec("a", "b", min_effect=1.0)) is None
    same = judge_rows(_spec("a", "b", min_effect=1.0), _rows({"a": [1.0, 2.0], "b": [1.0, 2.0]}))
    assert same.decision == "no effect"  # by identity on 2 seeds: no evidence of no effect, so it is planned
    p = planning.plan_record(same, _spec("a", "b", min_effect=1.0), 26)
    assert p.test == "sign test" and p.n_planned == 11
    assert planning.finish(same, p, 6).verdict == FULL_BUDGET and planning.finish(same, p, 11).verdict == "no effect"


def test_powered_adds_the_seeds_a_plan_asks_for_and_not_more_and_leaves_the_rest_to_the_full_budget():
    rng = np.random.default_rng(0)
    pilot = {"base": [10.0, 11.0, 12.0],
             "strong": [5.0, 6.1, 6.9],  # 5 lower, sd 0.1: the pilot already suffices
             "moderate": [9.0, 9.6, 11.4],  # about 1 lower, sd about 0.6
             "weak": [9.9, 11.1, 11.9]}  # 0.03 lower, against an effect of 0.2 that matters: far too many seeds
    specs = [_spec("strong", "base", min_effect=2.0), _spec("moderate", "base", min_effect=1.0),
             _spec("weak", "base", min_effect=0.2), _spec("strong", "base", robust=True)]
    plans = [planning.plan_record(judge_rows(s, _rows(pilot)), s, 10) for s in specs]
    assert plans[0].n_planned <= 3 and 3 < plans[1].n_planned <= 8 and plans[2].n_planned > 8, plans
    asked = {}

    def more(need):
        asked.update(need)
        out = {}
        for arm, seeds in need.items():
            shift = {"base": 0.0, "strong": -5.0, "moderate": -1.0, "weak": -0.03}[arm]
            out[arm] = [{"seed": s, "converged": True, "m": 10.0 + s + shift + rng.normal(0, 0.3)} for s in seeds]
        return out

    claims, rows = planning.powered(specs, _rows(pilot), n_cap=8, family_size=10, more=more)
    added = list(range(3, plans[1].n_planned))  # the seeds after the pilot's, up to the plan's n
    assert asked == {"moderate": added, "base": added}  # only the arms of that claim
    assert len(rows["moderate"]) == len(rows["base"]) == plans[1].n_planned and len(rows["weak"]) == 3
    strong, moderate, weak, robust = claims
    assert strong.n_planned == plans[0].n_planned and strong.pairs == 3 and strong.p is not None
    assert moderate.pairs == plans[1].n_planned and moderate.power >= 0.8 and moderate.p is not None
    for c, n in ((weak, plans[2].n_planned), (robust, planning.exact_seeds(10))):
        assert c.verdict == c.decision == FULL_BUDGET and c.p is None and c.test is None
        assert f"asks for {n} seeds" in c.reason and "most 8" in c.reason and "--budget full" in c.reason
        assert c.values[0] == judge_rows(specs[claims.index(c)], _rows(pilot)).values[0]  # its numbers still shown
    verdicts = adjust(claims)
    assert [v.verdict for v in verdicts][2:] == [FULL_BUDGET, FULL_BUDGET]
    assert all(v.p_holm is not None for v in verdicts[:2])  # Holm over the two tested claims only


def test_without_more_seeds_a_plan_above_the_pilot_is_not_tested():
    pilot = {"base": [10.0, 11.0, 12.0], "moderate": [9.0, 9.6, 11.4]}
    spec = _spec("moderate", "base", min_effect=1.0)
    [c], _ = planning.powered([spec], _rows(pilot), n_cap=8, family_size=10)
    assert c.verdict == FULL_BUDGET and "most 3" in c.reason
    assert c.reason.endswith(f"it runs with -p seeds {c.n_planned}")


def test_a_plan_beyond_the_cap_names_the_budgets_cap_even_when_no_seed_is_added():
    pilot = {"base": [10.0, 11.0, 12.0], "noisy": [9.0, 13.6, 8.4]}  # a spread no 8 seeds can resolve
    more_calls = []
    [c], _ = planning.powered([_spec("noisy", "base", min_effect=0.1)], _rows(pilot), n_cap=8, family_size=10,
                              more=lambda need: more_calls.append(need) or {})
    assert c.verdict == FULL_BUDGET and not more_calls
    assert "this run takes at most 8" in c.reason, c.reason  # the budget's cap, not the pilot's 3
    assert c.reason.endswith("it runs at --budget full") or c.reason.endswith("no budget here runs that many")


def test_finish_says_what_runs_a_plan_it_cannot_test():
    same = judge_rows(_spec("a", "b", min_effect=1.0), _rows({"a": [1.0, 2.0], "b": [1.0, 2.0]}))
    p = planning.plan_record(same, _spec("a", "b", min_effect=1.0), 26)  # a sign test: 11 pairs
    assert planning.finish(same, p, 6).reason.endswith("this run takes at most 6: not tested here, it runs at "
                                                       "--budget full")
    assert planning.finish(same, p, 3, "with -p seeds {n}").reason.endswith("it runs with -p seeds 11")
    never = planning.plan_record(same, _spec("a", "b", min_effect=1.0), 10**40, n_max=10)  # more than 10 pairs
    assert never.n_planned is None
    assert planning.finish(same, never, 3, "with -p seeds {n}").reason.endswith("no budget here runs that many")


def test_planned_tests_a_claim_of_its_own_estimates_only_where_the_pilot_holds_its_seeds():
    """planning.planned: a claim with no rows to add seeds to (a pick per pilot seed) is planned against the pilot."""
    spec = _spec("a", "b", min_effect=0.5)
    wide = judge_rows(spec, _rows({"a": [1.0, 2.0, 0.5], "b": [2.0, 2.2, 2.1]}))  # paired differences spread widely
    c = planning.planned(wide, spec, 10, 3)
    assert c.verdict == FULL_BUDGET and c.n_planned > 3 and c.reason.endswith(f"it runs with -p seeds {c.n_planned}")
    tight = judge_rows(spec, _rows({"a": [1.0, 1.1, 0.9, 1.0, 1.05], "b": [2.0, 2.1, 1.9, 2.0, 2.06]}))
    c = planning.planned(tight, spec, 10, 5)  # 1 lower on every seed, sd 0.005: a few seeds are enough
    assert c.n_planned is not None and c.n_planned <= 5 and c.test is not None and c.verdict != FULL_BUDGET


def test_moved_records_a_claim_of_another_stand_in_and_none_that_runs_here():
    from vaelib.experiments.claims import ELSEWHERE

    spec = ClaimSpec("b is lower than c", "a source §2", "shapes for CelebA", "m (units)", ("b", "c"), "lower", key="m")
    assert planning.moved(spec, {"shapes for CelebA": "shapes"}).verdict == ELSEWHERE
    assert planning.moved(spec, {"mnist for Fashion-MNIST": "mnist"}) is None and planning.moved(spec, None) is None


def test_seed_cap_and_bad_budgets():
    assert planning.seed_cap("small", 3) == planning.SEED_CAP["small"] and planning.seed_cap("tiny", 5) == 5
    with pytest.raises(ValueError, match="budget='huge' is invalid: allowed tiny, small, full"):
        planning.seed_cap("huge", 3)
    assert planning.FAMILY_SIZE == sum(n for by_source in planning.STUDY_CLAIMS.values() for n in by_source.values())


def test_each_claim_runs_on_its_own_stand_in_and_the_family_counts_the_claims_that_run():
    assert planning.runs_here("mnist", "fashion_mnist") and not planning.runs_here("mnist", "celeba")
    assert planning.runs_here("shapes", "cifar10") and planning.runs_here("shapes", "celeba")
    assert not planning.runs_here("shapes", "fashion_mnist")
    for dataset in ("digits", "fashion_mnist", "cifar10", "celeba"):  # own data, or a secondary stand-in: all run
        assert all(planning.runs_here(dataset, src) for src in ("fashion_mnist", "cifar10", "celeba")), dataset
    assert planning.runs_on("celeba") == "shapes" and planning.runs_on("fashion_mnist") == "mnist"
    with pytest.raises(ValueError, match="source_data='svhn' is invalid: allowed fashion_mnist, cifar10, celeba"):
        planning.runs_here("mnist", "svhn")
    studies = {"a": {"fashion_mnist": 2, "celeba": 3}, "b": {"cifar10": 5}}
    assert planning.family_size("mnist", studies) == 2 and planning.family_size("shapes", studies) == 8
    assert planning.family_size("digits", studies) == 10
    # the two embedded reports split the declared claims between them, none counted twice or left out
    assert planning.family_size("mnist") + planning.family_size("shapes") == planning.FAMILY_SIZE
    # the numbers the studies' introductions state: 9 and 19 claims, an exact test needing 9 and 10 pairs
    assert (planning.family_size("mnist"), planning.family_size("shapes")) == (9, 19)
    assert (planning.exact_seeds(9), planning.exact_seeds(19)) == (9, 10)


def test_a_claim_of_another_stand_in_is_recorded_in_place_and_not_run():
    from vaelib.experiments.claims import ELSEWHERE

    away = {"shapes for CelebA": "shapes"}
    moved = ClaimSpec("b is lower than c", "a source §2", "shapes for CelebA", "m (units)", ("b", "c"), "lower",
                      key="m", min_effect=0.1)
    rows = _rows({"a": [1.0, 1.5, 0.8], "b": [2.0, 2.1, 2.2]})  # no rows for the moved claim's arms: never read
    trained = []
    claims, _ = planning.powered([_spec("a", "b", min_effect=0.5), moved], rows, n_cap=3, family_size=10,
                                 more=lambda need: trained.append(need) or {}, away=away)
    assert [c.claim for c in claims] == ["a is lower than b", "b is lower than c"]  # the declared order
    assert claims[0].n_planned is not None and claims[1].verdict == claims[1].decision == ELSEWHERE  # one planned
    assert claims[1].test is None and claims[1].p is None and "runs in a shapes report" in claims[1].reason
    assert adjust(claims)[1].verdict == ELSEWHERE and adjust(claims)[1].p_holm is None  # outside Holm's family
    assert all("c" not in need for need in trained)  # no seed asked for an arm only the moved claim reads
    assert planning.recorded(moved, "no measure", away).verdict == ELSEWHERE
    assert planning.recorded(_spec("a", "b"), "no measure", away).verdict == "untestable here"


def test_more_seeds_trains_each_arm_on_the_seeds_asked_for(tiny_config, tiny_data, tmp_path):
    more = planning.more_seeds({"a": tiny_config, "b": tiny_config}, lambda runs: {
        k: [{"seed": r.config.train.seed, "steps": len(r.history.steps)} for r in rs] for k, rs in runs.items()},
        *tiny_data, root=tmp_path, device="cpu")
    rows = more({"a": [3, 4]})
    assert list(rows) == ["a"] and [r["seed"] for r in rows["a"]] == [3, 4] and rows["a"][0]["steps"] > 0
    assert len(list(tmp_path.iterdir())) == 2  # one cached run per seed, none for the arm not asked for


def test_the_claims_table_shows_the_plan():
    from vaelib.experiments.claims import claim_rows

    rows = _rows({"base": [10.0, 11.0, 12.0], "moderate": [9.0, 9.6, 11.4]})
    [c], _ = planning.powered([_spec("moderate", "base", min_effect=1.0)], rows, n_cap=3, family_size=10)
    test_cell = claim_rows([c])[0][5]
    assert test_cell.startswith("-; smallest effect 1, ") and f"{c.n_planned} seeds planned" in test_cell, test_cell
    assert c.verdict in claim_rows([c])[0][-1]


def test_each_committed_reports_studies_record_exactly_the_claims_their_family_declares():
    """STUDY_CLAIMS is Holm's family, declared before any run: each study of a committed report records as many
    claims that count as it declares for the sources that run on that report's data (a claim the data left
    untestable counts; one no design here can test, planning.recorded, does not)."""
    import json
    from pathlib import Path

    reports = sorted((Path(__file__).resolve().parent.parent / "reports").glob("*/metrics.json"))
    assert reports, "no committed report"
    for path in reports:
        report = json.loads(path.read_text())
        for entry in report["notebooks"]:
            records = (entry.get("metrics") or {}).get("claims") or []
            if not entry["notebook"].startswith("studies/"):
                assert not records, (path, entry["notebook"])  # lessons record no claims
                continue
            declared = sum(n for src, n in planning.STUDY_CLAIMS[entry["notebook"]].items()
                           if planning.runs_here(report["dataset"], src))
            assert planning.counted(records) == declared, (path, entry["notebook"])


def test_counted_leaves_out_claims_of_another_stand_in_and_those_no_design_here_can_test():
    from vaelib.experiments.claims import untestable

    spec = _spec("a", "b")
    away = {"shapes for CelebA": "shapes"}
    other = ClaimSpec("b is lower than c", "a source §2", "shapes for CelebA", "m (units)", ("b", "c"), "lower")
    records = [planning.recorded(spec, "no measure", away).as_dict(),  # untestable whatever the data
               untestable(spec, "the scan found no test point").as_dict(),  # the data left it untestable: counted
               planning.moved(other, away).as_dict(),
               judge_rows(spec, _rows({"a": [1.0, 2.0], "b": [1.5, 2.5]})).as_dict()]
    assert planning.counted(records) == 2


def test_more_seeds_trains_a_model_once_for_every_arm_it_stands_for(tiny_config, tiny_data, tmp_path):
    trained = []

    def rows_of(runs):  # one model measured as two arms, as the future-work study's priors are
        trained.extend((k, r.config.train.seed) for k, rs in runs.items() for r in rs)
        return {f"{k}{suffix}": [{"seed": r.config.train.seed} for r in rs] for k, rs in runs.items()
                for suffix in (", own", " + learned")}

    more = planning.more_seeds({"m": tiny_config}, rows_of, *tiny_data, model_of=lambda arm: arm[0],
                               root=tmp_path, device="cpu")
    rows = more({"m, own": [3, 4], "m + learned": [3]})
    assert trained == [("m", 3), ("m", 4)]  # the union of the seeds, each trained once
    assert {k: [r["seed"] for r in v] for k, v in rows.items()} == {"m, own": [3, 4], "m + learned": [3]}
