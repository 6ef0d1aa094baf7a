import json
import math

import pytest

from vaelib.evidence import Claim, Estimate, claims_table, compare, convergence, estimate, finding, verdict
from vaelib.history import History


def _history(curve, beta=1.0, kl=0.0):
    """A fit-like history whose validation objective at the final beta follows `curve`."""
    return History(epochs=[{"val_recon": v - beta * kl, "val_kl": kl, "beta": beta} for v in curve])


def test_convergence_rule_on_synthetic_histories():
    flat = convergence(_history([100, 60, 50, 49.9, 49.8, 49.8, 49.7, 49.7, 49.7, 49.6]))
    assert flat["converged"] and flat["share"] == pytest.approx((49.7 - 49.6) / (100 - 49.6))  # last 2 of 10
    assert flat["improvement"] == pytest.approx((49.7 - 49.6) / 49.7)
    falling = convergence(_history([100, 90, 80, 70, 60, 50, 40, 30, 20, 10]))
    assert not falling["converged"] and falling["share"] == pytest.approx(20 / 90)
    slow = _history([100, 60, 50, 48, 46, 44, 42, 40, 38, 36])  # still falling by 2 per epoch at the end
    assert not convergence(slow)["converged"] and convergence(slow, tol=0.2)["converged"]  # 4/64 of the drop
    assert convergence(_history([50] * 10))["converged"]  # flat from the start (e.g. frozen): nothing to gain
    assert not convergence(_history([50, 52, 55, 60, 70, 80, 95, 110, 130, 150]))["converged"]  # diverging
    noisy_before = _history([100, 60, 50, 40, 41, 40.5, 60, 40.2, 40.1, 40.0])  # one bad epoch before the window
    assert convergence(noisy_before)["share"] == pytest.approx(0)  # measured from the best before, not the spike
    cyc = _history([100, 60, 50, 45, 44, 43, 42, 41.5, 41, 40.5, 40, 39.5])
    assert convergence(cyc)["converged"] and not convergence(cyc, min_window=6)["converged"]  # a whole cycle
    assert not convergence(_history([10, 10, 10]))["converged"]  # too short to judge
    assert not convergence(_history([10, 10, 10, 10, float("nan")]))["converged"]
    # the objective is taken at the final beta, so a warmup (beta 0 then 1) is judged on the final objective
    warm = History(epochs=[{"val_recon": 20, "val_kl": 30, "beta": 0.0}] * 3
            + [{"val_recon": 25, "val_kl": 10, "beta": 1.0}] * 5)
    assert convergence(warm)["converged"]  # 35 nats flat over the last epochs
    with pytest.raises(ValueError, match="tol=2"):
        convergence(_history([1] * 10), tol=2)


def _est(values, converged=None):
    return Estimate(tuple(values), len(values) if converged is None else converged)


def test_verdict_rule_overlap_separation_and_convergence():
    low, high = _est([1.0, 1.1, 0.9]), _est([3.0, 3.1, 2.9])
    assert verdict(high, low, "higher")["verdict"] == "supported"
    assert verdict(high, low, "lower")["verdict"] == "contradicted"
    noisy_a, noisy_b = _est([1.0, 2.0, 3.0]), _est([1.5, 2.5, 3.5])
    assert verdict(noisy_b, noisy_a, "higher")["verdict"] == "inconclusive"  # 0.5 apart, se about 0.82
    v = verdict(high, low, "higher")
    assert v["difference"] == pytest.approx(2.0) and v["standard_error"] == pytest.approx(math.sqrt(2 * 0.01 / 3))
    assert verdict(high, _est([1.0, 1.1, 0.9], converged=2), "higher")["verdict"] == "not converged"
    assert verdict(_est([3.0]), low, "higher")["verdict"] == "inconclusive"  # one seed: no uncertainty
    assert verdict(_est([3.0], converged=0), low, "higher")["verdict"] == "inconclusive"  # fewer than 2 seeds first
    # every seed identical (se = 0): any difference counts as separated, no difference as inconclusive
    assert verdict(_est([32.0, 32.0, 32.0]), _est([19.0, 19.0, 19.0]), "higher")["verdict"] == "supported"
    assert verdict(_est([32.0, 32.0]), _est([32.0, 32.0]), "higher")["verdict"] == "inconclusive"
    # early-noise metrics do not wait for convergence
    unsettled = _est([3.0, 3.1, 2.9], converged=0)
    assert verdict(unsettled, low, "higher", needs_convergence=False)["verdict"] == "supported"
    # "A is no better than B" (lower is better): contradicted only when A is lower by more than 2 se
    assert verdict(noisy_a, noisy_b, "no better")["verdict"] == "supported"
    assert verdict(low, high, "no better")["verdict"] == "contradicted"
    assert verdict(high, low, "no better")["verdict"] == "supported"
    with pytest.raises(ValueError, match="direction='bigger' is invalid"):
        verdict(high, low, "bigger")


