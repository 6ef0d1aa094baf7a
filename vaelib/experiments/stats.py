"""The statistical tests the verdicts rest on, on plain per-seed numbers: paired t, Welch, two one-sided tests
(TOST), Fisher's exact test, the exact sign test, and Holm's adjustment. Distributions come from scipy.stats.

Every test returns a `Test`: the estimate (A - B, in the metric's units), its 95% interval, and the p value of
the question asked. Differences are A minus B; "paired" means value i of A and value i of B share a seed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

ALPHA = 0.05  # family-wise error rate of one report's claims (Holm)


@dataclass(frozen=True)
class Test:
    """One test's result. ci95 is None where no 95% interval exists (an exact sign test on fewer than 6 pairs)."""

    test: str  # 'paired t' | 'Welch' | 'TOST' | 'Fisher' | 'sign'
    estimate: float  # A - B (mean paired difference, difference of means, or of shares), metric units
    ci95: tuple[float, float] | None
    p: float  # two-sided p of "no difference" (TOST: p of "not within the margin")
    n: int  # pairs (paired) or the smaller arm (unpaired)
    min_p: float = 0.0  # the smallest p this design could give at all (exact tests); 0 for t tests


def _finite(x: Sequence[float]) -> np.ndarray:
    a = np.asarray(x, dtype=float)
    if a.ndim != 1 or not np.isfinite(a).all():
        raise ValueError(f"values {list(x)!r} are invalid: allowed a flat list of finite numbers")
    return a


def _interval(ci) -> tuple[float, float]:
    return float(ci.low), float(ci.high)


def paired_t(a: Sequence[float], b: Sequence[float]) -> Test:
    """Student's t on the per-seed differences a_i - b_i (n - 1 degrees of freedom); needs 2 or more pairs
    whose differences are not all equal (then the t statistic is undefined: use sign_test)."""
    d = _finite(a) - _finite(b)
    if len(d) < 2 or np.ptp(d) == 0:
        raise ValueError(f"differences {d.tolist()!r} are invalid for a paired t test: allowed 2 or more "
                         "that are not all equal")
    r = stats.ttest_1samp(d, 0.0)
    return Test("paired t", float(d.mean()), _interval(r.confidence_interval(0.95)), float(r.pvalue), len(d))


def welch(a: Sequence[float], b: Sequence[float]) -> Test:
    """Welch's t test of two independent samples (no equal variances assumed); 2 or more values each, not both
    without spread."""
    x, y = _finite(a), _finite(b)
    if min(len(x), len(y)) < 2 or (np.ptp(x) == 0 and np.ptp(y) == 0):
        raise ValueError("values are invalid for Welch's test: allowed 2 or more per arm, with some spread")
    r = stats.ttest_ind(x, y, equal_var=False)
    return Test("Welch", float(x.mean() - y.mean()), _interval(r.confidence_interval(0.95)), float(r.pvalue),
                min(len(x), len(y)))


def sign_test(a: Sequence[float], b: Sequence[float]) -> Test:
    """The exact sign test over pairs: how many differences a_i - b_i are positive among the nonzero ones, against
    a fair coin (binomial, two-sided). It needs no variance, so it judges differences that are all equal. The 95%
    interval of the median difference is the order-statistic one, None with fewer than 6 pairs (none exists)."""
    d = _finite(a) - _finite(b)
    nonzero = d[d != 0]
    if not len(nonzero):
        raise ValueError("differences are all 0: a sign test has nothing to count")
    k, n = int((nonzero > 0).sum()), len(nonzero)
    p = float(stats.binomtest(k, n, 0.5).pvalue)
    ci = None
    s = np.sort(d)
    j = int(stats.binom.ppf(0.025, len(d), 0.5))  # the interval [d_(j), d_(n-j+1)] covers >= 95% when j >= 1
    while j >= 1 and 2 * stats.binom.cdf(j - 1, len(d), 0.5) > 0.05:
        j -= 1
    if j >= 1:
        ci = (float(s[j - 1]), float(s[len(d) - j]))
    return Test("sign", float(np.median(d)), ci, p, len(d), min_p=float(stats.binomtest(n, n, 0.5).pvalue))


