"""The exercises of notebooks 01-05: a task, and a check that says right or wrong against stored expected values
and properties of the answer (the checks of notebook 00's exercises live in vae_from_scratch.py and use the same
rule).

A check takes the student's function and returns one line that starts with 'right', 'wrong' (and why) or
'not done yet' (the task stubs raise NotImplementedError). Every check runs the function on small seeded inputs
(made here) and compares its results with the numbers in expected.json, beside this module, or with a property
the answer must have; check_conv_out compares with torch running the layer. No check calls a function of vaelib
that computes the answer: the reference solutions live outside the package, in the repository's instructor/
folder (not in the wheel), where instructor/write_expected.py runs them on these inputs and writes
expected.json. The tests run each check with its reference solution and with typical wrong answers.
"""

from __future__ import annotations

import functools
import json
import math
import operator
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

EXPECTED_FILE = Path(__file__).resolve().with_name("expected.json")


@functools.cache
def expected_values() -> dict[str, Any]:
    """The stored expected values of every exercise, by exercise name (numbers and lists of numbers only)."""
    return json.loads(EXPECTED_FILE.read_text())


def verdict(name: str, call: Callable[[], Any], expected: Callable[[Any], str | None]) -> str:
    """Run the student's call; `expected(result)` returns None when right, else what is wrong."""
    try:
        result = call()
    except NotImplementedError:
        return f"not done yet: {name} still raises NotImplementedError"
    except Exception as err:  # any other error is the student's to see
        return f"wrong: {name} raised {type(err).__name__}: {err}"
    problem = expected(result)
    return f"wrong: {name} {problem}" if problem else f"right: {name} matches the expected values"


def shape_problem(result: Any, want: torch.Tensor) -> str | None:
    """None when `result` is a tensor of want's shape, else what differs."""
    if not isinstance(result, torch.Tensor):
        return f"returned {type(result).__name__}, expected a tensor of shape {tuple(want.shape)}"
    if result.shape != want.shape:
        return f"returned shape {tuple(result.shape)}, expected {tuple(want.shape)}"
    return None


def tensor_problem(result: Any, want: torch.Tensor, rtol: float = 1e-5, atol: float = 1e-6) -> str | None:
    """None when `result` is a tensor of want's shape and values, else what differs."""
    problem = shape_problem(result, want)
    if problem:
        return problem
    if not torch.allclose(result.detach().to(want.dtype), want.detach(), rtol=rtol, atol=atol):
        return f"is off by up to {(result.detach().to(want.dtype) - want.detach()).abs().max().item():.3g}"
    return None


def number_problem(got: Any, want: float, where: str, rel: float = 1e-6) -> str | None:
    """None when `got` is a number within `rel` of want, else what differs (`where` names the case)."""
    at = f" {where}" if where else ""
    if isinstance(got, torch.Tensor) and got.numel() == 1:
        got = got.item()
    if isinstance(got, bool) or not isinstance(got, (int, float)):
        return f"returned {type(got).__name__}{at}, expected a number"
    if not abs(got - want) <= rel * max(1.0, abs(want)):  # `not <=`: a NaN is wrong too
        return f"gives {got!r}{at}; expected {want:.6g}"
    return None


# --- 01_datasets: the data-mean baseline ----------------------------------------------------------

