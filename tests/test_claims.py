import dataclasses
import json
import math

import pytest

from vaelib.experiments.claims import (
    FULL_BUDGET,
    PENDING,
    RECORD_KEYS,
    VERDICTS,
    Claim,
    ClaimSpec,
    adjust,
    claim_rows,
    claims_table,
    direction,
    elsewhere,
    finding,
    judge,
    judge_best,
    plan,
    section_markdown,
    tally,
    with_plan,
)
from vaelib.experiments.evidence import Estimate, estimate


def _est(values, converged=None, seeds=None, failures=(), unsettled=()):
    seeds = tuple(range(len(values))) if seeds is None else tuple(seeds)
    return Estimate(tuple(values), len(values) if converged is None else converged, seeds, tuple(unsettled),
                    tuple(failures))


def _spec(kind="higher", **kw):
    return ClaimSpec("the claim", "report §1", "embedded mnist for Fashion-MNIST", "metric", ("A", "B"), kind, **kw)


def _judge(a, b, kind="higher", untestable="", family_size=None, **kw):
    return judge(_spec(kind, **kw), a, b, untestable=untestable, family_size=family_size)


def _final(*claims):
    return adjust(claims)


def test_every_verdict_class_from_a_synthetic_seed_set():
    (supported,) = _final(_judge(_est([3.0, 3.2, 2.9, 3.1]), _est([1.0, 1.1, 0.9, 1.0])))
    (contradicted,) = _final(_judge(_est([1.0, 1.1, 0.9, 1.0]), _est([3.0, 3.2, 2.9, 3.1])))
    (no_effect,) = _final(_judge(_est([0.0, 0.0, 0.0]), _est([0.0, 0.0, 0.0]), bounds=(0, 32)))
    (untestable,) = _final(_judge(_est([32.0] * 3), _est([32.0] * 3), bounds=(0, 32)))
    (inconclusive,) = _final(_judge(_est([1.0, 2.0, 3.0]), _est([1.5, 1.0, 3.5])))
    (failed,) = _final(_judge(_est([1.0, math.nan, 2.0], converged=2,
                                    failures=("seed 1: non-finite loss at step 600 (beta 0.1)",)),
                              _est([1.0, 2.0, 3.0])))
    (unconverged,) = _final(_judge(_est([3.0, 3.1, 3.2], converged=2, unsettled=("seed 2: frozen",)),
                                   _est([1.0, 1.1, 1.2])))
    (budget,) = _final(_judge(_est([32.0] * 3), _est([0.0] * 3), bounds=(0, 32), family_size=20))
    (moved,) = _final(elsewhere(_spec("higher"), "shapes"))
    got = [c.verdict for c in (supported, contradicted, no_effect, untestable, inconclusive, failed, unconverged,
                               budget, moved)]
    assert got == list(VERDICTS)
    assert supported.test == contradicted.test == "paired t" and supported.p_holm < 0.05
    assert no_effect.test is None and "every seed gives the same value" in finding(no_effect)
    assert "upper bound 32" in finding(untestable)
    assert "seed 1: non-finite loss at step 600 (beta 0.1)" in finding(failed)
    assert moved.test is None and moved.p_holm is None and "it runs in a shapes report" in finding(moved)
    with pytest.raises(ValueError, match="where='' is invalid: allowed the dataset the claim runs on"):
        elsewhere(_spec("higher"), "")
    assert "A: seed 2: frozen" in finding(unconverged)


def test_zero_vs_zero_is_no_effect_where_a_difference_is_claimed_and_a_ceiling_is_untestable():
    """Cyclic annealing to beta 16 leaves 0 of 32 units active, as without it: the fix did not work. 32 vs 32 at
    beta 0.8 (nothing collapsed) is a ceiling: there was nothing to prevent."""
    (cyclic,) = _final(_judge(_est([0.0] * 3), _est([0.0] * 3), bounds=(0, 32)))
    assert cyclic.verdict == "no effect"
    (ceiling,) = _final(_judge(_est([32.0] * 3), _est([32.0] * 3), bounds=(0, 32)))
    assert ceiling.verdict == "untestable here"
    (down,) = _final(_judge(_est([0.0] * 3), _est([0.0] * 3), "lower", bounds=(0, 32)))
    assert down.verdict == "untestable here" and "lower bound 0" in finding(down)


