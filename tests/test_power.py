import math

import numpy as np
import pytest
from scipy import stats as sps

from vaelib.experiments import stats


def _simulated_t_power(effect, sd, n, alpha, draws=20000, seed=0):
    d = np.random.default_rng(seed).normal(effect, sd, size=(draws, n))
    t = d.mean(axis=1) / (d.std(axis=1, ddof=1) / np.sqrt(n))
    return float(np.mean(np.abs(t) > sps.t.ppf(1 - alpha / 2, n - 1)))


def test_paired_t_power_is_the_textbook_value_and_matches_a_simulation():
    # n = 10 pairs, an effect of 1 sd, alpha 0.05 two-sided: 0.803 (G*Power, Cohen's tables: about 0.80)
    assert stats.paired_t_power(1.0, 1.0, 10) == pytest.approx(0.8031, abs=5e-4)
    assert stats.paired_t_power(1.0, 1.0, 10) == pytest.approx(_simulated_t_power(1.0, 1.0, 10, 0.05), abs=0.01)
    assert stats.paired_t_power(0.4, 0.5, 6, 0.01) == pytest.approx(_simulated_t_power(0.4, 0.5, 6, 0.01), abs=0.01)
    # only the ratio effect / sd matters, and no effect rejects at the level itself
    assert stats.paired_t_power(3.0, 3.0, 10) == pytest.approx(stats.paired_t_power(1.0, 1.0, 10))
    assert stats.paired_t_power(0.0, 1.0, 5) == pytest.approx(0.05)
    assert stats.paired_t_power(-1.0, 1.0, 10, sided=1) < 0.05 < stats.paired_t_power(1.0, 1.0, 10, sided=1)
    # the review's point: 3 seeds need an observed mean of t_0.975(2) / sqrt(3) = 2.48 sd for p < 0.05; a true
    # 2.5 sd reaches it about 62% of the time, and almost never at Holm's first step of 20 claims
    assert sps.t.ppf(0.975, 2) / np.sqrt(3) == pytest.approx(2.48, abs=0.01)
    assert 0.55 < stats.paired_t_power(2.5, 1.0, 3) < 0.7
    assert stats.paired_t_power(2.5, 1.0, 3, stats.first_step_alpha(20)) < 0.05
    for bad, match in [(dict(sd=0.0), "sd=0.0 is invalid"), (dict(n=1), "n=1 is invalid"),
                       (dict(alpha=1.5), "alpha=1.5 is invalid"), (dict(sided=3), "sided=3 is invalid")]:
        with pytest.raises(ValueError, match=match):
            stats.paired_t_power(**{"effect": 1.0, "sd": 1.0, "n": 5, **bad})


def test_holms_first_step_is_alpha_over_m():
    assert stats.first_step_alpha(20) == pytest.approx(0.0025) and stats.first_step_alpha(1) == 0.05
    with pytest.raises(ValueError, match="family_size=0 is invalid"):
        stats.first_step_alpha(0)


def test_seeds_for_power_is_the_first_n_reaching_it_and_monotone():
    n = stats.seeds_for_power(1.0, 1.0)
    assert n == 10  # 0.803 at 10 pairs, below 0.8 at 9
    assert stats.paired_t_power(1.0, 1.0, n) >= 0.8 > stats.paired_t_power(1.0, 1.0, n - 1)
    by_effect = [stats.seeds_for_power(e, 1.0) for e in (0.5, 0.8, 1.0, 1.5, 3.0)]
    by_sd = [stats.seeds_for_power(1.0, s) for s in (0.3, 0.6, 1.0, 1.4)]
    assert by_effect == sorted(by_effect, reverse=True) and by_effect[0] > by_effect[-1]
    assert by_sd == sorted(by_sd) and by_sd[0] < by_sd[-1]
    m = stats.first_step_alpha(20)
    assert stats.seeds_for_power(1.0, 1.0, m) > n  # a family of 20 asks for more seeds
    assert stats.seeds_for_power(0.05, 1.0, n_max=50) is None  # a tiny effect: beyond any budget here
    with pytest.raises(ValueError, match="effect=0 is invalid"):
        stats.seeds_for_power(0, 1.0)
    with pytest.raises(ValueError, match="power=1 is invalid"):
        stats.seeds_for_power(1.0, 1.0, power=1)


def _simulated_tost_power(margin, sd, n, alpha, draws=20000, seed=1):
    d = np.random.default_rng(seed).normal(0.0, sd, size=(draws, n))
    mean, se = d.mean(axis=1), d.std(axis=1, ddof=1) / np.sqrt(n)
    half = sps.t.ppf(1 - alpha, n - 1) * se
    return float(np.mean((mean - half > -margin) & (mean + half < margin)))