def _uint8_images(n: int, seed: int) -> torch.Tensor:
    return torch.randint(0, 256, (n, 1, 6, 6), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


def data_mean_inputs() -> tuple[torch.Tensor, torch.Tensor]:
    """(train, test): 20 and 7 seeded uint8 images (N, 1, 6, 6)."""
    return _uint8_images(20, 0), _uint8_images(7, 1)


def check_data_mean_sse(fn: Callable[[torch.Tensor, torch.Tensor], float]) -> str:
    """fn(train_u8, test_u8) -> the squared error summed over pixels in [0, 1], averaged over the test images, of
    predicting every test image by the mean training image; against the stored value."""
    train, test = data_mean_inputs()
    want = expected_values()["data_mean_sse"]

    def expected(got: Any) -> str | None:
        problem = number_problem(got, want, "", 1e-5)
        if problem and isinstance(got, (int, float)) and abs(got / want - 255**2) < 0.01 * 255**2:
            problem += " (were the pixel values scaled from 0..255 to [0, 1]?)"
        return problem

    return verdict("data_mean_sse", lambda: fn(train.clone(), test.clone()), expected)


# --- 01_datasets: the noise level a Gaussian decoder would choose ---------------------------------

def noise_inputs() -> tuple[torch.Tensor, torch.Tensor]:
    """(x, x_hat): 5 seeded images and predictions (5, 1, 4, 4) in [0, 1]."""
    g = torch.Generator().manual_seed(4)
    return torch.rand(5, 1, 4, 4, generator=g), torch.rand(5, 1, 4, 4, generator=g)


def check_noise_sigma(fn: Callable[[torch.Tensor, torch.Tensor], float]) -> str:
    """fn(x, x_hat) -> the sigma that maximises the likelihood of the images x under N(x_hat, sigma^2 I), one sigma
    for every pixel value of every image; against the stored value, and the property that doubling every error
    doubles sigma."""
    x, x_hat = noise_inputs()
    want = expected_values()["noise_sigma"]

    def expected(values: Any) -> str | None:
        got, doubled = values
        problem = number_problem(got, want, "", 1e-5)
        if isinstance(got, torch.Tensor) and got.numel() == 1:
            got = got.item()
        if problem and isinstance(got, (int, float)) and math.isclose(got, want**2, rel_tol=1e-4):
            problem += " (that is sigma^2, the variance; the function returns sigma)"
        elif problem and isinstance(got, (int, float)) and math.isclose(got, want * math.sqrt(x[0].numel()),
                                                                         rel_tol=1e-4):
            problem += " (is the squared error divided by the number of images only, not by every pixel value?)"
        return problem or number_problem(doubled, 2 * want, "when every error is doubled", 1e-5)

    return verdict("noise_sigma", lambda: [fn(x.clone(), x_hat.clone()), fn(2 * x - x_hat, x_hat.clone())], expected)


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


# --- 02_architecture: the reparameterisation and its gradient -------------------------------------

def reparameterise_inputs() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(mu, logvar, eps): seeded (4, 3) each, logvar spread over about [-3, 3] (where a variance and a standard
    deviation differ)."""
    g = torch.Generator().manual_seed(4)
    return torch.randn(4, 3, generator=g), 1.5 * torch.randn(4, 3, generator=g), torch.randn(4, 3, generator=g)


def _largest_gap(got: torch.Tensor, want: torch.Tensor) -> float:
    return (got.detach().to(want.dtype) - want).abs().max().item()


def check_reparameterise(fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]) -> str:
    """fn(mu, logvar, eps) -> z, a sample of N(mu, exp(logvar)) made from the given standard normal noise eps and
    differentiable in mu and logvar. Its properties first: the same z from a second call with the same eps (no noise
    of its own), a gradient path to mu and logvar, and autograd's gradients of z.sum() (leaf mu and logvar), which
    must be dz/dmu = 1 and dz/dlogvar = eps * exp(logvar / 2) / 2 elementwise; then the stored values."""
    mu, logvar, eps = reparameterise_inputs()
    want = torch.tensor(expected_values()["reparameterise"])

    def call() -> tuple[Any, Any, torch.Tensor | None, torch.Tensor | None]:
        leaf_mu, leaf_logvar = mu.clone().requires_grad_(), logvar.clone().requires_grad_()
        z = fn(leaf_mu, leaf_logvar, eps.clone())
        again = fn(mu.clone(), logvar.clone(), eps.clone())
        if isinstance(z, torch.Tensor) and z.requires_grad and z.shape == want.shape:
            z.sum().backward()
        return z, again, leaf_mu.grad, leaf_logvar.grad

    def expected(values: Any) -> str | None:
        z, again, d_mu, d_logvar = values
        problem = shape_problem(z, want)
        if problem:
            return problem
        if not (isinstance(again, torch.Tensor) and again.shape == z.shape
                and torch.allclose(again.detach().to(z.dtype), z.detach(), rtol=1e-6, atol=1e-7)):
            return ("gives another z on a second call with the same mu, logvar and eps: build z from the eps passed "
                    "in and draw no noise inside (the noise is an input, so z is a function of mu and logvar)")
        if not z.requires_grad:
            return ("returns a z without a gradient path (z.requires_grad is False): was it detached, or computed "
                    "outside autograd (.item(), numpy, torch.no_grad)? Training backpropagates through z to mu and "
                    "logvar")
        missing = [name for name, grad in (("mu", d_mu), ("logvar", d_logvar)) if grad is None]
        if missing:
            return (f"sends no gradient to {' or '.join(missing)} (was it detached?): z must depend on mu and logvar "
                    "through autograd")
        if not torch.allclose(d_mu, torch.ones_like(d_mu), rtol=1e-5, atol=1e-6):
            return (f"gives dz/dmu off by up to {_largest_gap(d_mu, torch.ones_like(mu)):.3g} from 1: z moves one "
                    "for one with mu")
        sd = torch.exp(logvar / 2)
        if not torch.allclose(d_logvar, eps * sd / 2, rtol=1e-4, atol=1e-6):
            problem = (f"gives dz/dlogvar off by up to {_largest_gap(d_logvar, eps * sd / 2):.3g} from "
                       "eps * sigma / 2, with sigma = exp(logvar / 2) the standard deviation")
            if torch.allclose(d_logvar, eps * sd**2, rtol=1e-4, atol=1e-6):
                problem += " (this z multiplies eps by exp(logvar), the variance sigma^2, not by sigma)"
            return problem
        return tensor_problem(z, want)

    return verdict("reparameterise", call, expected)


# --- 03_stability_ablations: a cyclic beta schedule -------------------------------------------------

CYCLIC_CASES = [(step, 100, cycles, ratio, 0.8) for step in (0, 5, 12, 13, 24, 25, 26, 49, 50, 99)
                for cycles, ratio in ((4, 0.5), (2, 1.0))]


def check_cyclic_beta(fn: Callable[[int, int, int, float, float], float]) -> str:
    """fn(step, total_steps, cycles, ratio, beta) -> beta at that step of a cyclic schedule starting from 0 (Fu et
    al., 2019), against the stored values at CYCLIC_CASES (the first step of each cycle among them)."""
    wants = expected_values()["cyclic_beta"]

    def expected(values: Any) -> str | None:
        for (step, total, cycles, ratio, _), got, want in zip(CYCLIC_CASES, values, wants):
            problem = number_problem(got, want, f"at step {step} of {total} ({cycles} cycles, ratio {ratio})", 1e-9)
            if problem:
                return problem
        return None

    return verdict("cyclic_beta", lambda: [fn(*c) for c in CYCLIC_CASES], expected)


# --- 03_stability_ablations: which run is best on another beta's objective ---------------------------

BEST_FOR_CASES = [  # (beta', rates, distortions, what the case is): dyadic numbers, so that ties are exact
    (1.0, [30.0, 12.0, 3.0], [20.0, 35.0, 60.0], "a sweep of three runs"),
    (0.01, [30.0, 12.0, 3.0], [20.0, 35.0, 60.0], "a beta' near 0, where rate is almost free"),
    (100.0, [30.0, 12.0, 3.0], [20.0, 35.0, 60.0], "a large beta', where every nat of rate is expensive"),
    (0.25, [16.0, 2.0, 8.0, 4.0], [1.0, 9.0, 2.0, 5.0], "four runs in no particular order"),
    (0.5, [8.0, 4.0, 2.0], [10.0, 12.0, 13.5], "a tie between runs 0 and 1, which goes to the lowest index"),
    (2.0, [8.0, 4.0, 2.0], [10.0, 12.0, 16.0], "a tie between runs 1 and 2, which goes to the lowest index"),
    (1.0, [1.0, 2.0, 3.0], [3.0, 2.0, 1.0], "a tie between all three runs, which goes to the lowest index"),
    (3.0, [5.0], [7.0], "a single run"),
]
SHIFT = 1024.0  # added to every distortion: the best run must not change


def _index(got: Any) -> int | None:
    """got as an int when it is an index (an int, a numpy or a 0-d torch integer; not a bool), else None."""
    if isinstance(got, (bool, float)):
        return None
    try:
        return operator.index(got)
    except TypeError:
        return None


def check_best_for(fn: Callable[[float, list[float], list[float]], int]) -> str:
    """fn(beta, rates, distortions) -> the index of the run that minimises D + beta R (ties: the lowest index).
    Every answer must be a run's index, must not change when the same constant is added to every distortion, and
    must equal the stored one at BEST_FOR_CASES (ties among them, and a beta' at either end of the curve)."""
    wants = expected_values()["best_for"]

    def call() -> list[tuple[Any, Any]]:
        return [(fn(beta, list(rates), list(dists)), fn(beta, list(rates), [d + SHIFT for d in dists]))
                for beta, rates, dists, _ in BEST_FOR_CASES]

    def expected(values: Any) -> str | None:
        for (beta, rates, dists, what), (got, shifted), want in zip(BEST_FOR_CASES, values, wants):
            at = f"at beta' = {beta:g} for rates {rates} and distortions {dists}"
            for answer in (got, shifted):
                index = _index(answer)
                if index is None or not 0 <= index < len(rates):
                    return (f"returned {answer!r} ({type(answer).__name__}) {at}; expected the index of a run, an int "
                            f"from 0 to {len(rates) - 1}")
            if _index(got) != _index(shifted):
                return (f"gives {_index(got)} {at} but {_index(shifted)} when {SHIFT:g} is added to every distortion: "
                        "that adds the same amount to every run's D + beta' R, so the best run cannot change")
            if _index(got) != want:
                return f"gives {_index(got)} {at} ({what}); expected {want}"
        return None

    return verdict("best_for", call, expected)


# --- 04_failure_gallery: the pull towards the data mean ---------------------------------------------

def pull_inputs() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(images, recon, mean): 9 seeded images and reconstructions (9, 1, 5, 5) in [0, 1], the images' mean."""
    g = torch.Generator().manual_seed(2)
    x, r = torch.rand(9, 1, 5, 5, generator=g), torch.rand(9, 1, 5, 5, generator=g)
    return x, r, x.mean(0)


def check_pull(fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], float]) -> str:
    """fn(images, recon, mean) -> 1 - mean |recon - mean|^2 / mean |x - mean|^2 (floats in [0, 1]): the stored
    value on pull_inputs, and the two ends: 1 when every reconstruction is the mean image, 0 when it is its image."""
    x, r, mean = pull_inputs()
    want = expected_values()["pull"]

    def expected(values: Any) -> str | None:
        got, at_mean, perfect = values
        return (number_problem(got, want, "", 1e-5)
                or number_problem(at_mean, 1.0, "when every reconstruction is the mean image", 1e-5)
                or number_problem(perfect, 0.0, "when every reconstruction equals its image", 1e-5))

    return verdict("pull", lambda: [fn(x.clone(), r.clone(), mean.clone()),
                                    fn(x.clone(), mean.expand_as(x).clone(), mean.clone()),
                                    fn(x.clone(), x.clone(), mean.clone())], expected)


