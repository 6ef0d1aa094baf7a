"""The reference solutions of the notebooks' exercises. They live in the repository's instructor/ folder, outside
the vaelib package and its wheel, so that neither a notebook, its report nor the installed package hands a student
the answer. The checks (vaelib/lessons/exercises.py, vaelib/lessons/vae_from_scratch.py) never call these: they
compare with numbers stored in vaelib/lessons/expected.json, which instructor/write_expected.py writes by running
these functions on the checks' seeded inputs. The tests (tests/test_lessons_exercises.py,
tests/test_notebook_vae_from_scratch.py) load this file by path, check that each solution is judged right and
typical mistakes wrong, and that expected.json is what write_expected.py writes now. Read one only after trying.
"""

from __future__ import annotations

import math

import torch
from torch import nn

# --- 00_vae_from_scratch --------------------------------------------------------------------------

def solution_train_step(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, beta: float,
                        eps: torch.Tensor, clip: float | None, free_bits: float) -> float:
    """One optimiser step on the beta-weighted negative ELBO with free bits: encode, reparameterise with the given
    eps, decode; recon = squared error summed over pixels, averaged over the batch; the KL of each latent dimension
    averaged over the batch and floored at free_bits (nats), then summed; loss = recon + beta * that. Zero the old
    gradients, backpropagate, clip the gradient norm (if clip), step. Returns the loss before the step."""
    mu, logvar = model.encode(x)
    z = mu + torch.exp(0.5 * logvar) * eps
    recon = (torch.sigmoid(model.decoder.forward_logits(z)) - x).pow(2).flatten(1).sum(1).mean()
    kl_dims = (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp())).mean(0)  # (D,): per dimension, over the batch
    loss = recon + beta * torch.clamp(kl_dims, min=free_bits).sum()
    opt.zero_grad()
    loss.backward()
    if clip is not None:
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
    opt.step()
    return loss.item()


def solution_iw_bound(log_w: torch.Tensor) -> torch.Tensor:
    """log (1/K) sum_k w_k per image from log weights (B, K), stably: log-sum-exp shifts by the largest log w
    before exponentiating (torch.logsumexp does it), so weights of e^-3000 do not underflow to log 0."""
    return torch.logsumexp(log_w, dim=1) - math.log(log_w.shape[1])


def solution_linear_beta(step: int, anneal_steps: int, beta_start: float, beta: float) -> float:
    """beta_start -> beta linearly over anneal_steps steps, then beta (Bowman et al., 2016)."""
    return beta_start + (beta - beta_start) * min(step / anneal_steps, 1.0)


# --- 01_datasets ----------------------------------------------------------------------------------

def solution_data_mean_sse(train: torch.Tensor, test: torch.Tensor) -> float:
    """Mean image of train in [0, 1], then the per-image sum of squared differences, averaged over test."""
    mean = train.double().div(255).mean(0)  # (C, H, W)
    return (test.double().div(255) - mean).pow(2).flatten(1).sum(1).mean().item()


# --- 02_architecture ------------------------------------------------------------------------------

def solution_noise_sigma(x: torch.Tensor, x_hat: torch.Tensor) -> float:
    """-log N(x; x_hat, sigma^2 I) over all M pixel values is SSE / (2 sigma^2) + M log sigma + M/2 log(2 pi); its
    derivative in sigma, -SSE / sigma^3 + M / sigma, is 0 at sigma^2 = SSE / M: the mean squared error per value."""
    return (x - x_hat).pow(2).mean().sqrt().item()


def solution_conv_out(size: int, kernel: int, stride: int, padding: int) -> int:
    """floor((size + 2 padding - kernel) / stride) + 1 (dilation 1)."""
    return (size + 2 * padding - kernel) // stride + 1