def test_whether_a_run_derailed_is_judged_on_every_run_settled_or_not():
    """'Clipping keeps training from derailing': a derailed run never converges (that is the effect), and a failed
    run's value is final, so the `derailed` claim does not wait for convergence."""
    from vaelib.lessons.stability_ablations import claim

    kept = [{"derailed": 0.0, "converged": True}] * 3
    derailed = [{"derailed": 1.0, "converged": False}] * 3
    failed_too = [{"derailed": 1.0, "converged": True}, {"derailed": 1.0, "converged": False}] * 1 + [
        {"derailed": 1.0, "converged": True}]
    rows = {"clip 1": kept, "no clip": derailed, "clip 1 (shapes)": failed_too}
    c = claim(rows, "clip 1", "no clip", "derailed", "lower", "clipping keeps training on track", "test", "share")
    assert c.verdict == "supported" and "**supported**" in finding(c)
    same = claim(rows, "clip 1 (shapes)", "no clip", "derailed", "lower", "clipping keeps training on track", "t", "s")
    assert same.verdict == "inconclusive"  # both derail on every seed: no difference, whatever converged
    loss = {"clip 1": [{"final": 30.0, "converged": True}] * 3, "no clip": [{"final": 900.0, "converged": False}] * 3}
    assert claim(loss, "clip 1", "no clip", "final", "lower", "t", "s", "m").verdict == "not converged"  # a loss waits


def test_estimate_and_its_text():
    rows = [{"x": 1.0, "converged": True}, {"x": 3.0, "converged": False}]
    e = estimate(rows, "x")
    assert (e.mean, e.n, e.converged, e.all_converged) == (2.0, 2, 1, False)
    assert e.std == pytest.approx(math.sqrt(2)) and str(e) == "2 ± 1.4"
    assert str(_est([5.0])) == "5" and math.isnan(_est([5.0]).std)
    # a failed seed (nan) is counted, never printed as "nan ± nan", and the mean over all seeds stays nan
    with_failure = _est([1.0, 3.0, math.nan])
    assert str(with_failure) == "2 ± 1.4 (1 of 3 runs failed)" and math.isnan(with_failure.mean)
    assert str(_est([math.nan, math.nan])) == "no value (2 of 2 runs failed)"
    assert with_failure.describe() == "2 ± 1.4 (3 seeds, 1 failed, 3 converged)"  # _est counts all converged
    assert _est([5.0, 7.0], converged=1).describe() == "6 ± 1.4 (2 seeds, 1 converged)"


def test_findings_are_written_from_the_numbers():
    def claim(a_values):
        return compare("clipping at 0.1 is steadier than at 0.5", "report A §4.1", "early volatility",
                       ("clip 0.1", _est(a_values)), ("clip 0.5", _est([0.5, 0.52, 0.48])), "lower")

    steady, noisy = claim([0.1, 0.11, 0.09]), claim([0.9, 0.95, 0.85])
    assert steady.verdict == "supported" and noisy.verdict == "contradicted"
    a, b = finding(steady), finding(noisy)
    assert a != b and a.startswith("**supported**") and b.startswith("**contradicted**")
    assert "clip 0.1 0.1 ± 0.01 (3 seeds, 3 converged), clip 0.5 0.5 ± 0.02" in a and "0.9 ± 0.05" in b
    assert "difference -0.4" in a and "difference +0.4" in b
    table = claims_table([steady, noisy])
    assert table.count("\n") == 3 and "**contradicted**" in table
    assert set(steady.as_dict()) >= {"claim", "source", "metric", "values", "verdict"}
    # saved as JSON with sorted keys (save_json) and read back, A and B keep their order and their finding
    again = json.loads(json.dumps(steady.as_dict(), sort_keys=True))
    assert [v["setting"] for v in again["values"]] == ["clip 0.1", "clip 0.5"]
    assert finding(Claim(**again)) == a
    with pytest.raises(ValueError, match="settings 'x' and 'x' are invalid"):
        compare("c", "s", "m", ("x", _est([1.0, 2.0])), ("x", _est([1.0, 2.0])), "higher")
    one = compare("c", "s", "m", ("a", _est([1.0])), ("b", _est([2.0])), "higher")
    assert one.verdict == "inconclusive" and "fewer than 2 seeds per setting: no standard error" in finding(one)
    late = compare("c", "s", "m", ("a", _est([3.0, 3.1], converged=1)), ("b", _est([1.0, 1.1])), "higher")
    assert finding(late).startswith("**not converged**")
    assert "but not every run converged (a: 1 of 2 did not converge), so this is not a result" in finding(late)
    broke = compare("c", "s", "m", ("a", _est([3.0, float("nan"), 3.2], converged=1)), ("b", _est([1.0, 1.1])),
                    "higher")  # one run failed, one is still learning
    assert "(a: 1 of 3 failed (non-finite loss), 1 of 3 did not converge)" in finding(broke)
    old = Claim(**{**late.as_dict(), "detail": {"difference": 2.0, "standard_error": 0.1}})  # saved before "runs"
    assert "but not every run converged (see the table)" in finding(old)


def test_a_no_better_finding_says_whether_the_alternative_is_even_worse():
    def claim(a_values):
        return compare("annealing is no better than static", "report A §4.2", "test -ELBO",
                       ("linear", _est(a_values)), ("static", _est([35.0, 35.2, 34.8])), "no better")

    worse, same, better = claim([36.0, 36.2, 35.8]), claim([35.1, 35.3, 34.9]), claim([33.0, 33.2, 32.8])
    assert (worse.verdict, same.verdict, better.verdict) == ("supported", "supported", "contradicted")
    assert "linear does not beat static: it is worse by more than twice" in finding(worse)
    assert "linear does not beat static by more than twice" in finding(same)
    assert "linear beats static by more than twice" in finding(better)


def test_a_failed_seed_shows_as_nan_and_blocks_the_verdict():
    rows = [{"x": 1.0, "converged": True}, {"converged": False}]  # the second run failed: no metric
    e = estimate(rows, "x")
    assert e.n == 2 and e.converged == 1 and math.isnan(e.mean)
    assert verdict(e, _est([5.0, 5.1]), "lower")["verdict"] == "not converged"