def test_constant_differences_go_to_the_sign_test_and_three_seeds_cannot_decide():
    (c,) = _final(_judge(_est([32.0] * 3), _est([0.0] * 3), bounds=(0, 32)))
    assert c.test == "sign" and c.min_p == pytest.approx(0.25) and c.verdict == "needs the full budget"
    assert c.p is None and "3 pairs" in c.reason  # it cannot reach 0.05: left out of Holm's family
    assert "needs the full budget" in finding(c) and "0.25" in finding(c)
    (six,) = _final(_judge(_est([32.0] * 6), _est([0.0] * 6), bounds=(0, 32)))
    assert six.p == pytest.approx(2 / 64) and six.verdict == "supported"


def test_derailing_paired_by_seed_is_judged_by_mcnemars_exact_test_and_fisher_only_unpaired():
    (three,) = _final(_judge(_est([0.0] * 3), _est([1.0] * 3), "lower", binary=True, needs_convergence=False))
    assert three.test == "McNemar exact" and three.design == "paired" and three.verdict == "needs the full budget"
    assert three.p is None and three.min_p == pytest.approx(0.25)  # 3 discordant pairs: 2 * 0.5**3
    assert "needs the full budget" in finding(three) and "lower than B on 3 of 3 seeds" in finding(three)
    (six,) = _final(_judge(_est([0.0] * 6), _est([1.0] * 6), "lower", binary=True, needs_convergence=False))
    assert six.test == "McNemar exact" and six.p == pytest.approx(2 / 64) and six.verdict == "supported"
    # only the seeds whose two runs disagree count: 7 derail without clipping alone, 3 derail either way
    (ten,) = _final(_judge(_est([0.0] * 7 + [1.0] * 3), _est([1.0] * 10), "lower", binary=True,
                           needs_convergence=False))
    assert ten.p == pytest.approx(0.015625) and ten.estimate == pytest.approx(-0.7) and ten.verdict == "supported"
    (both,) = _final(_judge(_est([1.0] * 3), _est([1.0] * 3), "lower", binary=True, needs_convergence=False))
    assert both.verdict == "no effect"  # clipping made no difference: every seed derailed either way
    # arms without a seed in common are independent: Fisher counts the runs
    (apart,) = _final(_judge(_est([0.0] * 3), _est([1.0] * 3, seeds=(5, 6, 7)), "lower", binary=True,
                             needs_convergence=False))
    assert apart.test == "Fisher" and apart.design == "unpaired" and apart.min_p == pytest.approx(0.1)
    assert "A lower than B on average" in finding(apart)


def test_equivalence_claims_need_a_margin_and_use_tost():
    with pytest.raises(ValueError, match="margin=None is invalid for a 'similar' claim"):
        _judge(_est([1.0, 2.0]), _est([1.0, 2.0]), "similar")
    b = [35.0, 35.4, 34.6, 35.2]
    (inside,) = _final(_judge(_est([35.05, 35.35, 34.62, 35.2]), _est(b), "similar", margin=0.5))
    assert inside.test == "TOST" and inside.verdict == "supported" and "within the declared margin" in finding(inside)
    (beyond,) = _final(_judge(_est([36.0, 36.5, 35.6, 36.2]), _est(b), "similar", margin=0.5))
    assert beyond.verdict == "contradicted" and "beyond the declared margin" in finding(beyond)
    (straddle,) = _final(_judge(_est([35.5, 35.2, 35.7, 35.5]), _est(b), "similar", margin=0.5))
    assert straddle.verdict == "inconclusive"
    # "no better" (lower is better): A far worse than B does not beat it; A far better contradicts it
    (worse,) = _final(_judge(_est([36.0, 36.5, 35.6, 36.2]), _est(b), "no better", margin=0.5))
    (better,) = _final(_judge(_est([34.0, 34.5, 33.6, 34.2]), _est(b), "no better", margin=0.5))
    assert (worse.verdict, better.verdict) == ("supported", "contradicted")
    # "nothing beat it" is no longer "no better": a noisy difference inside 2 se is inconclusive, not supported
    (noisy,) = _final(_judge(_est([34.5, 36.3, 33.6, 35.9]), _est(b), "no better", margin=0.5))
    assert noisy.verdict == "inconclusive"
    # "no better" is one-sided: A shown not to beat B by the margin, even where it is worse by about the margin
    (edge,) = _final(_judge(_est([35.5, 35.95, 35.05, 35.7]), _est(b), "no better", margin=0.5))
    assert edge.verdict == "supported" and edge.p < 1e-4 and "not below -0.5" in finding(edge)
    # a difference claim with a margin: a difference shown inside it is no effect
    (tiny,) = _final(_judge(_est([35.01, 35.41, 34.62, 35.2]), _est(b), "higher", margin=0.5))
    assert tiny.verdict == "no effect" and tiny.test == "TOST"


