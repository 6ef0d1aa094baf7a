import numpy as np
import pytest
from scipy import stats as sps

from vaelib.experiments import stats


def test_paired_t_is_student_t_on_the_differences():
    a, b = [1.0, 2.0, 4.0], [0.5, 1.0, 3.0]
    t = stats.paired_t(a, b)
    d = np.subtract(a, b)
    half = sps.t.ppf(0.975, 2) * d.std(ddof=1) / np.sqrt(3)
    assert t.test == "paired t" and t.estimate == pytest.approx(d.mean()) and t.n == 3
    assert t.ci95 == pytest.approx((d.mean() - half, d.mean() + half))
    assert t.p == pytest.approx(2 * sps.t.sf(d.mean() / (d.std(ddof=1) / np.sqrt(3)), 2))
    with pytest.raises(ValueError, match="not all equal"):
        stats.paired_t([1.0, 2.0], [0.0, 1.0])


def test_shared_noise_a_paired_test_resolves_what_an_unpaired_one_cannot():
    """The clip 0.1 vs 0.5 numbers: the seeds differ a lot, each seed's two runs little (noise shared by seed)."""
    seed_effect = np.array([1.7, 3.6, 5.6])
    a = seed_effect + np.array([-0.024, -0.075, -0.023])
    b = seed_effect
    assert stats.welch(a, b).p > 0.9  # unpaired: the seeds' spread swamps the difference
    paired = stats.paired_t(a, b)
    assert paired.p < 0.2 and paired.ci95[1] < 0.05  # paired: the per-seed differences are all about -0.04
    # a stronger shared-noise set: the unpaired test sees nothing, the paired one a clear difference
    a2 = seed_effect + np.array([-0.10, -0.11, -0.09])
    assert stats.welch(a2, b).p > 0.9 and stats.paired_t(a2, b).p < 0.01


def test_tost_inside_outside_and_straddling_the_margin():
    b = np.array([35.0, 35.4, 34.6, 35.2])
    inside, beyond, _ = stats.tost(b + np.array([0.05, -0.05, 0.02, 0.0]), b, margin=0.5)
    assert inside.p < 0.05 and beyond.p > 0.5  # 90% interval well within ±0.5
    inside, beyond, _ = stats.tost(b + np.array([2.0, 2.1, 1.9, 2.0]), b, margin=0.5)
    assert inside.p > 0.5 and beyond.p < 0.05  # beyond +0.5
    inside, beyond, _ = stats.tost(b + np.array([0.5, -0.2, 1.1, 0.3]), b, margin=0.5)
    assert inside.p >= 0.05 and beyond.p >= 0.05  # the interval straddles the margin: neither
    # TOST at level 0.05 is the 90% interval inside the margin (Schuirmann, 1987)
    d = np.array([0.1, -0.2, 0.3, 0.05])
    inside, _, _ = stats.tost(b + d, b, margin=0.5)
    half90 = sps.t.ppf(0.95, 3) * d.std(ddof=1) / 2
    assert (inside.p < 0.05) == (abs(d.mean()) + half90 < 0.5)
    _, _, above = stats.tost(b + 0.4, b + np.array([0.0, 0.1, -0.1, 0.0]), margin=0.5, paired=False)
    assert above.p < 0.05  # one-sided: A is not lower than B by 0.5 (it is higher)
    with pytest.raises(ValueError, match="with some spread"):
        stats.tost([1.0, 1.0], [2.0, 2.0], margin=0.5, paired=False)
    with pytest.raises(ValueError, match="margin=0"):
        stats.tost(b, b + 1, margin=0)


@pytest.mark.parametrize("margin", [np.inf, np.nan, -0.5, True])
def test_tost_refuses_a_margin_that_is_not_finite_and_above_zero(margin):
    b = np.array([35.0, 35.4, 34.6, 35.2])
    with pytest.raises(ValueError) as err:
        stats.tost(b + np.array([0.05, -0.05, 0.02, 0.0]), b, margin=margin)
    assert str(err.value) == f"margin={margin!r} is invalid: allowed a finite value > 0, in the metric's units"


def test_fisher_exact_p_of_3_of_3_against_0_of_3_is_one_tenth():
    t = stats.fisher([1, 1, 1], [0, 0, 0])
    assert t.p == pytest.approx(0.1) and t.min_p == pytest.approx(0.1) and t.estimate == 1.0
    assert stats.fisher([1] * 6, [0] * 6).p == pytest.approx(2 / 924)  # 6 vs 6 could decide: p = 0.002
    lo, hi = t.ci95
    assert 0 < lo < 1 and hi == pytest.approx(1.0)
    with pytest.raises(ValueError, match="0 or 1"):
        stats.fisher([0.5, 1], [0, 0])


def test_sign_test_needs_no_variance():
    t = stats.sign_test([32, 32, 32], [0, 0, 0])
    assert t.p == pytest.approx(0.25) and t.min_p == pytest.approx(0.25) and t.ci95 is None  # 3 pairs: no 95% CI
    six = stats.sign_test([5, 6, 7, 8, 9, 10], [0] * 6)
    assert six.p == pytest.approx(2 / 64) and six.ci95 == (5.0, 10.0)  # [d_(1), d_(6)] covers 1 - 2/64
    with pytest.raises(ValueError, match="all 0"):
        stats.sign_test([1, 2], [1, 2])


def test_holm_on_a_known_list():
    # sorted 0.005, 0.01, 0.03, 0.04: x4, x3, x2, x1 = 0.02, 0.03, 0.06, 0.04 -> monotone 0.02, 0.03, 0.06, 0.06
    assert stats.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert stats.holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # capped at 1
    assert stats.holm([]) == []
    with pytest.raises(ValueError, match="p values"):
        stats.holm([0.1, 1.5])