# --- 04_failure_gallery: the KL of a Gaussian code, derived ----------------------------------------

KL_PRIOR_STDS = (1.0, 0.5, 2.0)


def kl_inputs() -> tuple[torch.Tensor, torch.Tensor]:
    """(mu, logvar): seeded (4, 3), the first row at mu 0, logvar 0."""
    g = torch.Generator().manual_seed(5)
    mu, logvar = torch.randn(4, 3, generator=g), 2 * torch.randn(4, 3, generator=g)
    mu[0], logvar[0] = 0.0, 0.0
    return mu, logvar


def check_gaussian_kl(fn: Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]) -> str:
    """fn(mu, logvar, prior_std) -> (B, D): KL(N(mu, exp(logvar)) || N(0, prior_std^2)) per element in nats;
    against the stored values at each of KL_PRIOR_STDS, and 0 where q is the prior (mu 0, sigma prior_std)."""
    mu, logvar = kl_inputs()
    wants = [torch.tensor(w, dtype=torch.float64) for w in expected_values()["gaussian_kl"]]

    def expected(values: Any) -> str | None:
        for s, got, want in zip(KL_PRIOR_STDS, [v[0] for v in values], wants):
            problem = shape_problem(got, want)
            if problem:
                return f"with prior N(0, {s:g}^2) {problem}"
        for s, at_prior in zip(KL_PRIOR_STDS, [v[1] for v in values]):
            if not isinstance(at_prior, torch.Tensor) or at_prior.shape != (1, 3):
                return f"with prior N(0, {s:g}^2) returned {at_prior!r} for a (1, 3) input; expected a tensor (1, 3)"
            flat = at_prior.detach().double().flatten()
            v = flat[flat.abs().argmax()].item()
            if not abs(v) <= 1e-6:
                hint = " (is a constant term missing?)" if 0 < v < math.inf else (
                    " (a KL is never negative)" if v < 0 else " (is logvar read as sigma?)")
                return f"gives {v:.4g} where q is the prior itself (mu 0, sigma {s:g}), where the KL is 0{hint}"
        for s, got, want in zip(KL_PRIOR_STDS, [v[0] for v in values], wants):
            problem = tensor_problem(got, want, rtol=1e-5, atol=1e-6)
            if problem:
                return f"with prior N(0, {s:g}^2) {problem}"
        return None

    def calls() -> list[tuple[Any, Any]]:
        at = lambda s: torch.full((1, 3), 2 * math.log(s))  # noqa: E731 - log sigma^2 of the prior
        return [(fn(mu.clone(), logvar.clone(), s), fn(torch.zeros(1, 3), at(s), s)) for s in KL_PRIOR_STDS]

    return verdict("gaussian_kl", calls, expected)


