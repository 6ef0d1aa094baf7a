import pytest

from vaelib.config import BetaSchedule
from vaelib.schedules import beta_at, beta_curve


def test_constant():
    assert [beta_at(BetaSchedule("constant", beta=0.8), t) for t in (0, 10, 999)] == [0.8] * 3


def test_warmup_in_epochs():
    s = BetaSchedule("warmup", beta=0.1, warmup_epochs=15)
    assert beta_at(s, 0, steps_per_epoch=10) == 0.0
    assert beta_at(s, 149, steps_per_epoch=10) == 0.0
    assert beta_at(s, 150, steps_per_epoch=10) == 0.1


def test_linear_annealing():
    s = BetaSchedule("linear", beta=1.0, anneal_steps=100)
    assert [beta_at(s, t) for t in (0, 25, 50, 100, 500)] == [0.0, 0.25, 0.5, 1.0, 1.0]


def test_cyclic_annealing_fu_et_al():
    s = BetaSchedule("cyclic", beta=1.0, cycles=4, ratio=0.5)  # 400 steps: cycles of 100, ramp of 50
    values = {t: beta_at(s, t, total_steps=400) for t in (0, 25, 50, 99, 100, 125, 399)}
    assert values == {0: 0.0, 25: 0.5, 50: 1.0, 99: 1.0, 100: 0.0, 125: 0.5, 399: 1.0}


@pytest.mark.parametrize("kind", ["constant", "warmup", "linear", "cyclic"])
def test_bounds(kind):
    s = BetaSchedule(kind, beta=2.0, warmup_epochs=1, anneal_steps=30, beta_start=0.0)
    curve = beta_curve(s, total_steps=120, steps_per_epoch=10)
    assert curve.shape == (120,)
    assert curve.min() >= 0.0 and curve.max() <= 2.0
    assert curve[-1] == pytest.approx(2.0)


def test_bad_step():
    with pytest.raises(ValueError, match="step=-1 is invalid"):
        beta_at(BetaSchedule(), -1)