def test_tost_power_is_exact_and_rises_with_n_and_with_the_margin():
    for margin, sd, n in [(0.5, 0.2, 3), (0.5, 0.5, 10), (1.0, 0.3, 4)]:
        assert stats.tost_power(margin, sd, n) == pytest.approx(_simulated_tost_power(margin, sd, n, 0.05), abs=0.01)
    by_n = [stats.tost_power(0.5, 0.5, n) for n in (2, 3, 5, 8, 13, 20)]
    by_margin = [stats.tost_power(m, 0.5, 5) for m in (0.1, 0.3, 0.5, 0.8, 1.2)]
    assert all(x < y for x, y in zip(by_n, by_n[1:])) and all(x < y for x, y in zip(by_margin, by_margin[1:]))
    # the review's point: 3 seeds at a true difference of 0 rarely show equivalence within 0.5 at an sd of 0.5
    assert stats.tost_power(0.5, 0.5, 3) < 0.2
    n = stats.seeds_for_tost(0.5, 0.5)
    assert stats.tost_power(0.5, 0.5, n) >= 0.8 > stats.tost_power(0.5, 0.5, n - 1)
    assert stats.seeds_for_tost(0.5, 0.5, stats.first_step_alpha(20)) > n
    with pytest.raises(ValueError, match="margin=-0.5 is invalid"):
        stats.tost_power(-0.5, 0.5, 5)
    with pytest.raises(ValueError, match="margin=True is invalid: allowed a finite value > 0"):
        stats.seeds_for_tost(True, 0.5)
    with pytest.raises(ValueError, match="effect=inf is invalid: allowed a finite value > 0"):
        stats.seeds_for_power(float("inf"), 0.5)


def test_mcnemar_exact_counts_only_the_discordant_pairs():
    a, b = [1] * 7 + [0, 1, 1], [0] * 7 + [0, 1, 1]  # b = 7 (A only), c = 0, 3 concordant
    t = stats.mcnemar_exact(a, b)
    assert t.test == "McNemar exact" and t.p == pytest.approx(2 * 0.5**7) == pytest.approx(0.015625)
    assert t.min_p == pytest.approx(2 * 0.5**7) and t.estimate == pytest.approx(0.7) and t.n == 10
    lo, hi = t.ci95
    assert -1 <= lo < 0.7 < hi <= 1 and lo > 0  # Newcombe's paired interval excludes 0 here
    mixed = stats.mcnemar_exact([1, 1, 1, 1, 0, 0], [0, 0, 0, 1, 1, 0])  # b = 3, c = 1
    assert mixed.p == pytest.approx(sps.binomtest(3, 4, 0.5).pvalue) and mixed.min_p == pytest.approx(0.125)
    three = stats.mcnemar_exact([0, 0, 0], [1, 1, 1])
    assert three.p == three.min_p == pytest.approx(0.25)  # 3 of 3 against 0 of 3, paired: 0.25, not Fisher's 0.1
    assert stats.mcnemar_exact([1, 0], [1, 0]).p == 1.0 and stats.mcnemar_exact([1], [0]).min_p == 1.0
    with pytest.raises(ValueError, match="0 or 1 per seed"):
        stats.mcnemar_exact([1, 0.5], [0, 0])
    with pytest.raises(ValueError, match="equally long"):
        stats.mcnemar_exact([1, 0, 1], [0, 0])


def test_adjust_takes_a_test_that_cannot_reach_its_holm_step_out_of_the_family():
    """Among 10 tested claims the first Holm step is 0.005: a sign test on 3 pairs (smallest p 0.25) cannot reach
    it, so it reads 'needs the full budget' and the family shrinks to the 9 t tests."""
    import dataclasses

    from vaelib.experiments.claims import FULL_BUDGET, Claim, adjust

    base = Claim("c", "s", "x", "m", "lower", (), test="paired t", p=0.001, min_p=0.0, pairs=3, decision="supported")
    claims = [dataclasses.replace(base, claim=f"t{i}") for i in range(9)]
    claims.append(dataclasses.replace(base, claim="sign", test="sign test", p=0.25, min_p=0.25))
    out = adjust(claims)
    sign = out[-1]
    assert sign.verdict == FULL_BUDGET and sign.p_holm is None
    assert "3 pairs" in sign.reason and "0.25" in sign.reason and "0.005" in sign.reason
    assert all(c.verdict == "supported" for c in out[:9])
    assert out[0].p_holm == 0.001 * 9  # Holm's first step over the 9 tests left


def test_power_is_a_number_deep_in_the_tails_where_scipys_series_gives_nan():
    """scipy.stats.nct.cdf(-5.95, 5, 6.96) is nan: the lower tail of a strong effect. The power must still be a
    number, rise with n, and the seeds found must be the first n that reaches the target."""
    level = stats.first_step_alpha(26)
    powers = [stats.paired_t_power(0.05, 0.0176, n, level) for n in range(2, 13)]
    assert all(math.isfinite(p) for p in powers) and powers == sorted(powers)
    n = stats.seeds_for_power(0.05, 0.0176, level)
    assert stats.paired_t_power(0.05, 0.0176, n, level) >= 0.8 > stats.paired_t_power(0.05, 0.0176, n - 1, level)
    assert n == 7  # not 11, where the nan powers of 6, 8, 9 and 10 sent it before