# --- 05_latent_explorer: spherical interpolation ---------------------------------------------------

SLERP_TS = (0.0, 0.25, 0.5, 0.75, 1.0)


def slerp_inputs() -> tuple[torch.Tensor, torch.Tensor]:
    """(z_a, z_b): two seeded codes (6,) of different norms."""
    g = torch.Generator().manual_seed(3)
    return torch.randn(6, generator=g), torch.randn(6, generator=g)


def _angle(u: torch.Tensor, v: torch.Tensor) -> float:
    """The angle between two vectors in radians (in float64)."""
    u, v = u.detach().double(), v.detach().double()
    return math.acos(max(-1.0, min(1.0, (torch.dot(u, v) / (u.norm() * v.norm())).item())))


def check_slerp(fn: Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]) -> str:
    """fn(z_a, z_b, t) -> the code a fraction t along the great circle from z_a to z_b (D,). Its properties on two
    codes of equal norm: it starts at z_a, ends at z_b, keeps their norm and is t times the full angle away from
    z_a; then the stored values at five t on slerp_inputs (codes of different norms)."""
    z_a, z_b = slerp_inputs()
    z_c = z_b * (z_a.norm() / z_b.norm())  # z_b's direction at z_a's norm
    omega = _angle(z_a, z_c)
    wants = [torch.tensor(v) for v in expected_values()["slerp"]]

    def expected(values: Any) -> str | None:
        same_norm, general = values
        for t, got in zip(SLERP_TS, same_norm):
            problem = shape_problem(got, z_a)
            if problem:
                return f"at t = {t:g}: {problem}"
            for end, name, z in ((0.0, "z_a", z_a), (1.0, "z_b", z_c)):
                if t == end and tensor_problem(got, z, rtol=1e-4, atol=1e-5):
                    return f"at t = {t:g} does not return {name} (off by up to {(got.detach() - z).abs().max():.3g})"
            norm, radius = got.detach().double().norm().item(), z_a.double().norm().item()
            if not abs(norm - radius) <= 1e-4 * radius:  # `not <=`: a NaN is wrong too
                return (f"at t = {t:g} gives a code of norm {norm:.4g} between two codes of norm {radius:.4g}: the "
                        "great circle keeps the norm (a straight line cuts inside the sphere)")
            if not abs(_angle(got, z_a) - t * omega) <= 1e-4:
                return (f"at t = {t:g} gives a code {_angle(got, z_a):.4g} rad from z_a; expected t times the angle "
                        f"from z_a to z_b ({omega:.4g} rad), {t * omega:.4g} rad")
        for t, got, want in zip(SLERP_TS, general, wants):
            problem = tensor_problem(got, want, rtol=1e-4, atol=1e-5)
            if problem:
                return f"at t = {t:g}, on two codes of different norms: {problem}"
        return None

    return verdict("slerp", lambda: ([fn(z_a.clone(), z_c.clone(), t) for t in SLERP_TS],
                                     [fn(z_a.clone(), z_b.clone(), t) for t in SLERP_TS]), expected)


