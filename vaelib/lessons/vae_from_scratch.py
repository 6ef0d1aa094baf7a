"""Helpers of notebook 00_vae_from_scratch: the exercise checks and the measured reason the hand-written loop is
compared with fit under contiguous tensors and foreach Adam.

A check takes the student's function and returns one line that starts with 'right', 'wrong' or 'not done yet'
(the task stubs raise NotImplementedError). It runs the function on small seeded tensors and compares with the
stored expected values (expected.json, beside this module) and with properties of the answer, with the rule of
vaelib.lessons.exercises (which holds the exercises of notebooks 01-05). No check calls vaelib's own loss or
schedule: the reference solutions live in the repository's instructor/ folder, outside the package, where
instructor/write_expected.py runs them on these inputs and writes expected.json.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from vaelib.config import Config, get_preset, with_overrides
from vaelib.lessons.exercises import expected_values
from vaelib.lessons.exercises import shape_problem as _shape
from vaelib.lessons.exercises import tensor_problem as _close
from vaelib.lessons.exercises import verdict as _verdict
from vaelib.models.vae import VAE

LINEAR_CASES = [(s, 100, b0, b) for s in (0, 1, 37, 99, 100, 250) for b0, b in ((0.0, 1.0), (0.2, 0.8))]


def check_linear_beta(fn: Callable[[int, int, float, float], float]) -> str:
    """fn(step, anneal_steps, beta_start, beta) -> float, against the stored values at LINEAR_CASES (before, at and
    after the end of the ramp)."""
    wants = expected_values()["linear_beta"]

    def expected(values: Any) -> str | None:
        for (step, n, b0, b), got, want in zip(LINEAR_CASES, values, wants):
            if isinstance(got, bool) or not isinstance(got, (int, float)) or not abs(got - want) <= 1e-9:
                return f"gives {got!r} at step {step} (anneal_steps {n}, {b0} -> {b}); expected {want:g}"
        return None

    return _verdict("linear_beta", lambda: [fn(*c) for c in LINEAR_CASES], expected)


TRAIN_STEP = {"beta": 0.7, "clip": 0.5, "lr": 1e-2}  # the clip binds; the floor (stored) binds on some dimensions


def train_step_inputs() -> tuple[Config, torch.Tensor, list[torch.Tensor]]:
    """(config, x, [eps of step 1, eps of step 2]): a tiny VAE's config (3 latent dimensions, 8x8 grey images),
    6 seeded images in [0, 1] and the reparameterisation noise of each step."""
    config = with_overrides(get_preset("digits"), **{"model.latent_dim": 3, "model.hidden_dims": (4, 8),
                                                     "data.image_size": 8})
    g = torch.Generator().manual_seed(0)
    x = torch.rand(6, *config.input_shape, generator=g)
    return config, x, [torch.randn(6, 3, generator=g) for _ in range(2)]


def train_step_model(config: Config) -> VAE:
    """The model every run of the check starts from: seeded (torch.manual_seed(0)), so always the same weights."""
    torch.manual_seed(0)
    return VAE(config)


def two_train_steps(step: Callable[..., Any], free_bits: float) -> tuple[list[Any], VAE]:
    """([what step returned at each step], the model after both): `step` run twice with Adam from the seeded
    model, at TRAIN_STEP's beta and clip and the given floor."""
    config, x, eps = train_step_inputs()
    model = train_step_model(config)
    opt = torch.optim.Adam(model.parameters(), lr=TRAIN_STEP["lr"])
    return [step(model, opt, x.clone(), TRAIN_STEP["beta"], e.clone(), TRAIN_STEP["clip"], free_bits)
            for e in eps], model


def weight_summary(model: torch.nn.Module) -> dict[str, list[float]]:
    """{parameter name: [sum, L2 norm]} in float64: what expected.json keeps of the weights after two steps."""
    return {name: [p.detach().double().sum().item(), p.detach().double().norm().item()]
            for name, p in model.named_parameters()}