def solution_reparameterise(mu: torch.Tensor, logvar: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """sigma = exp(logvar / 2) (logvar is log sigma^2), then z = mu + sigma * eps: all the randomness is in the eps
    passed in, so z is a differentiable function of mu and logvar, with dz/dmu = 1 and dz/dlogvar = eps sigma / 2."""
    return mu + torch.exp(logvar / 2) * eps


# --- 03_stability_ablations -----------------------------------------------------------------------

def solution_cyclic_beta(step: int, total_steps: int, cycles: int, ratio: float, beta: float) -> float:
    """Position tau in the current cycle in [0, 1); ramp 0 -> beta over the first `ratio` of it, then hold."""
    period = total_steps / cycles
    tau = (step % period) / period
    return beta * min(tau / ratio, 1.0)


def solution_best_for(beta: float, rates: list[float], distortions: list[float]) -> int:
    """The index minimising D_i + beta R_i; min keeps the first of equal keys, so a tie goes to the lowest index."""
    return min(range(len(rates)), key=lambda i: distortions[i] + beta * rates[i])


# --- 04_failure_gallery ---------------------------------------------------------------------------

def solution_pull(images: torch.Tensor, recon: torch.Tensor, mean: torch.Tensor) -> float:
    """Squared distances per image summed over pixels, averaged over images, then one ratio."""
    to_mean = (recon - mean).pow(2).flatten(1).sum(1).mean()
    spread = (images - mean).pow(2).flatten(1).sum(1).mean()
    return (1 - to_mean / spread).item()


# --- 05_latent_explorer ---------------------------------------------------------------------------

def solution_gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor, prior_std: float) -> torch.Tensor:
    """KL(q || p) = E_q[log q(z) - log p(z)] per dimension, q = N(mu, sigma^2), p = N(0, s^2): log q(z) = -1/2 log(2 pi
    sigma^2) - (z - mu)^2 / (2 sigma^2) and log p(z) = -1/2 log(2 pi s^2) - z^2 / (2 s^2); under q,
    E[(z - mu)^2] = sigma^2 and E[z^2] = mu^2 + sigma^2, so KL = log(s / sigma) + (mu^2 + sigma^2) / (2 s^2) - 1/2
    (s = 1: 1/2 (mu^2 + sigma^2 - log sigma^2 - 1), Kingma & Welling's Appendix B)."""
    return math.log(prior_std) - 0.5 * logvar + (mu.pow(2) + logvar.exp()) / (2 * prior_std**2) - 0.5


def solution_slerp(z_a: torch.Tensor, z_b: torch.Tensor, t: float) -> torch.Tensor:
    """sin((1 - t) omega) / sin(omega) z_a + sin(t omega) / sin(omega) z_b, omega the angle between them."""
    omega = torch.arccos(torch.dot(z_a, z_b) / (z_a.norm() * z_b.norm()))
    return (torch.sin((1 - t) * omega) * z_a + torch.sin(t * omega) * z_b) / torch.sin(omega)


def solution_traverse(z: torch.Tensor, dim: int, span: float, n: int) -> torch.Tensor:
    """n copies of z, then dimension dim replaced by n evenly spaced values from z[dim] - span to z[dim] + span
    (linspace includes both ends)."""
    codes = z.repeat(n, 1)
    codes[:, dim] = torch.linspace(z[dim].item() - span, z[dim].item() + span, n)
    return codes


# --- 06_beyond_the_gaussian_vae ---------------------------------------------------------------------

def solution_straight_through(z_e: torch.Tensor, z_q: torch.Tensor) -> torch.Tensor:
    """Forward z_e + (z_q - z_e) = z_q; the detached difference has no gradient, so backward is the identity to z_e
    and nothing reaches z_q."""
    return z_e + (z_q - z_e).detach()


def solution_flow_pair(x0: torch.Tensor, x1: torch.Tensor, t: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The straight line z_t = (1 - t) x0 + t x1 and its velocity dz_t/dt = x1 - x0."""
    return (1 - t) * x0 + t * x1, x1 - x0