# --- 05_latent_explorer: a latent traversal ---------------------------------------------------------

TRAVERSE_CASES = [(2, 3.0, 7), (0, 1.5, 2), (5, 0.5, 4)]  # (dim, span, n)


def traverse_inputs() -> torch.Tensor:
    """z: a seeded code (6,) with no coordinate near 0 (so that a sweep around 0 and one around z[dim] differ)."""
    return torch.randn(6, generator=torch.Generator().manual_seed(5))


def check_traverse(fn: Callable[[torch.Tensor, int, float, int], torch.Tensor]) -> str:
    """fn(z, dim, span, n) -> (n, D) codes equal to z except in dimension dim, which goes linearly from
    z[dim] - span to z[dim] + span in n evenly spaced steps, both ends included. Its properties at TRAVERSE_CASES
    on traverse_inputs (the shape, only dim changes, the two ends, even steps), then the stored values."""
    z = traverse_inputs()
    wants = [torch.tensor(v) for v in expected_values()["traverse"]]

    def expected(values: Any) -> str | None:
        for (dim, span, n), got, want in zip(TRAVERSE_CASES, values, wants):
            at = f"for dim {dim}, span {span:g}, n {n}"
            problem = shape_problem(got, want)
            if problem:
                if isinstance(got, torch.Tensor) and got.ndim == 2 and got.shape[0] == n - 1:
                    problem += ": n codes, both ends included (is one missing?)"
                return f"{at} {problem}"
            codes = got.detach().to(z.dtype)
            moved = [d for d in range(z.numel()) if d != dim
                     and not torch.allclose(codes[:, d], z[d].expand(n), rtol=1e-5, atol=1e-6)]
            if moved:
                return (f"{at} changes dimension(s) {moved} as well: only z[{dim}] moves, every other coordinate "
                        "stays at z's")
            sweep = codes[:, dim]
            low, high = z[dim].item() - span, z[dim].item() + span
            first, last = sweep[0].item(), sweep[-1].item()
            if not (abs(first - low) <= 1e-5 * max(1.0, abs(low)) and abs(last - high) <= 1e-5 * max(1.0, abs(high))):
                problem = (f"{at} sweeps z[{dim}] from {first:.4g} to {last:.4g}; expected z[{dim}] - span = {low:.4g} "
                           f"to z[{dim}] + span = {high:.4g}")
                if abs(first + span) <= 1e-5 * max(1.0, span) and abs(last - span) <= 1e-5 * max(1.0, span):
                    problem += " (the sweep is centred on the code's own value z[dim], not on 0)"
                return problem
            steps = sweep.diff()
            if not torch.allclose(steps, torch.full_like(steps, 2 * span / (n - 1)), rtol=1e-4, atol=1e-6):
                return (f"{at} moves z[{dim}] in uneven steps ({', '.join(f'{s:.4g}' for s in steps.tolist())}); "
                        f"expected {n - 1} equal steps")
            problem = tensor_problem(got, want)
            if problem:
                return f"{at} {problem}"
        return None

    return verdict("traverse", lambda: [fn(z.clone(), dim, span, n) for dim, span, n in TRAVERSE_CASES], expected)


