"""beta as a pure function of the training step.

`beta_at(schedule, step, steps_per_epoch, total_steps)`; epochs may be fractional.
- constant: beta.
- warmup:   beta_start for the first `warmup_epochs` epochs, then beta (the CIFAR-10 and CelebA recipes).
- linear:   beta_start -> beta linearly over `anneal_steps` steps, then beta (Bowman et al., 2016).
- cyclic:   `cycles` cycles over the run; in each, a linear ramp beta_start -> beta over the first
            `ratio` of the cycle, then hold at beta (Fu et al., 2019, eq. 7). A run that may train on past the
            length its cycles are laid over (train.min_epochs, layout_epochs) holds beta after its last cycle.
"""

from __future__ import annotations

import numpy as np

from vaelib.config import BetaSchedule, TrainConfig


def beta_at(schedule: BetaSchedule, step: int, steps_per_epoch: int = 1, total_steps: int = 1) -> float:
    """The KL weight at optimiser step `step` (0-based)."""
    if step < 0:
        raise ValueError(f"step={step!r} is invalid: allowed an integer >= 0")
    if steps_per_epoch < 1 or total_steps < 1:
        raise ValueError(f"steps_per_epoch={steps_per_epoch!r}, total_steps={total_steps!r} are invalid: "
                         "allowed integers >= 1")
    s = schedule
    if s.kind == "constant":
        return float(s.beta)
    if s.kind == "warmup":
        return float(s.beta_start if step < s.warmup_epochs * steps_per_epoch else s.beta)
    if s.kind == "linear":
        frac = min(step / s.anneal_steps, 1.0)
        return float(s.beta_start + (s.beta - s.beta_start) * frac)
    if s.kind == "cyclic":
        if step >= total_steps:  # past the cycles' layout: the extra epochs of a run trained until converged
            return float(s.beta)
        period = total_steps / s.cycles
        tau = (step % period) / period  # position inside the current cycle, [0, 1)
        frac = min(tau / s.ratio, 1.0)
        return float(s.beta_start + (s.beta - s.beta_start) * frac)
    raise ValueError(f"schedule.kind={s.kind!r} is invalid: allowed constant, warmup, linear, cyclic")


def layout_epochs(train: TrainConfig) -> int:
    """The epochs a schedule is laid over: a cyclic schedule of a run that may stop once converged (train.min_epochs
    > 0) lays its cycles over its first min_epochs epochs and holds beta after them, so the epochs it may add are all
    at its final beta, as a ramp's or a warmup's are; every other run is laid over its train.epochs."""
    return train.min_epochs if train.schedule.kind == "cyclic" and train.min_epochs else train.epochs


def beta_curve(schedule: BetaSchedule, total_steps: int, steps_per_epoch: int = 1) -> np.ndarray:
    """beta at every step 0..total_steps-1, for plotting."""
    return np.array([beta_at(schedule, t, steps_per_epoch, total_steps) for t in range(total_steps)])