def test_holm_across_the_family_decides_the_verdicts():
    strong = _judge(_est([3.0, 3.2, 2.9, 3.1]), _est([1.0, 1.1, 0.9, 1.0]))
    weak = _judge(_est([1.2, 1.45, 0.95, 1.3]), _est([1.0, 1.1, 0.9, 1.0]))
    assert 0.01 < weak.p < 0.05 and weak.verdict == PENDING and weak.p_holm is None  # judged: a test, no verdict
    assert "waits for Holm's correction" in finding(weak)
    (alone,) = adjust([weak])
    assert alone.verdict == "supported" and alone.p_holm == pytest.approx(alone.p)
    assert weak.verdict == PENDING  # adjust returns new records: the notebook's stay as judged
    family = adjust([strong, weak] + [_judge(_est([1.0, 2.0, 3.0]), _est([1.5, 1.0, 3.5])) for _ in range(3)])
    assert family[0].verdict == "supported" and family[1].verdict == "inconclusive" and family[1].p_holm > weak.p
    assert "Holm-adjusted p" in finding(family[1])
    # the report reads the records back from the notebooks' metrics.json and applies Holm once, over all of them
    records = [weak.as_dict()] * 2 + [strong.as_dict()]  # two claims at p = 0.04 each: x3 and x2 under Holm
    again = adjust([Claim.from_dict(r) for r in records])
    assert again[0].verdict == "inconclusive" and again[0].p_holm > alone.p_holm
    untested = _judge(_est([1.0, math.nan, 2.0], converged=2, failures=("seed 1: x",)), _est([1.0, 2.0, 3.0]))
    assert [c.verdict for c in adjust([Claim.from_dict(untested.as_dict())])] == ["failed"]


def test_a_record_reads_back_as_the_same_claim():
    c = _final(_judge(_est([3.0, 3.2, 2.9]), _est([1.0, 1.1, 0.9]), margin=0.5))[0]
    assert Claim.from_dict(json.loads(json.dumps(c.as_dict()))) == c
    old = {k: v for k, v in c.as_dict().items() if k not in ("decision", "reason", "min_p", "kind", "pairs", "detail")}
    back = Claim.from_dict(old)  # a record from before the decision was kept: its verdict stands as the decision
    assert back.verdict == back.decision == "supported" and claim_rows([back])[0][-1] == "supported"
    before_plans = {k: v for k, v in c.as_dict().items() if k not in ("min_effect", "pilot_sd", "n_planned", "power")}
    back = Claim.from_dict(before_plans)  # a record from before the plan's keys: they read None
    assert (back.min_effect, back.pilot_sd, back.n_planned, back.power) == (None,) * 4 and back == c


def test_the_record_has_exactly_the_keys_and_no_nan():
    c = _final(_judge(_est([1.0, math.nan, 2.0], converged=2, failures=("seed 1: non-finite loss at step 2",)),
                      _est([1.0, 2.0, 3.0])))[0]
    r = c.as_dict()
    assert tuple(r) == RECORD_KEYS
    text = json.dumps(r, allow_nan=False)  # raises on nan
    assert "nan" not in text.lower() and "nan" not in finding(c).lower()
    assert r["values"][0]["values"] == [1.0, None, 2.0] and r["values"][0]["failed"] == [
        "seed 1: non-finite loss at step 2"]
    assert r["values"][0]["mean"] == 1.5 and r["n"] == [3, 3] and r["verdict"] == "failed"
    ok = _final(_judge(_est([3.0, 3.2, 2.9]), _est([1.0, 1.1, 0.9])))[0].as_dict()
    assert ok["design"] == "paired" and ok["test"] == "paired t" and len(ok["ci95"]) == 2 and ok["margin"] is None