# --- 06_beyond_the_gaussian_vae: the straight-through estimator, and flow matching's training pair ----

def straight_through_inputs() -> tuple[torch.Tensor, torch.Tensor]:
    """(z_e, z_q): an encoder output and the codes it was quantised to, seeded (2, 3, 2, 2), z_q != z_e."""
    g = torch.Generator().manual_seed(6)
    z_e = torch.randn(2, 3, 2, 2, generator=g)
    return z_e, z_e + 0.5 + torch.rand(2, 3, 2, 2, generator=g)


def check_straight_through(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> str:
    """fn(z_e, z_q) -> the decoder's input: forward, the codes z_q exactly; backward, the decoder's gradient passed
    to z_e unchanged and none to z_q (the codebook learns from its own term). Checked by its properties: the values,
    and the gradients of sum(w * out) for a seeded w."""
    z_e0, z_q0 = straight_through_inputs()
    w = torch.randn(z_e0.shape, generator=torch.Generator().manual_seed(7))

    def call() -> tuple[Any, Any, Any]:
        z_e, z_q = z_e0.clone().requires_grad_(True), z_q0.clone().requires_grad_(True)
        out = fn(z_e, z_q)
        if isinstance(out, torch.Tensor) and out.requires_grad:
            (w * out).sum().backward()
        return out, z_e.grad, z_q.grad

    def expected(got: Any) -> str | None:
        out, g_e, g_q = got
        problem = tensor_problem(out, z_q0)
        if problem:
            return problem + (" (forward, the decoder must see the codes z_q, not the encoder's z_e)"
                              if isinstance(out, torch.Tensor) and torch.allclose(out.detach(), z_e0) else "")
        to_q = g_q is not None and bool(g_q.abs().sum() > 0)
        if to_q and (g_e is None or not g_e.abs().sum()):
            return ("sends the decoder's gradient to z_q instead of z_e: the encoder must get it, the codes none "
                    "(detach the right term)")
        if g_e is None or not torch.allclose(g_e, w, atol=1e-6):
            return ("sends no gradient to z_e: the decoder's gradient must reach the encoder unchanged (is the whole "
                    "output detached, or z_q returned as it is?)" if g_e is None or not g_e.abs().sum() else
                    "changes the gradient on its way to z_e: it must pass through unchanged")
        if to_q:
            return "sends the decoder's gradient to z_q as well: only z_e gets it (detach the right term)"
        return None

    return verdict("straight_through", call, expected)


FLOW_TS = (0.0, 0.3, 1.0)


def flow_inputs() -> tuple[torch.Tensor, torch.Tensor]:
    """(x0, x1): seeded noise and data points (4, 3)."""
    g = torch.Generator().manual_seed(8)
    return torch.randn(4, 3, generator=g), 2 + torch.randn(4, 3, generator=g)


def check_flow_pair(fn: Callable[[torch.Tensor, torch.Tensor, float], tuple[torch.Tensor, torch.Tensor]]) -> str:
    """fn(x0, x1, t) -> (z_t, v): the point a share t along the straight line from the noise x0 to the data x1, and
    the velocity a flow-matching network is trained to output there; against the stored values at each of FLOW_TS
    and the ends (t = 0 gives the noise, t = 1 the data)."""
    x0, x1 = flow_inputs()
    wants = expected_values()["flow_pair"]

    def expected(values: Any) -> str | None:
        for t, got, (want_z, want_v) in zip(FLOW_TS, values, wants):
            if not isinstance(got, tuple) or len(got) != 2:
                return f"at t = {t:g} returned {type(got).__name__}; expected a pair (z_t, v)"
            z, v = got
            problem = tensor_problem(z, torch.tensor(want_z))
            if problem:
                swapped = isinstance(z, torch.Tensor) and z.shape == x0.shape and t != 0.5 and torch.allclose(
                    z, t * x0 + (1 - t) * x1, atol=1e-5)
                return f"at t = {t:g}: z_t {problem}" + (" (t = 0 must give the noise x0)" if swapped else "")
            problem = tensor_problem(v, torch.tensor(want_v))
            if problem:
                flipped = isinstance(v, torch.Tensor) and v.shape == x0.shape and torch.allclose(v, x0 - x1, atol=1e-5)
                return f"at t = {t:g}: v {problem}" + (" (the velocity points from the noise to the data)"
                                                       if flipped else "")
        return None

    return verdict("flow_pair", lambda: [fn(x0.clone(), x1.clone(), t) for t in FLOW_TS], expected)


EXERCISES = {"01_datasets": {"data_mean_sse": check_data_mean_sse, "noise_sigma": check_noise_sigma},
             "02_architecture": {"conv_out": check_conv_out, "reparameterise": check_reparameterise},
             "03_stability_ablations": {"cyclic_beta": check_cyclic_beta, "best_for": check_best_for},
             "04_failure_gallery": {"pull": check_pull, "gaussian_kl": check_gaussian_kl},
             "05_latent_explorer": {"slerp": check_slerp, "traverse": check_traverse},
             "06_beyond_the_gaussian_vae": {"straight_through": check_straight_through,
                                            "flow_pair": check_flow_pair}}