def _shift(a: Sequence[float], b: Sequence[float], paired: bool) -> tuple[float, float, float, int]:
    """(estimate of A - B, its standard error, degrees of freedom, n) for a paired or a Welch comparison."""
    if paired:
        d = _finite(a) - _finite(b)
        if len(d) < 2 or np.ptp(d) == 0:
            raise ValueError("differences are invalid for TOST: allowed 2 or more that are not all equal")
        return float(d.mean()), float(d.std(ddof=1) / math.sqrt(len(d))), len(d) - 1, len(d)
    x, y = _finite(a), _finite(b)
    if min(len(x), len(y)) < 2 or (np.ptp(x) == 0 and np.ptp(y) == 0):
        raise ValueError("values are invalid for TOST: allowed 2 or more per arm, with some spread")
    va, vb = x.var(ddof=1) / len(x), y.var(ddof=1) / len(y)
    df = (va + vb) ** 2 / (va**2 / (len(x) - 1) + vb**2 / (len(y) - 1))  # Welch-Satterthwaite
    return float(x.mean() - y.mean()), float(math.sqrt(va + vb)), df, min(len(x), len(y))


def tost(a: Sequence[float], b: Sequence[float], margin: float, paired: bool = True) -> tuple[Test, Test, Test]:
    """Two one-sided tests (Schuirmann, 1987) of |A - B| < margin: (TOST, beyond, above).

    TOST.p is the larger of the one-sided p values of "difference <= -margin" and "difference >= +margin" (below
    alpha exactly when the 90% interval lies inside the margin); beyond.p is the one-sided p of "the difference lies
    inside the margin" against the side the estimate falls on (small when the 90% interval lies beyond it); above.p
    is the one-sided p of "difference <= -margin" alone: A does not beat B (lower is better) by the margin."""
    if not margin > 0:
        raise ValueError(f"margin={margin!r} is invalid: allowed a value > 0 in the metric's units")
    est, se, df, n = _shift(a, b, paired)
    t = stats.t(df)
    p_low, p_high = t.sf((est + margin) / se), t.cdf((est - margin) / se)  # H0: d <= -m ; H0: d >= +m
    half = t.ppf(0.975) * se
    ci = (est - half, est + half)
    beyond = t.cdf((est + margin) / se) if est < 0 else t.sf((est - margin) / se)  # H0: inside, on that side
    return (Test("TOST", est, ci, float(max(p_low, p_high)), n), Test("TOST", est, ci, float(beyond), n),
            Test("TOST", est, ci, float(p_low), n))


def fisher(a: Sequence[float], b: Sequence[float]) -> Test:
    """Fisher's exact test on two arms of 0/1 outcomes (two-sided); the 95% interval of the difference of shares
    is Newcombe's (1998, method 10) from Wilson score intervals."""
    x, y = _finite(a), _finite(b)
    if not set(np.unique(np.concatenate([x, y]))) <= {0.0, 1.0}:
        raise ValueError("values are invalid for Fisher's test: allowed 0 or 1 per seed")
    ka, kb, na, nb = int(x.sum()), int(y.sum()), len(x), len(y)
    p = float(stats.fisher_exact([[ka, na - ka], [kb, nb - kb]]).pvalue)
    extreme = float(stats.fisher_exact([[na, 0], [0, nb]]).pvalue)  # all of A against none of B
    pa, pb = ka / na, kb / nb
    la, ua = _interval(stats.binomtest(ka, na).proportion_ci(0.95, method="wilson"))
    lb, ub = _interval(stats.binomtest(kb, nb).proportion_ci(0.95, method="wilson"))
    d = pa - pb
    ci = (d - math.sqrt((pa - la) ** 2 + (ub - pb) ** 2), d + math.sqrt((ua - pa) ** 2 + (pb - lb) ** 2))
    return Test("Fisher", d, ci, p, min(na, nb), min_p=extreme)


def holm(p: Sequence[float]) -> list[float]:
    """Holm's (1979) step-down adjusted p values, in the input's order: the i-th smallest of m is multiplied by
    m - i + 1, made monotone and capped at 1. Reject where the adjusted p < alpha: the family-wise error rate is
    at most alpha for any dependence between the tests."""
    ps = np.asarray(p, dtype=float)
    if ps.ndim != 1 or not np.all((ps >= 0) & (ps <= 1)):
        raise ValueError(f"p={list(p)!r} is invalid: allowed a list of p values in [0, 1]")
    m = len(ps)
    order = np.argsort(ps, kind="stable")
    adjusted = np.maximum.accumulate((m - np.arange(m)) * ps[order]).clip(max=1.0)
    out = np.empty(m)
    out[order] = adjusted
    return out.tolist()
