"""The best trade-off of a sweep, by a criterion declared before the runs, that can pick any point of the sweep.

A trade-off claim ("beta = 0.8 is the best trade-off between reconstruction and sample quality") needs a rule that
says which setting of a sweep is the best trade-off. A rule of the kind "the best sample quality among the settings
within 10% of the best reconstruction" decides the verdict by where its cut falls: on a sweep whose reconstruction
term rises steeply with beta, only the smallest beta is within the cut, and nothing else can win. The rule here
reads every point of the sweep and every coordinate alike:

- `pareto_front`: the settings that no other setting beats on every coordinate (lower is better on each).
- `pick`: the compromise point (compromise programming, Zeleny 1973; the distance to the ideal point of TOPSIS,
  Hwang and Yoon 1981). Each coordinate is min-max normalised over the sweep (0 at the sweep's best value, 1 at its
  worst), and the pick is the setting closest, in Euclidean distance, to the ideal corner (0, ..., 0): the point
  that is best on every coordinate at once, which no setting reaches. Why this one: it has no parameter to tune
  (`weights`, optional and 1 by default, say how much a coordinate counts and are declared with the claim); it is
  unit-free, so nats and Fréchet distances need no exchange rate; it never picks a dominated setting (one no
  better on any coordinate and worse on one is further from the corner than the setting that dominates it); and it
  picks an interior point of a U-shaped curve as
  readily as an end. Any point of a front is the pick for some data (tests/test_tradeoff.py builds them). What it
  depends on: the sweep. The normalisation spans the sweep's values, so the pick is "the best trade-off of this
  sweep", declared before the runs; a setting added at an extreme can move it. On two coordinates whose ranges the
  front alone spans, each end of the front is best on one coordinate and worst on the other, at distance 1: an
  interior point closer than 1 is picked, else the two ends tie (no pick). An end is the pick only where a
  dominated setting stretches a range, or where weights make one coordinate count more.
- `picks_per_seed`: the pick on each seed separately (the setting's values on that seed, normalised over that
  seed's sweep), so that "X is the best trade-off" is tested over seeds: `pick_estimates` turns the picks into a
  0/1 outcome per setting and seed ("picked on this seed"), for `claims.judge_best` with `binary=True` (McNemar's
  exact test of X against each rival on the seeds where one of the two is picked, an intersection-union test over
  the rivals).

No pick (None) is made where the rule cannot make one: two or more settings tie at the smallest distance (equal
within 1e-9), or, on a seed, a value is missing (a failed run, nan): the criterion needs the whole sweep, since the
missing setting could have been the pick and its values span the normalisation. A pick of None is no outcome, not a
"no": `pick_estimates` leaves such seeds out and the caller says how many there were.

Coordinates must be finite: `pareto_front` and `pick` refuse a non-finite one (ValueError, one line) rather than
drop the point, since dropping it would change the front and the normalisation without saying so.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from vaelib.experiments.evidence import Estimate

TIE = 1e-9  # distances equal within this (relative) are a tie: no pick


def _number(x: object) -> bool:
    return not isinstance(x, bool) and isinstance(x, (int, float, np.integer, np.floating))


def _listlike(v: object) -> bool:
    """A flat list, tuple or 1-d array (not a string)."""
    return (isinstance(v, Sequence) and not isinstance(v, str)) or (isinstance(v, np.ndarray) and v.ndim == 1)


def _matrix(points: Mapping[str, Sequence[float]], lower_is_better: bool) -> tuple[list[str], np.ndarray]:
    """The names and a (points, coordinates) array, every coordinate turned so that lower is better."""
    if not isinstance(lower_is_better, bool):
        raise ValueError(f"lower_is_better={lower_is_better!r} is invalid: allowed True or False")
    if not isinstance(points, Mapping) or not points:
        raise ValueError(f"points={points!r} is invalid: allowed a mapping of one or more names to tuples of numbers")
    names = list(points)
    width = None
    for name in names:
        v = points[name]
        ok = (isinstance(name, str) and _listlike(v) and len(v) > 0
              and all(_number(x) and math.isfinite(x) for x in v))
        if not ok:
            raise ValueError(f"points[{name!r}]={v!r} is invalid: allowed a tuple of finite numbers, one per "
                             "coordinate")
        if width is None:
            width = len(v)
        elif len(v) != width:
            raise ValueError(f"points[{name!r}]={tuple(v)!r} is invalid: allowed {width} coordinates, as every "
                             "other point has")
    x = np.array([[float(c) for c in points[name]] for name in names])
    return names, (x if lower_is_better else -x)


def pareto_front(points: Mapping[str, Sequence[float]], lower_is_better: bool = True) -> list[str]:
    """The names of the points no other point dominates, in the input's order. A point dominates another when it is
    no worse on every coordinate and better on one (lower is better on each; lower_is_better=False: higher on
    each; turn a coordinate of the other kind by its sign). Equal points do not dominate each other: both are on the
    front. Refused (ValueError): no point, a name that is not a string, points of different lengths, a non-finite or
    non-numeric coordinate."""
    names, x = _matrix(points, lower_is_better)
    dominated = [any(np.all(x[j] <= x[i]) and np.any(x[j] < x[i]) for j in range(len(names)) if j != i)
                 for i in range(len(names))]
    return [name for name, d in zip(names, dominated) if not d]


def _weights(weights: Sequence[float] | None, width: int) -> np.ndarray:
    if weights is None:
        return np.ones(width)
    ok = (_listlike(weights) and len(weights) == width
          and all(_number(w) and math.isfinite(w) and w > 0 for w in weights))
    if not ok:
        raise ValueError(f"weights={weights!r} are invalid: allowed {width} finite values > 0, one per coordinate")
    return np.array([float(w) for w in weights])


def ideal_distances(points: Mapping[str, Sequence[float]], weights: Sequence[float] | None = None,
                    lower_is_better: bool = True) -> dict[str, float]:
    """Each point's distance to the ideal corner: every coordinate min-max normalised over the points (0 at the
    best value, 1 at the worst; 0 for every point where all are equal), scaled by its weight (1 by default), and the
    Euclidean norm taken. Refused as in `pareto_front`, and weights that are not one finite value > 0 per
    coordinate."""
    names, x = _matrix(points, lower_is_better)
    w = _weights(weights, x.shape[1])
    low, span = x.min(axis=0), np.ptp(x, axis=0)
    z = np.divide(x - low, span, out=np.zeros_like(x), where=span > 0)
    return dict(zip(names, np.sqrt(((w * z) ** 2).sum(axis=1)).tolist()))


def pick(points: Mapping[str, Sequence[float]], weights: Sequence[float] | None = None,
         lower_is_better: bool = True) -> str | None:
    """The declared best trade-off of the points: the one closest to the ideal corner (`ideal_distances`); None
    where two or more tie at the smallest distance (equal within TIE, relative). The pick is always on the Pareto
    front: a dominated point is further from the corner than the point that dominates it."""
    d = ideal_distances(points, weights, lower_is_better)
    best = min(d.values())
    closest = [name for name, v in d.items() if math.isclose(v, best, rel_tol=TIE, abs_tol=TIE)]
    return closest[0] if len(closest) == 1 else None


def picks_per_seed(values: Mapping[str, Mapping[str, Sequence[float]]], metrics: Sequence[str],
                   weights: Sequence[float] | None = None, lower_is_better: bool = True) -> list[str | None]:
    """The pick on each seed: values[setting][metric][i] is the metric of that setting on seed i (the same seeds,
    in the same order, for every setting and metric); `metrics` names the coordinates, in the order of `weights`.
    Seed i's pick is `pick` over the settings' values on seed i, or None where a value of that seed is not finite
    (a failed run: the whole sweep is needed) or the closest settings tie. Refused (ValueError): no setting, no
    metric or a repeated one, a setting without one of the metrics, lists of different lengths, a value that is
    not a number."""
    if not isinstance(values, Mapping) or not values:
        raise ValueError(f"values={values!r} are invalid: allowed a mapping of one or more settings to "
                         "{metric: [value per seed]}")
    if isinstance(metrics, str) or not metrics or len(set(metrics)) != len(metrics):
        raise ValueError(f"metrics={metrics!r} are invalid: allowed one or more different metric names")
    n = None
    for setting, per_metric in values.items():
        for m in metrics:
            v = per_metric.get(m) if isinstance(per_metric, Mapping) else None
            if not _listlike(v) or not all(_number(x) for x in v):
                raise ValueError(f"values[{setting!r}][{m!r}]={v!r} is invalid: allowed a list of numbers, one per "
                                 "seed")
            if n is None:
                n = len(v)
            elif len(v) != n:
                raise ValueError(f"values[{setting!r}][{m!r}] has {len(v)} values: allowed {n}, one per seed as in "
                                 "every other list")
    _weights(weights, len(metrics))
    picks: list[str | None] = []
    for i in range(n or 0):
        seed = {s: tuple(float(values[s][m][i]) for m in metrics) for s in values}
        finite = all(math.isfinite(c) for p in seed.values() for c in p)
        picks.append(pick(seed, weights, lower_is_better) if finite else None)
    return picks


def pick_estimates(picks: Sequence[str | None], settings: Sequence[str],
                   seeds: Sequence[int] | None = None) -> dict[str, Estimate]:
    """Each setting's 0/1 outcome "picked on this seed", over the seeds with a pick (a seed whose pick is None is
    left out: no outcome), with their seeds (0, 1, ... by default), so that claims.judge_best(ClaimSpec(...,
    direction='higher', binary=True), estimates[X], [(Y, estimates[Y]) for the rivals Y]) tests "X is the best
    trade-off" seed by seed; declare that spec with needs_convergence=False, since an outcome is not a run: check
    the runs' convergence before picking (every outcome is counted as settled). Refused (ValueError): a pick that
    is not one of `settings`, seeds not one per pick."""
    seeds = list(range(len(picks))) if seeds is None else list(seeds)
    if len(seeds) != len(picks):
        raise ValueError(f"seeds={seeds!r} are invalid: allowed one per pick ({len(picks)})")
    stray = [p for p in picks if p is not None and p not in settings]
    if stray:
        raise ValueError(f"pick {stray[0]!r} is invalid: allowed one of {', '.join(settings)} or None")
    kept = [(s, p) for s, p in zip(seeds, picks) if p is not None]
    return {name: Estimate(tuple(float(p == name) for _, p in kept), len(kept), tuple(s for s, _ in kept))
            for name in settings}
