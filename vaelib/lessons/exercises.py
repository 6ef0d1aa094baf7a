"""The exercises of notebooks 01-05: a task, and a check that says right or wrong against vaelib's own version (the
reference solutions are in solutions.py, out of the notebooks; the checks of notebook 00's exercises live in
vae_from_scratch.py and use the same rule).

A check takes the student's function and returns one line that starts with 'right', 'wrong' (and why) or
'not done yet' (the task stubs raise NotImplementedError). Every check compares on small seeded inputs, so its
line is the same on every machine; the tests run each check with its reference solution and with a wrong one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from vaelib.config import BetaSchedule
from vaelib.data.datasets import ImageSplit, data_mean_baseline
from vaelib.evaluation.plots import interpolate_latents
from vaelib.lessons.failure_gallery import distance_to_mean
from vaelib.lessons.solutions import (
    solution_conv_out,
    solution_cyclic_beta,
    solution_data_mean_sse,
    solution_pull,
    solution_slerp,
)
from vaelib.schedules import beta_at


def verdict(name: str, call: Callable[[], Any], expected: Callable[[Any], str | None]) -> str:
    """Run the student's call; `expected(result)` returns None when right, else what is wrong."""
    try:
        result = call()
    except NotImplementedError:
        return f"not done yet: {name} still raises NotImplementedError"
    except Exception as err:  # any other error is the student's to see
        return f"wrong: {name} raised {type(err).__name__}: {err}"
    problem = expected(result)
    return f"wrong: {name} {problem}" if problem else f"right: {name} agrees with vaelib"


def tensor_problem(result: Any, want: torch.Tensor, rtol: float = 1e-5, atol: float = 1e-6) -> str | None:
    """None when `result` is a tensor of want's shape and values, else what differs."""
    if not isinstance(result, torch.Tensor):
        return f"returned {type(result).__name__}, expected a tensor of shape {tuple(want.shape)}"
    if result.shape != want.shape:
        return f"returned shape {tuple(result.shape)}, expected {tuple(want.shape)}"
    if not torch.allclose(result.detach().to(want.dtype), want.detach(), rtol=rtol, atol=atol):
        return f"is off by up to {(result.detach().to(want.dtype) - want.detach()).abs().max().item():.3g}"
    return None


def number_problem(got: Any, want: float, where: str, rel: float = 1e-6) -> str | None:
    """None when `got` is a number within `rel` of want, else what differs (`where` names the case)."""
    if isinstance(got, torch.Tensor) and got.numel() == 1:
        got = got.item()
    if isinstance(got, bool) or not isinstance(got, (int, float)):
        return f"returned {type(got).__name__} {where}, expected a number"
    if abs(got - want) > rel * max(1.0, abs(want)):
        return f"gives {got!r} {where}; expected {want:.6g}"
    return None


# --- 01_datasets: the data-mean baseline ----------------------------------------------------------