def test_a_failed_run_never_leaks_nan_into_a_sentence():
    """Each setting has 2 finite seeds and one failed run: the old sentence said 'difference +nan'."""
    a = _est([1.0, 1.2, math.nan], converged=2, failures=("seed 2: non-finite loss at step 600 (beta 0.1)",))
    for needs in (True, False):
        c = _final(_judge(a, _est([0.5, 0.6, 0.55]), needs_convergence=needs))[0]
        assert "nan" not in finding(c).lower() and "nan" not in claims_table([c]).lower()
        assert c.verdict == "failed"
    early = _final(_judge(_est([1.0, 1.2, 1.1], converged=0), _est([0.5, 0.6, 0.55], converged=0),
                          needs_convergence=False))[0]
    assert early.verdict == "supported"  # a metric of the first steps does not wait for convergence


def test_pairing_follows_the_seeds_and_bad_claims_are_refused():
    a = _est([3.0, 1.0, 2.0], seeds=(2, 0, 1))
    b = _est([1.0, 2.0, 3.0], seeds=(0, 1, 2))
    c = _judge(a, b)
    assert c.design == "paired" and c.estimate == pytest.approx(0.0)  # seed 0: 1-1, seed 1: 2-2, seed 2: 3-3
    assert _judge(Estimate((1.0, 2.0, 3.0), 3), _est([0.0, 0.4, 0.3])).design == "unpaired"
    with pytest.raises(ValueError, match="direction='bigger' is invalid: allowed higher, lower, similar, no better"):
        _judge(_est([1.0, 2.0]), _est([1.0, 2.0]), "bigger")
    with pytest.raises(ValueError, match=r"arms=\('x', 'x'\) are invalid: allowed two different settings"):
        ClaimSpec("c", "s", "i", "m", ("x", "x"), "higher")
    one = _final(_judge(_est([1.0]), _est([2.0])))[0]
    assert one.verdict == "inconclusive" and "fewer than 2 seeds" in finding(one)


def test_sections_show_tests_and_the_table_shows_verdicts():
    claims = _final(_judge(_est([3.0, 3.2, 2.9]), _est([1.0, 1.1, 0.9])), _judge(_est([0.0] * 3), _est([0.0] * 3)))
    md = section_markdown(claims)
    assert "paired t (3 seeds paired)" in md and "no test: every seed" in md and "Holm's correction" in md
    table = claims_table(claims)
    assert table.count("\n") == 3 and "**supported**" in table and "**no effect**" in table
    assert tally([c.verdict for c in claims]) == {**{v: 0 for v in VERDICTS}, "supported": 1, "no effect": 1}


