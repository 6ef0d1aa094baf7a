"""The declared trade-off criterion (experiments.tradeoff): the Pareto front, the point closest to the ideal corner
after min-max normalisation over the sweep, which can be any point of a front and never a dominated one, and its
use seed by seed for a claim "X is the best trade-off"."""

import math

import numpy as np
import pytest

from vaelib.experiments.claims import FULL_BUDGET, ClaimSpec, adjust, judge_best
from vaelib.experiments.tradeoff import ideal_distances, pareto_front, pick, pick_estimates, picks_per_seed


def test_pareto_front_keeps_the_points_nothing_beats_on_every_coordinate():
    points = {"a": (1.0, 5.0), "b": (2.0, 3.0), "c": (3.0, 4.0), "d": (4.0, 1.0), "e": (2.0, 3.0), "f": (4.0, 2.0)}
    assert pareto_front(points) == ["a", "b", "d", "e"]  # c is beaten by b, f by d; b and e are equal: both stay
    assert pareto_front(points, lower_is_better=False) == ["a", "c", "f"]  # higher is better: f now beats d
    assert pareto_front({"x": (1.0,), "y": (1.0,), "z": (2.0,)}) == ["x", "y"]  # one coordinate: the minima
    assert pareto_front({"only": (7, 7, 7)}) == ["only"]
    assert pareto_front({"a": np.array([1.0, 2.0]), "b": [2, 1]}) == ["a", "b"]


def _circle(k, target, r=0.97):
    """k points on the quarter circle of radius 1 around the ideal corner, each at distance 1 after normalisation,
    the target pulled in to radius r (still on the front), and one dominated point far out that spans the range."""
    angles = np.linspace(0, math.pi / 2, k)
    points = {f"p{j}": ((r if j == target else 1.0) * math.cos(t), (r if j == target else 1.0) * math.sin(t))
              for j, t in enumerate(angles)}
    return {**points, "far": (1.2, 1.2)}


@pytest.mark.parametrize("target", range(5))
def test_every_point_of_a_front_is_picked_for_some_data(target):
    points = _circle(5, target)
    assert pareto_front(points) == [f"p{j}" for j in range(5)]  # the far point is dominated
    assert pick(points) == f"p{target}"  # the ends as well as the interior


def test_the_ends_of_a_two_coordinate_front_tie_unless_something_is_closer():
    # each end is best on one coordinate and worst on the other: both at distance 1, no pick
    assert ideal_distances({"lo": (0.0, 1.0), "hi": (1.0, 0.0)}) == {"lo": 1.0, "hi": 1.0}
    assert pick({"lo": (0.0, 1.0), "hi": (1.0, 0.0)}) is None
    assert pick({"lo": (0.0, 1.0), "mid": (0.9, 0.95), "hi": (1.0, 0.0)}) is None  # the middle is further than both
    assert pick({"lo": (0.0, 1.0), "mid": (0.5, 0.5), "hi": (1.0, 0.0)}) == "mid"
    assert pick({"lo": (0.0, 1.0), "hi": (1.0, 0.0)}, weights=(2.0, 1.0)) == "lo"  # declared: the first counts twice
    assert pick({"a": (3.0, 3.0), "b": (3.0, 3.0)}) is None  # equal points: nothing to choose between
    assert pick({"only": (3.0, 3.0)}) == "only"


def test_a_dominated_point_is_never_picked():
    rng = np.random.default_rng(0)
    picked = 0
    for _ in range(300):
        width = int(rng.integers(2, 4))
        points = {f"s{j}": tuple(rng.random(width).round(2)) for j in range(int(rng.integers(2, 7)))}
        choice = pick(points)
        if choice is not None:
            picked += 1
            assert choice in pareto_front(points)
    assert picked > 250
    # a dominated point right beside the corner loses to the point that dominates it, by however little
    assert pick({"lo": (0.0, 1.0), "best": (0.3, 0.3), "beside": (0.3, 0.3001), "hi": (1.0, 0.0)}) == "best"


