"""Helpers of notebook 00_vae_from_scratch: the exercise checks, their reference solutions, and the measured
reason the hand-written loop is compared with fit under contiguous tensors and foreach Adam.

A check takes the student's function and returns one line that starts with 'right', 'wrong' or 'not done yet'
(the task stubs raise NotImplementedError). It compares with vaelib's own version on small seeded tensors, with
the rule of vaelib.lessons.exercises (which holds the exercises of notebooks 01-05).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from ..config import BetaSchedule, Config
from ..losses import kl_per_dim
from ..model import VAE
from ..schedules import beta_at
from .exercises import tensor_problem as _close
from .exercises import verdict as _verdict


def _tensors(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(5, 3, generator=g) for _ in range(3))  # mu, logvar, eps: (B, D)


def check_reparameterize(fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]) -> str:
    """fn(mu, logvar, eps) -> z, against VAE.reparameterize; gradients must reach mu and logvar."""
    mu, logvar, eps = _tensors()
    mu.requires_grad_(True)
    logvar.requires_grad_(True)

    def expected(z: Any) -> str | None:
        problem = _close(z, VAE.reparameterize(mu, logvar, eps=eps))
        if problem is None and not z.requires_grad:
            problem = "gives no gradient to mu and logvar (is z computed from them?)"
        return problem

    return _verdict("reparameterize", lambda: fn(mu, logvar, eps), expected)


def check_kl_per_dim(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> str:
    """fn(mu, logvar) -> KL per element (B, D), against vaelib.losses.kl_per_dim."""
    mu, logvar, _ = _tensors(1)
    return _verdict("kl_per_dim", lambda: fn(mu, logvar), lambda kl: _close(kl, kl_per_dim(mu, logvar)))


def check_linear_beta(fn: Callable[[int, int, float, float], float]) -> str:
    """fn(step, anneal_steps, beta_start, beta) -> float, against beta_at of a 'linear' schedule."""
    cases = [(s, 100, b0, b) for s in (0, 1, 37, 99, 100, 250) for b0, b in ((0.0, 1.0), (0.2, 0.8))]

    def expected(values: Any) -> str | None:
        for (step, n, b0, b), got in zip(cases, values):
            want = beta_at(BetaSchedule("linear", beta=b, beta_start=b0, anneal_steps=n), step)
            if not isinstance(got, (int, float)) or abs(got - want) > 1e-9:
                return f"gives {got!r} at step {step} (anneal_steps {n}, {b0} -> {b}); expected {want:g}"
        return None

    return _verdict("linear_beta", lambda: [fn(*c) for c in cases], expected)


def solution_reparameterize(mu: torch.Tensor, logvar: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """z = mu + sigma * eps with sigma = exp(logvar / 2) (Kingma & Welling, 2014, eq. 10)."""
    return mu + torch.exp(0.5 * logvar) * eps


def solution_kl_per_dim(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, sigma^2) || N(0, 1)) per element (Kingma & Welling, 2014, Appendix B)."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar)


def solution_linear_beta(step: int, anneal_steps: int, beta_start: float, beta: float) -> float:
    """beta_start -> beta linearly over anneal_steps steps, then beta (Bowman et al., 2016)."""
    return beta_start + (beta - beta_start) * min(step / anneal_steps, 1.0)


EXERCISES = {"reparameterize": (check_reparameterize, solution_reparameterize),
             "kl_per_dim": (check_kl_per_dim, solution_kl_per_dim),
             "linear_beta": (check_linear_beta, solution_linear_beta)}


def implementation_differences(config: Config, x: torch.Tensor, steps: int = 3) -> dict[str, float]:
    """Largest difference from the contiguous / foreach reference: the encoder's features in channels_last, and
    the weights after `steps` fused Adam steps on the same gradients. 0.0 means bit for bit equal here."""
    torch.manual_seed(config.train.seed)
    model = VAE(config)
    start = [p.detach().clone() for p in model.parameters()]  # contiguous, before the layout change
    ref = model.encoder.convs(x)  # (B, C', H', W')
    nhwc = model.to(memory_format=torch.channels_last).encoder.convs(x.contiguous(memory_format=torch.channels_last))
    gen = torch.Generator().manual_seed(0)
    grads = [[torch.randn(p.shape, generator=gen) for p in start] for _ in range(steps)]
    weights = {}
    for impl in ("foreach", "fused"):
        params = [p.clone().requires_grad_(True) for p in start]
        opt = torch.optim.Adam(params, lr=config.train.lr, **{impl: True})
        for step_grads in grads:
            for p, g in zip(params, step_grads):
                p.grad = g.clone()
            opt.step()
        weights[impl] = params
    adam = max((a - b).abs().max().item() for a, b in zip(weights["foreach"], weights["fused"]))
    return {"channels_last_features": (ref - nhwc).abs().max().item(), "fused_adam_weights": adam}