def test_the_lesson_helper_reads_rows_and_derailing_does_not_wait():
    from vaelib.lessons.stability_ablations import judged

    kept = [{"derailed": 0.0, "converged": True, "seed": s} for s in range(3)]
    derailed = [{"derailed": 1.0, "converged": False, "seed": s, "state": "derailed"} for s in range(3)]
    rows = {"clip 1": kept, "no clip": derailed}
    spec = ClaimSpec("clipping keeps training on track", "src", "stand-in", "share", ("clip 1", "no clip"), "lower",
                     key="derailed", binary=True, bounds=(0, 1), needs_convergence=False)
    (c,) = _final(*judged(rows, [spec]))
    assert c.test == "McNemar exact" and c.verdict == "needs the full budget"  # not "not converged": derailing is
    # the effect; 3 discordant pairs cannot give p below 0.25
    calm = {"clip 1": kept, "no clip": [{**r, "converged": True} for r in kept]}
    nothing = _final(*judged(calm, [spec]))[0]
    assert nothing.verdict == "untestable here"  # no seed derailed without clipping: nothing to prevent
    with pytest.raises(ValueError, match="reads 'derailed', a metric of the first steps or of how a run ended: "
                                         "allowed needs_convergence=False"):
        judged(rows, [ClaimSpec("c", "s", "i", "m", ("clip 1", "no clip"), "lower", key="derailed", binary=True)])
    with pytest.raises(ValueError, match="setting 'clip 2' is invalid: allowed one of clip 1, no clip"):
        judged(rows, [ClaimSpec("c", "s", "i", "m", ("clip 2", "no clip"), "lower", key="final")])
    loss = {"clip 1": [{"final": 30.0 + s, "converged": True, "seed": s} for s in range(3)],
            "no clip": [{"final": 900.0, "converged": False, "seed": s, "state": "derailed"} for s in range(3)]}
    (late,) = _final(*judged(loss, [ClaimSpec("t", "s", "i", "m", ("clip 1", "no clip"), "lower", key="final")]))
    assert late.verdict == "not converged" and "no clip: seed 0: derailed" in finding(late)
    assert estimate(loss["no clip"], "final").unsettled[0] == "seed 0: derailed"


def test_heavy_tails_are_judged_by_the_sign_test_on_the_median():
    """No clip at lr 0.02 ended at 93, 769 and 2805 nats, the clipped runs at about 33.7: every unclipped seed is
    worse, which a t test on 1222 ± 1400 cannot see."""
    clipped, unclipped = _est([33.5, 33.9, 33.7]), _est([93.0, 769.0, 2805.0])
    (t,) = _final(_judge(clipped, unclipped, "lower"))
    (robust,) = _final(_judge(clipped, unclipped, "lower", robust=True))
    assert t.test == "paired t" and t.p > 0.05
    assert robust.test == "sign" and robust.estimate == pytest.approx(33.9 - 769.0)
    assert robust.min_p == pytest.approx(0.25)
    assert "median 769 [93, 2805]" in finding(robust) and "needs the full budget" in finding(robust)


def test_a_design_that_cannot_test_the_claim_says_why():
    why = "on the beta = 16 objective the model that ignores its input scores better"
    (c,) = _final(_judge(_est([0.0, 1.0, 0.0]), _est([0.0] * 3), untestable=why))
    assert c.verdict == "untestable here" and why in finding(c) and c.p is None
    failed = _est([1.0, math.nan, 2.0], converged=2, failures=("seed 1: non-finite loss at step 2",))
    assert _final(_judge(failed, _est([0.0] * 3), untestable=why))[0].verdict == "failed"  # failures come first


def test_the_sign_test_takes_its_direction_from_the_signs_and_exact_tests_never_show_equivalence():
    a, b = [1.0] * 8 + [0.0] * 10, [0.0] * 8 + [0.0] * 10  # 8 seeds up, 10 unchanged: the median difference is 0
    (up,) = _final(_judge(_est(a), _est(b), robust=True))
    assert up.test == "sign" and up.estimate == 0.0 and up.verdict == "supported"
    (similar,) = _final(_judge(_est([1.0, 2.0, 3.0]), _est([0.0, 1.0, 2.0]), "similar", margin=0.5))
    assert similar.p is None and similar.verdict == "inconclusive" and "no equivalence test" in finding(similar)
    apart = _judge(Estimate((1.0, 2.0), 2, (0, 1)), Estimate((1.5, 2.5, 2.0), 3, (5, 6, 7)))
    assert apart.design == "unpaired" and apart.test == "Welch"  # no seed in common: independent arms


def test_min_effect_is_declared_with_the_claim_and_validated():
    spec = _spec(min_effect=0.05, min_effect_reason="below 0.05 nats no student would see it")
    assert spec.min_effect == 0.05 and _spec().min_effect is None  # optional: older declarations still construct
    for bad in (0, -0.1, math.nan, math.inf, True, "0.1"):
        with pytest.raises(ValueError, match=r"min_effect=.* is invalid: allowed None or a finite value > 0"):
            _spec(min_effect=bad)
    c = judge(spec, _est([3.0, 3.2, 2.9]), _est([1.0, 1.1, 0.9]))
    assert c.min_effect == 0.05 and c.as_dict()["min_effect"] == 0.05