# A beta sweep: the reconstruction term rises with beta, steeply, and the sample Fréchet distance is U-shaped (low
# betas decode malformed samples, high betas blurry ones).
BETAS = ("beta 0.1", "beta 0.4", "beta 0.8", "beta 2", "beta 4")
RECON = (15.0, 18.0, 20.0, 30.0, 40.0)
FD = (30.0, 14.0, 10.0, 14.0, 25.0)


def test_a_u_shaped_quality_curve_is_read_over_the_whole_sweep():
    sweep = dict(zip(BETAS, zip(RECON, FD)))
    # "within 10% of the best reconstruction" would leave beta 0.1 alone (16.5 and below): the rule decides
    assert [b for b, r in zip(BETAS, RECON) if r <= 1.1 * min(RECON)] == ["beta 0.1"]
    assert pareto_front(sweep) == ["beta 0.1", "beta 0.4", "beta 0.8"]  # beta 2 and 4 are beaten by beta 0.8
    assert pick(sweep) == "beta 0.8"  # normalised (0.2, 0): the interior minimum of the U
    # the pick moves with the interior of the sweep, not only with its ends
    assert pick({**sweep, "beta 0.4": (18.0, 9.0)}) == "beta 0.4"
    assert pick({**sweep, "beta 0.8": (36.0, 10.0)}) == "beta 0.4"  # 0.8 now costs 0.84 of the recon range
    # and it can be either end of the sweep, where the data put it there
    assert pick({**sweep, "beta 0.1": (15.0, 11.0)}) == "beta 0.1"
    assert pick({**sweep, "beta 4": (19.0, 9.0)}) == "beta 4"


def _per_seed(n, recon=RECON, fd=FD, jitter=0.1, seed=0):
    rng = np.random.default_rng(seed)
    return {b: {"recon": list(r + jitter * rng.standard_normal(n)), "fd": list(f + jitter * rng.standard_normal(n))}
            for b, r, f in zip(BETAS, recon, fd)}


def test_the_pick_is_made_on_each_seed_and_not_where_a_run_failed_or_settings_tie():
    values = _per_seed(4)
    assert picks_per_seed(values, ["recon", "fd"]) == ["beta 0.8"] * 4
    values["beta 2"]["fd"][1] = math.nan  # a failed run: the sweep is incomplete on seed 1
    values["beta 0.1"]["recon"][2], values["beta 0.1"]["fd"][2] = 0.0, 100.0
    for b in BETAS[1:]:  # seed 2: only two settings on the front, each best on one coordinate and worst on the other
        values[b]["recon"][2], values[b]["fd"][2] = 100.0, 100.0
    values["beta 4"]["recon"][2], values["beta 4"]["fd"][2] = 100.0, 0.0
    assert picks_per_seed(values, ["recon", "fd"]) == ["beta 0.8", None, None, "beta 0.8"]
    # the declared coordinates, in the declared order: reconstruction alone picks the smallest beta
    assert picks_per_seed(_per_seed(3), ["recon"]) == ["beta 0.1"] * 3