def _uint8_images(n: int, seed: int) -> torch.Tensor:
    return torch.randint(0, 256, (n, 1, 6, 6), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


def check_data_mean_sse(fn: Callable[[torch.Tensor, torch.Tensor], float]) -> str:
    """fn(train_u8, test_u8) -> the squared error summed over pixels in [0, 1], averaged over the test images, of
    predicting every test image by the mean training image; against vaelib.data.datasets.data_mean_baseline."""
    train, test = _uint8_images(20, 0), _uint8_images(7, 1)
    want = data_mean_baseline(ImageSplit(train, None, None), ImageSplit(test, None, None))
    return verdict("data_mean_sse", lambda: fn(train, test), lambda got: number_problem(got, want, "", 1e-5))




# --- 02_architecture: the size after a convolution ------------------------------------------------

CONV_CASES = [(size, k, s, p) for size in (5, 8, 28, 32, 64)
              for k, s, p in ((3, 2, 1), (3, 1, 1), (4, 2, 1), (5, 2, 0))]


def check_conv_out(fn: Callable[[int, int, int, int], int]) -> str:
    """fn(size, kernel, stride, padding) -> the output side of a Conv2d, against torch running the layer."""
    def expected(values: Any) -> str | None:
        for (size, k, s, p), got in zip(CONV_CASES, values):
            conv = torch.nn.Conv2d(1, 1, k, stride=s, padding=p)
            want = conv(torch.zeros(1, 1, size, size)).shape[-1]
            if got != want:
                return f"gives {got!r} for size {size}, kernel {k}, stride {s}, padding {p}; torch gives {want}"
        return None

    return verdict("conv_out", lambda: [fn(*c) for c in CONV_CASES], expected)




# --- 03_stability_ablations: a cyclic beta schedule -------------------------------------------------

CYCLIC_CASES = [(step, 100, cycles, ratio, 0.8) for step in (0, 5, 12, 13, 24, 25, 26, 49, 50, 99)
                for cycles, ratio in ((4, 0.5), (2, 1.0))]


def check_cyclic_beta(fn: Callable[[int, int, int, float, float], float]) -> str:
    """fn(step, total_steps, cycles, ratio, beta) -> beta at that step, against beta_at of a 'cyclic' schedule
    starting from 0 (Fu et al., 2019)."""
    def expected(values: Any) -> str | None:
        for (step, total, cycles, ratio, beta), got in zip(CYCLIC_CASES, values):
            want = beta_at(BetaSchedule("cyclic", beta=beta, beta_start=0.0, cycles=cycles, ratio=ratio), step,
                           1, total)
            problem = number_problem(got, want, f"at step {step} of {total} ({cycles} cycles, ratio {ratio})", 1e-9)
            if problem:
                return problem
        return None

    return verdict("cyclic_beta", lambda: [fn(*c) for c in CYCLIC_CASES], expected)




# --- 04_failure_gallery: the pull towards the data mean ---------------------------------------------

def check_pull(fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], float]) -> str:
    """fn(images, recon, mean) -> 1 - mean |recon - mean|^2 / mean |x - mean|^2 (floats in [0, 1]), against
    failure_gallery.distance_to_mean."""
    g = torch.Generator().manual_seed(2)
    x, r = torch.rand(9, 1, 5, 5, generator=g), torch.rand(9, 1, 5, 5, generator=g)
    mean = x.mean(0)
    want = distance_to_mean(x, r, mean)["pull"]
    return verdict("pull", lambda: fn(x, r, mean), lambda got: number_problem(got, want, "", 1e-5))




# --- 05_latent_explorer: spherical interpolation ---------------------------------------------------

def check_slerp(fn: Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]) -> str:
    """fn(z_a, z_b, t) -> the code a fraction t along the great circle from z_a to z_b (D,), against
    vaelib.evaluation.plots.interpolate_latents(spherical=True)."""
    g = torch.Generator().manual_seed(3)
    z_a, z_b = torch.randn(6, generator=g), torch.randn(6, generator=g)
    path = interpolate_latents(z_a, z_b, 5, spherical=True)  # t = 0, 0.25, ..., 1

    def expected(values: Any) -> str | None:
        for i, got in enumerate(values):
            problem = tensor_problem(got, path[i], rtol=1e-4, atol=1e-5)
            if problem:
                return f"at t = {i / 4:g}: {problem}"
        return None

    return verdict("slerp", lambda: [fn(z_a, z_b, i / 4) for i in range(5)], expected)




EXERCISES = {"01_datasets": {"data_mean_sse": (check_data_mean_sse, solution_data_mean_sse)},
             "02_architecture": {"conv_out": (check_conv_out, solution_conv_out)},
             "03_stability_ablations": {"cyclic_beta": (check_cyclic_beta, solution_cyclic_beta)},
             "04_failure_gallery": {"pull": (check_pull, solution_pull)},
             "05_latent_explorer": {"slerp": (check_slerp, solution_slerp)}}