def test_a_plan_powers_the_claims_test_at_holms_first_step():
    from vaelib.experiments import stats

    pilot = [-0.024, -0.076, -0.023]  # the clip 0.1 vs 0.5 differences of the worked example
    p = plan(_spec("lower", min_effect=0.05), pilot, family_size=16)
    assert p.test == "paired t" and p.pilot_sd == pytest.approx(0.0303, abs=1e-4) and p.pilot_pairs == 3
    assert p.alpha == pytest.approx(0.05 / 16) and p.n_planned == stats.seeds_for_power(0.05, p.pilot_sd, p.alpha)
    assert p.power >= 0.8 > stats.paired_t_power(0.05, p.pilot_sd, p.n_planned - 1, p.alpha)
    assert plan(_spec("lower", min_effect=0.05), pilot, family_size=1).n_planned < p.n_planned
    assert plan(_spec("lower", min_effect=0.001), pilot, 16, n_max=20).n_planned is None
    eq = plan(_spec("similar", margin=0.5), [0.3, -0.2, 0.1, 0.4, math.nan], family_size=20)
    assert eq.test == "TOST" and eq.pilot_pairs == 4 and eq.effect == 0.5  # a failed run's nan is dropped
    assert eq.power == pytest.approx(stats.tost_power(0.5, eq.pilot_sd, eq.n_planned, 0.0025))
    assert plan(_spec("no better", margin=0.5), [0.3, -0.2, 0.1, 0.4], 20).test == "one-sided t"
    with pytest.raises(ValueError, match="declares no min_effect"):
        plan(_spec("higher"), pilot, 16)
    with pytest.raises(ValueError, match="allowed 2 or more finite per-seed differences"):
        plan(_spec("higher", min_effect=0.1), [0.1, math.nan], 16)
    with pytest.raises(ValueError, match="differences that vary"):
        plan(_spec("higher", min_effect=0.1), [0.1, 0.1, 0.1], 16)
    with pytest.raises(ValueError, match="binary"):
        plan(_spec("lower", binary=True, min_effect=0.5), [1, 0, 1], 16)
    c = with_plan(judge(_spec("lower", min_effect=0.05), _est([1.728, 5.030, 4.208]), _est([1.752, 5.105, 4.231])),
                  p)
    r = json.loads(json.dumps(c.as_dict(), allow_nan=False))
    assert (r["min_effect"], r["pilot_sd"], r["n_planned"], r["power"]) == (0.05, p.pilot_sd, p.n_planned, p.power)
    assert Claim.from_dict(r) == c and tuple(r) == RECORD_KEYS


def test_a_test_that_cannot_pass_holms_first_step_is_not_run_and_needs_the_full_budget():
    clipped, unclipped = _est([33.5, 33.9, 33.7]), _est([93.0, 769.0, 2805.0])
    c = _judge(clipped, unclipped, "lower", robust=True, family_size=20)
    assert c.decision == c.verdict == FULL_BUDGET and c.p is None and c.test is None
    assert c.min_p == pytest.approx(0.25) and c.estimate == pytest.approx(33.9 - 769.0)
    text = finding(c)
    assert "n = 3 pairs" in text and "sign test" in text and "0.25" in text and "0.0025" in text
    assert "A lower than B on 3 of 3 seeds, not tested" in text
    derail = _judge(_est([0.0] * 3), _est([1.0] * 3), "lower", binary=True, needs_convergence=False, family_size=1)
    assert derail.verdict == FULL_BUDGET and "McNemar exact" in derail.reason and "not below 0.05" in derail.reason
    # enough seeds for the level: the test runs; a t test has no smallest p and always runs
    six = _judge(_est([0.0] * 6), _est([1.0] * 6), "lower", binary=True, needs_convergence=False, family_size=1)
    assert six.test == "McNemar exact" and six.verdict == PENDING
    assert _judge(_est([3.0, 3.2, 2.9]), _est([1.0, 1.1, 0.9]), family_size=20).verdict == PENDING
    # without family_size nothing changes: the sign test runs and adjust says the design could not decide
    assert _judge(clipped, unclipped, "lower", robust=True).test == "sign"
    # an equivalence claim is never sent for a bigger budget by an exact test: no n would let it show equivalence
    eq = _judge(_est([1.0, 2.0, 3.0]), _est([0.0, 1.0, 2.0]), "similar", margin=0.5, family_size=20)
    assert eq.verdict == "inconclusive" and "no equivalence test" in eq.reason
    # decided before Holm and outside its family: the tested claims' Holm p are as if it were absent
    strong = _judge(_est([3.0, 3.2, 2.9, 3.1]), _est([1.0, 1.1, 0.9, 1.0]))
    weak = _judge(_est([1.2, 1.45, 0.95, 1.3]), _est([1.0, 1.1, 0.9, 1.0]))
    family = adjust([c, strong, weak, Claim.from_dict(c.as_dict())])
    assert [x.verdict for x in family] == [FULL_BUDGET, "supported", "supported", FULL_BUDGET]
    assert family[0].p_holm is None and family[2].p_holm == pytest.approx(weak.p)  # Holm over 2 (x1), not 4 (x3)
    assert tally([x.verdict for x in family])[FULL_BUDGET] == 2


