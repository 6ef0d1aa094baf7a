"""Helpers of notebook 00_vae_from_scratch: the exercise checks (their reference solutions: solutions.py) and the
measured reason the hand-written loop is compared with fit under contiguous tensors and foreach Adam.

A check takes the student's function and returns one line that starts with 'right', 'wrong' or 'not done yet'
(the task stubs raise NotImplementedError). It compares with vaelib's own version on small seeded tensors, with
the rule of vaelib.lessons.exercises (which holds the exercises of notebooks 01-05).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from vaelib.config import BetaSchedule, Config, get_preset, with_overrides
from vaelib.lessons.exercises import tensor_problem as _close
from vaelib.lessons.exercises import verdict as _verdict
from vaelib.lessons.solutions import (
    solution_iw_bound,
    solution_linear_beta,
    solution_train_step,
)
from vaelib.losses import elbo, kl_per_dim
from vaelib.models.vae import VAE
from vaelib.schedules import beta_at


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








def _vaelib_step(model: VAE, opt: torch.optim.Optimizer, x: torch.Tensor, beta: float, eps: torch.Tensor,
                 clip: float | None, free_bits: float) -> float:
    """The training step as fit takes it (losses.elbo with free bits), for the check to compare with."""
    logits, mu, logvar = model(x, eps=eps)
    loss = elbo(x, logits, mu, logvar, beta=beta, free_bits=free_bits).total
    opt.zero_grad()
    loss.backward()
    if clip is not None:
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
    opt.step()
    return loss.item()


def check_train_step(fn: Callable[..., Any]) -> str:
    """fn(model, opt, x, beta, eps, clip, free_bits) -> the loss (a float) of one training step with free bits,
    which it takes: run twice from the same weights as vaelib's step, with a clip that binds and a floor that binds
    on some dimensions only; the losses and the weights after both steps must agree."""
    config = with_overrides(get_preset("digits"), **{"model.latent_dim": 3, "model.hidden_dims": (4, 8),
                                                     "data.image_size": 8})
    g = torch.Generator().manual_seed(0)
    x = torch.rand(6, *config.input_shape, generator=g)
    eps = [torch.randn(6, 3, generator=g) for _ in range(2)]
    torch.manual_seed(0)
    with torch.no_grad():  # the floor: the median dimension's KL at the start, so it binds on some dimensions only
        mu, logvar = VAE(config).encode(x)
        floor = float(kl_per_dim(mu, logvar).mean(0).median())

    def two_steps(step: Callable[..., Any]) -> tuple[list[Any], VAE]:
        torch.manual_seed(0)
        model = VAE(config)
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        return [step(model, opt, x, 0.7, e, 0.5, floor) for e in eps], model

    want, reference = two_steps(_vaelib_step)

    def expected(result: tuple[list[Any], VAE]) -> str | None:
        losses, model = result
        for i, (got, w) in enumerate(zip(losses, want)):
            if not isinstance(got, (int, float)) or not math.isfinite(got):
                return f"returned {got!r} at step {i + 1}; expected the loss as a float (loss.item())"
            if abs(got - w) > 1e-4 * abs(w):
                return (f"gives the loss {got:.6g} at step {i + 1}, expected {w:.6g}: recon summed over pixels and "
                        "averaged over the batch, plus beta times the sum over dimensions of each dimension's "
                        "batch-mean KL floored at free_bits")
        diff = max((a - b).abs().max().item() for a, b in zip(model.parameters(), reference.parameters()))
        if diff > 1e-5:
            return (f"takes other steps (weights differ by {diff:.2g} after two): are the old gradients zeroed before "
                    "backward, is the gradient norm clipped to `clip` after backward and before opt.step?")
        return None

    return _verdict("train_step", lambda: two_steps(fn), expected)


def check_iw_bound(fn: Callable[[torch.Tensor], torch.Tensor]) -> str:
    """fn(log_w (B, K)) -> log of the mean of the weights per image (B,), against solutions.solution_iw_bound,
    on ordinary log weights and on ones near -3000 (where exponentiating first underflows)."""
    g = torch.Generator().manual_seed(0)
    cases = {"ordinary log weights": torch.randn(4, 8, generator=g, dtype=torch.float64),
             "log weights near -3000 (an image of 3000 nats)": torch.randn(4, 8, generator=g,
                                                                           dtype=torch.float64) - 3000,
             "one sample (K = 1)": torch.randn(4, 1, generator=g, dtype=torch.float64)}

    def expected(results: list[Any]) -> str | None:
        for (what, log_w), got in zip(cases.items(), results):
            problem = _close(got, solution_iw_bound(log_w), rtol=1e-9, atol=1e-9)
            if problem is not None:
                hint = " (exponentiating first underflows: shift by the largest log weight)" if "3000" in what else ""
                return f"on {what}: {problem}{hint}"
        return None

    return _verdict("iw_bound", lambda: [fn(log_w.clone()) for log_w in cases.values()], expected)


EXERCISES = {"train_step": (check_train_step, solution_train_step),
             "iw_bound": (check_iw_bound, solution_iw_bound),
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