def test_a_claim_that_x_is_picked_is_tested_seed_by_seed():
    spec = ClaimSpec("beta = 0.8 is the best trade-off of the sweep", "ablation report §4.3", "synthetic",
                     "picked by the declared criterion (0/1 per seed)", ("beta 0.8", "the other betas"), "higher",
                     binary=True, needs_convergence=False)
    rivals = [b for b in BETAS if b != "beta 0.8"]
    picks = picks_per_seed(_per_seed(8), ["recon", "fd"])
    est = pick_estimates(picks, BETAS)
    assert est["beta 0.8"].values == (1.0,) * 8 and est["beta 4"].values == (0.0,) * 8
    (c,) = adjust([judge_best(spec, est["beta 0.8"], [(b, est[b]) for b in rivals])])
    assert c.verdict == "supported" and c.test.startswith("McNemar exact")
    assert c.p == pytest.approx(2 * 0.5**8) and c.min_p == pytest.approx(2 * 0.5**8)
    # 3 seeds picked 3 times cannot decide: McNemar's smallest p on 3 discordant pairs is 0.25
    few = pick_estimates(picks_per_seed(_per_seed(3), ["recon", "fd"]), BETAS)
    (c3,) = adjust([judge_best(spec, few["beta 0.8"], [(b, few[b]) for b in rivals])])
    assert c3.verdict == FULL_BUDGET
    # a seed without a pick is no outcome: left out, with its seed, so the pairs stay by seed
    est = pick_estimates(["beta 0.8", None, "beta 0.4"], BETAS, seeds=[10, 11, 12])
    assert est["beta 0.8"].seeds == (10, 12) and est["beta 0.8"].values == (1.0, 0.0)
    assert est["beta 0.4"].values == (0.0, 1.0) and est["beta 2"].values == (0.0, 0.0)


@pytest.mark.parametrize(("call", "message"), [
    (lambda: pareto_front({}), "points={} is invalid: allowed a mapping of one or more names"),
    (lambda: pareto_front({"a": (1.0, math.nan), "b": (0.0, 1.0)}),
     "points['a']=(1.0, nan) is invalid: allowed a tuple of finite numbers, one per coordinate"),
    (lambda: pick({"a": (1.0, math.inf)}), "points['a']=(1.0, inf) is invalid"),
    (lambda: pick({"a": (1.0, 2.0), "b": (1.0,)}), "points['b']=(1.0,) is invalid: allowed 2 coordinates"),
    (lambda: pick({"a": ()}), "points['a']=() is invalid"),
    (lambda: pick({"a": "12"}), "points['a']='12' is invalid"),
    (lambda: pick({"a": (True, 1.0)}), "points['a']=(True, 1.0) is invalid"),
    (lambda: pick({1: (1.0, 2.0)}), "points[1]=(1.0, 2.0) is invalid"),
    (lambda: pareto_front({"a": (1.0,)}, lower_is_better="yes"), "lower_is_better='yes' is invalid"),
    (lambda: pick({"a": (1.0, 2.0)}, weights=(1.0, 0.0)), "weights=(1.0, 0.0) are invalid: allowed 2 finite values"),
    (lambda: pick({"a": (1.0, 2.0)}, weights=(1.0,)), "weights=(1.0,) are invalid"),
    (lambda: picks_per_seed({}, ["fd"]), "values={} are invalid"),
    (lambda: picks_per_seed({"a": {"fd": [1.0]}}, []), "metrics=[] are invalid"),
    (lambda: picks_per_seed({"a": {"fd": [1.0]}}, ["fd", "fd"]), "metrics=['fd', 'fd'] are invalid"),
    (lambda: picks_per_seed({"a": {"fd": [1.0]}}, ["recon"]), "values['a']['recon']=None is invalid"),
    (lambda: picks_per_seed({"a": {"fd": [1.0]}, "b": {"fd": [1.0, 2.0]}}, ["fd"]),
     "values['b']['fd'] has 2 values: allowed 1"),
    (lambda: picks_per_seed({"a": {"fd": ["x"]}}, ["fd"]), "values['a']['fd']=['x'] is invalid"),
    (lambda: picks_per_seed({"a": {"fd": [1.0]}}, ["fd"], weights=(-1.0,)), "weights=(-1.0,) are invalid"),
    (lambda: pick_estimates(["beta 9"], BETAS), "pick 'beta 9' is invalid: allowed one of beta 0.1"),
    (lambda: pick_estimates(["beta 0.1"], BETAS, seeds=[0, 1]), "seeds=[0, 1] are invalid: allowed one per pick"),
])
def test_bad_input_is_refused_in_one_line(call, message):
    with pytest.raises(ValueError) as err:
        call()
    assert "\n" not in str(err.value) and str(err.value).startswith(message)