def test_the_direction_is_said_even_when_the_test_does_not_decide():
    a, b = _est([1.728, 5.030, 4.208]), _est([1.752, 5.105, 4.231])
    c = _judge(a, b, "lower")
    assert direction(c) == "A lower than B on 3 of 3 seeds" and "(A lower than B on 3 of 3 seeds)" in finding(c)
    late = adjust([c] * 16)[0]
    assert late.verdict == "inconclusive" and finding(late).endswith("A lower than B on 3 of 3 seeds, not significant.")
    assert direction(Claim.from_dict(late.as_dict())) == direction(c)  # read from the record alone
    mixed = _judge(_est([1.0, 2.0, 3.0]), _est([1.5, 1.0, 3.5]))
    assert direction(mixed) == "A lower than B on 2 of 3 seeds"
    assert direction(_judge(_est([1.0, 2.0, 3.0, 4.0]), _est([1.5, 1.0, 3.5, 4.0]))) == "A lower than B on 2 of 4 seeds"
    assert direction(_judge(_est([1.0, 2.0]), _est([1.5, 1.5]))) == "A higher than B on 1 and lower on 1 of 2 seeds"
    (same,) = adjust([_judge(_est([0.0] * 3), _est([0.0] * 3))])
    assert direction(same) == "" and finding(same).endswith("every seed gives the same value in both settings.")


@pytest.mark.parametrize("kind", ["higher", "similar"])
@pytest.mark.parametrize("margin", [math.inf, -math.inf, math.nan, 0, 0.0, -0.5, True, "0.5"])
def test_a_margin_must_be_finite_and_above_zero(kind, margin):
    with pytest.raises(ValueError) as err:
        _spec(kind, margin=margin)
    assert str(err.value) == f"margin={margin!r} is invalid: allowed a finite value > 0, in the metric's units"
    assert _spec(kind, margin=0.5).margin == 0.5 and _spec("lower", margin=2).margin == 2