def check_train_step(fn: Callable[..., Any]) -> str:
    """fn(model, opt, x, beta, eps, clip, free_bits) -> the loss (a float) of one training step with free bits,
    which it takes: run twice from the seeded model, with a clip that binds and a floor that binds on some
    dimensions only; the losses and the weights after both steps (each parameter's sum and norm) must match the
    stored values of the reference step."""
    stored = expected_values()["train_step"]

    def expected(result: tuple[list[Any], VAE]) -> str | None:
        losses, model = result
        for i, (got, w) in enumerate(zip(losses, stored["losses"])):
            if isinstance(got, bool) or not isinstance(got, (int, float)) or not math.isfinite(got):
                return f"returned {got!r} at step {i + 1}; expected the loss as a float (loss.item())"
            if abs(got - w) > 1e-5 * abs(w):
                return (f"gives the loss {got:.6g} at step {i + 1}, expected {w:.6g}: recon summed over pixels and "
                        "averaged over the batch, plus beta times the sum over dimensions of each dimension's "
                        "batch-mean KL floored at free_bits")
        for name, got in weight_summary(model).items():
            want = stored["weights"][name]
            if not all(abs(g - w) <= 1e-4 * max(1.0, abs(w)) for g, w in zip(got, want)):
                return (f"takes other steps ({name} after two has sum {got[0]:.6g} and norm {got[1]:.6g}; expected "
                        f"{want[0]:.6g} and {want[1]:.6g}): are the old gradients zeroed before backward, is the "
                        "gradient norm clipped to `clip` after backward and before opt.step?")
        return None

    return _verdict("train_step", lambda: two_train_steps(fn, stored["free_bits"]), expected)


def iw_bound_inputs() -> dict[str, torch.Tensor]:
    """{case: log weights (4, K) in float64}: ordinary ones, ones near -3000, and one sample per image."""
    g = torch.Generator().manual_seed(0)
    return {"ordinary log weights": torch.randn(4, 8, generator=g, dtype=torch.float64),
            "log weights near -3000 (an image of 3000 nats)": torch.randn(4, 8, generator=g,
                                                                          dtype=torch.float64) - 3000,
            "one sample (K = 1)": torch.randn(4, 1, generator=g, dtype=torch.float64)}


def check_iw_bound(fn: Callable[[torch.Tensor], torch.Tensor]) -> str:
    """fn(log_w (B, K)) -> log of the mean of the weights per image (B,), on ordinary log weights, on ones near
    -3000 (where exponentiating first underflows) and on one sample: finite, between the largest log weight minus
    log K and the largest (a mean lies between max / K and max), above the mean of the log weights (Jensen), and
    the stored values."""
    cases = iw_bound_inputs()

    def expected(results: list[Any]) -> str | None:
        for (what, log_w), got, stored in zip(cases.items(), results, expected_values()["iw_bound"]):
            want = torch.tensor(stored, dtype=torch.float64)
            hint = " (exponentiating first underflows: shift by the largest log weight)" if "3000" in what else ""
            problem = _shape(got, want)
            if problem is None and not torch.isfinite(got.detach()).all():
                problem = f"returned {got.detach().tolist()}, expected finite numbers"
            if problem is None:
                top, value = log_w.max(1).values, got.detach().double()
                if (value > top + 1e-9).any():
                    problem = ("gives more than the largest log weight: a mean cannot exceed the largest weight "
                               "(is the 1/K missing?)")
                elif (value < top - math.log(log_w.shape[1]) - 1e-9).any():
                    problem = ("gives less than the largest log weight minus log K: the mean of the weights is at "
                               "least the largest over K")
                elif log_w.shape[1] > 1 and (value <= log_w.mean(1) + 1e-9).any():
                    problem = ("is not above the mean of the log weights: by Jensen the log of the mean weight lies "
                               "above it (the mean of the log weights is the ELBO's estimate, not this bound)")
            problem = problem or _close(got, want, rtol=1e-9, atol=1e-9)
            if problem is not None:
                return f"on {what}: {problem}{hint}"
        return None

    return _verdict("iw_bound", lambda: [fn(log_w.clone()) for log_w in cases.values()], expected)


EXERCISES = {"train_step": check_train_step, "iw_bound": check_iw_bound, "linear_beta": check_linear_beta}


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