def test_judge_best_min_p_follows_how_its_p_is_formed():
    """Robust claims take the sign test, whose smallest p on n nonzero pairs is 2 * 0.5**n."""
    best = _spec("lower", robust=True)
    a = _est([10.0] * 6)
    b, c = _est([11.0] * 6), _est([11.0] * 5 + [10.0])  # sign test floors: 6 nonzero pairs 2/64, 5 nonzero 2/32
    # supported: p is the largest rival p, so the floor is the largest rival floor
    ok = judge_best(best, a, [("B", b), ("C", c)])
    assert ok.decision == "supported" and ok.p == pytest.approx(2 / 32) and ok.min_p == pytest.approx(2 / 32)
    # contradicted: p is k times the smallest p of the rivals shown better (Bonferroni), and so is its floor
    worse = _est([12.0] * 6)
    against = judge_best(best, worse, [("B", b), ("C", _est([13.0] * 2 + [12.0] * 4))])  # C: 2 nonzero pairs
    assert against.decision == "contradicted" and against.settings[1] == "B"
    assert against.p == pytest.approx(2 * 2 / 64) and against.min_p == pytest.approx(2 * 2 / 64)
    assert against.detail["rivals"]["C"] == pytest.approx(0.5)  # C (floor 0.5) is beaten: the floor is B's, times 2
    # the floor is capped at 1, as p is
    five = [(name, _est([11.0] * 3)) for name in "BCDEF"]
    capped = judge_best(best, _est([12.0] * 3), five)
    assert capped.decision == "contradicted" and capped.p == capped.min_p == 1.0  # 5 * 0.25, capped
    # what it changes: two rivals each shown better on 6 of 6 seeds (floor 2/64 = 0.031 each) give p = 2 * 2/64 =
    # 0.0625, which can never pass alpha = 0.05: the claim leaves the family instead of counting as a test
    (out,) = adjust([judge_best(best, worse, [("B", b), ("C", _est([11.5] * 6))])])
    assert out.min_p == pytest.approx(0.0625) and out.verdict == FULL_BUDGET and out.p_holm is None
    # t tests have no floor: 0 in either case
    t_best = judge_best(_spec("lower"), _est([1.0, 1.1, 0.9, 1.05]), [("B", _est([2.0, 2.3, 1.8, 2.1]))])
    assert t_best.test.startswith("paired t") and t_best.min_p == 0.0


def test_judge_best_refuses_a_margin():
    with pytest.raises(ValueError, match="margin=0.5 is invalid for a best-of-a-sweep claim: allowed None"):
        judge_best(_spec("lower", margin=0.5), _est([1.0, 2.0]), [("B", _est([2.0, 3.0]))])


def test_a_claim_no_design_here_can_test_is_recorded_with_its_reason_and_stays_out_of_holm():
    from vaelib.experiments.claims import untestable

    spec = ClaimSpec("interpolation between classes is smooth", "a report §5", "mnist", "smoothness (undeclared)",
                     ("interpolated", "decoded codes"), "higher")
    c = untestable(spec, "no measure of smoothness is declared by the source")
    assert c.verdict == c.decision == "untestable here" and c.p is None and c.test is None
    assert c.reason == "no measure of smoothness is declared by the source"
    assert c.as_dict()["n"] == [0, 0] and Claim.from_dict(c.as_dict()).verdict == "untestable here"
    tested = judge(ClaimSpec("a < b", "s §1", "mnist", "m", ("a", "b"), "lower"),
                   Estimate((1.0, 2.0, 3.0), 3, (0, 1, 2)), Estimate((2.0, 3.5, 4.0), 3, (0, 1, 2)))
    out = adjust([c, tested])
    assert out[0].verdict == "untestable here" and out[0].p_holm is None and out[1].p_holm == pytest.approx(tested.p)
    with pytest.raises(ValueError, match="reason='' is invalid"):
        untestable(spec, "")


def test_a_difference_smaller_than_the_smallest_that_matters_is_tested_for_equivalence_within_it():
    spec = ClaimSpec("a steadier than b", "s §1", "mnist", "noise", ("a", "b"), "lower", min_effect=0.5,
                     min_effect_reason="half a unit")
    seeds = (0, 1, 2, 3, 4)
    a = Estimate((1.00, 1.10, 0.95, 1.05, 1.02), 5, seeds)
    b = Estimate((1.02, 1.11, 0.99, 1.06, 1.03), 5, seeds)  # a lower on every seed, by 0.02: far below 0.5
    c = judge(spec, a, b)
    assert c.test == "TOST" and c.margin == 0.5 and c.decision == "no effect" and c.p < 0.001
    assert adjust([c])[0].verdict == "no effect" and "within the declared margin ±0.5" in finding(adjust([c])[0])
    big = judge(spec, Estimate((0.0, 0.1, -0.05, 0.05, 0.02), 5, seeds), b)  # a lower by about 1: a difference test
    assert big.test == "paired t" and big.decision == "supported" and big.margin is None
    plain = judge(dataclasses.replace(spec, min_effect=None), a, b)  # no smallest effect declared: as before
    assert plain.test == "paired t"
