"""Helpers of notebook 02_architecture: preset tables, layer shapes, parameter counts and ELBO demos.

Tables are lists of dicts (one dict per row) that `tables.format_table` prints; every number in them is
computed from the real presets and models.
"""

from __future__ import annotations

import math
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure

from vaelib.config import PRESETS, BetaSchedule
from vaelib.losses import elbo
from vaelib.models.vae import VAE
from vaelib.schedules import beta_at, beta_curve


def beta_plan(s: BetaSchedule) -> str:
    """A schedule in words, e.g. 'warmup: 0 for 15 epochs, then 0.1'."""
    if s.kind == "constant":
        return f"constant {s.beta:g}"
    if s.kind == "warmup":
        return f"warmup: {s.beta_start:g} for {s.warmup_epochs:g} epochs, then {s.beta:g}"
    if s.kind == "linear":
        return f"linear {s.beta_start:g} -> {s.beta:g} over {s.anneal_steps} steps"
    return f"cyclic {s.beta_start:g} -> {s.beta:g}, {s.cycles} cycles, ramp {s.ratio:g}"


def preset_rows(models: dict[str, VAE] | None = None) -> list[dict[str, Any]]:
    """Every preset in PRESETS with the parameter count of the model it builds."""
    rows = []
    for name, c in PRESETS.items():
        model = models[name] if models else VAE(c)
        rows.append({"preset": name, "input": "x".join(map(str, c.input_shape)),
                     "hidden dims": list(c.model.hidden_dims), "latent": c.model.latent_dim,
                     "beta plan": beta_plan(c.train.schedule), "BN": c.model.batch_norm,
                     "clip": c.train.grad_clip, "lr": c.train.lr, "batch": c.train.batch_size,
                     "epochs": c.train.epochs, "parameters": f"{model.parameter_count():,}"})
    return rows


def shared_settings() -> dict[str, list[str]]:
    """The settings every preset shares (one value each when they all agree)."""
    fields = {"kernel": lambda c: c.model.kernel_size, "LeakyReLU slope": lambda c: c.model.leaky_slope,
              "recon": lambda c: c.train.recon}
    return {key: sorted({str(f(c)) for c in PRESETS.values()}) for key, f in fields.items()}


def receptive_field(layers: int, kernel: int = 3) -> int:
    """Input pixels (per side) seen by one output of `layers` stacked stride-2 convs: 1 + (k-1)(2^L - 1)."""
    return 1 + (kernel - 1) * (2**layers - 1)


def depth_rows(models: dict[str, VAE]) -> list[dict[str, Any]]:
    """Per preset: feature map (C x H x W) after each conv, receptive field and the flattened feature size."""
    rows = []
    for name, model in models.items():
        shapes = [s for n, s in model.layer_shapes() if n.startswith("encoder.") and n[8:].isdigit()]
        c = model.config
        rows.append({"preset": name, "input": "x".join(map(str, c.input_shape)),
                     "after each stride-2 conv": " -> ".join("x".join(map(str, s[1:])) for s in shapes),
                     "receptive field (px)": f"{receptive_field(len(shapes), c.model.kernel_size)} of "
                                             f"{c.data.image_size}",
                     "flat features": math.prod(shapes[-1][1:])})
    return rows


def _module_for(model: VAE, name: str) -> torch.nn.Module | None:
    for path in (name, name.replace("encoder.", "encoder.convs.", 1), name.replace("decoder.", "decoder.deconvs.", 1)):
        try:
            return model.get_submodule(path)
        except AttributeError:
            continue
    return None


def _describe(module: torch.nn.Module) -> str:
    parts = list(module) if isinstance(module, torch.nn.Sequential) else [module]
    words = []
    for m in parts:
        if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d, torch.nn.Linear)):
            kind = {torch.nn.Conv2d: "Conv2d", torch.nn.ConvTranspose2d: "ConvT2d", torch.nn.Linear: "Linear"}[type(m)]
            io = (m.in_features, m.out_features) if kind == "Linear" else (m.in_channels, m.out_channels)
            words.append(f"{kind} {io[0]}->{io[1]}" + ("" if kind == "Linear" else f" k{m.kernel_size[0]} s2"))
        else:
            words.append(type(m).__name__)
    return " + ".join(words)


def layer_rows(model: VAE) -> list[dict[str, Any]]:
    """VAE.layer_shapes of one image with each layer's modules and parameter count."""
    rows = []
    for name, shape in model.layer_shapes():
        module = _module_for(model, name)
        params = sum(p.numel() for p in module.parameters()) if module is not None else 0
        what = _describe(module) if module is not None else ""
        if name == "encoder.fc_mu":  # fc_logvar runs beside it with the same shape and size
            params += sum(p.numel() for p in model.encoder.fc_logvar.parameters())
            name = "encoder.fc_mu, fc_logvar"
            what += " (x2)"
        elif name == "output":
            what = "Sigmoid (resized to the input if the sizes differ)"
        rows.append({"layer": name, "modules": what, "output shape": "x".join(map(str, shape)),
                     "parameters": f"{params:,}"})
    return rows


def parameter_breakdown(model: VAE) -> list[dict[str, Any]]:
    """Parameters per part of the network, with each part's share of the total."""
    parts = {"encoder convs": model.encoder.convs,
             "encoder heads (fc_mu + fc_logvar)": [model.encoder.fc_mu, model.encoder.fc_logvar],
             "decoder fc": model.decoder.fc, "decoder transposed convs": model.decoder.deconvs}
    total = model.parameter_count()
    rows = []
    for name, mods in parts.items():
        n = sum(p.numel() for m in (mods if isinstance(mods, list) else [mods]) for p in m.parameters())
        rows.append({"part": name, "parameters": f"{n:,}", "share": f"{100 * n / total:.1f}%"})
    rows.append({"part": "total", "parameters": f"{total:,}", "share": "100.0%"})
    return rows


def reparameterisation_demo(mu: tuple[float, ...] = (0.0, 2.0), sigma: tuple[float, ...] = (1.0, 0.5),
                            n: int = 100_000, seed: int = 0) -> dict[str, Any]:
    """n draws of z = mu + sigma * eps (VAE.reparameterize) and the gradient of L = mean(z^2) through them.

    E[z^2] = mu^2 + sigma^2, so the exact gradients are dL/dmu = 2 mu and dL/dlogvar = sigma^2.
    """
    mu_t = torch.tensor(mu, dtype=torch.float64, requires_grad=True)  # (D,)
    logvar = torch.tensor(sigma, dtype=torch.float64).pow(2).log().requires_grad_()  # (D,)
    gen = torch.Generator().manual_seed(seed)
    z = VAE.reparameterize(mu_t.expand(n, -1), logvar.expand(n, -1), generator=gen)  # (n, D)
    z.pow(2).mean(0).sum().backward()
    sig = torch.tensor(sigma, dtype=torch.float64)
    rows = [{"dim": d, "mu": mu[d], "sigma": sigma[d], "mean of z": z[:, d].mean().item(),
             "std of z": z[:, d].std().item(), "dL/dmu": mu_t.grad[d].item(), "2 mu": 2 * mu[d],
             "dL/dlogvar": logvar.grad[d].item(), "sigma^2": sig[d].pow(2).item()} for d in range(len(mu))]
    no_trick = torch.distributions.Normal(mu_t, sig).sample((n,))  # sampled directly: no path back to mu
    return {"rows": rows, "z_requires_grad": z.requires_grad, "mu_grad_is_set": mu_t.grad is not None,
            "logvar_grad_is_set": logvar.grad is not None, "direct_sample_requires_grad": no_trick.requires_grad}


def elbo_examples(pixels: int = 16, latent: int = 4) -> list[dict[str, Any]]:
    """losses.elbo on hand-made batches of two 1-channel images whose terms are easy to compute by hand."""
    side = int(math.isqrt(pixels))
    x = torch.full((2, 1, side, side), 0.5)  # targets
    cases = [("q = prior, perfect recon", x, 0.0, 0.0, "0 and 0"),
             ("mu = 1 in every dim", x, 1.0, 0.0, f"KL = 0.5 * {latent} * 1^2 = {0.5 * latent:g}"),
             ("sigma = 0.5 in every dim", x, 0.0, math.log(0.25),
              f"KL = {latent} * 0.5 * (0.25 - 1 - ln 0.25) = {latent * 0.5 * (0.25 - 1 - math.log(0.25)):.4f}"),
             ("image 1 off by 0.1 per pixel", x + torch.tensor([0.1, 0.0]).view(2, 1, 1, 1), 0.0, 0.0,
              f"recon = ({pixels} * 0.1^2 + 0) / 2 = {pixels * 0.01 / 2:g}")]
    rows = []
    for name, recon, mu, logvar, by_hand in cases:
        t = elbo(x, torch.logit(recon), torch.full((2, latent), mu), torch.full((2, latent), logvar), beta=1.0)
        rows.append({"case": name, "recon": f"{t.recon.item():.4f}", "kl": f"{t.kl.item():.4f}",
                     "total (beta=1)": f"{t.total.item():.4f}", "by hand": by_hand})
    return rows


def beta_rows(epochs: tuple[int, ...] = (0, 1, 2, 5, 15, 19), steps_per_epoch: int = 100) -> list[dict[str, Any]]:
    """beta at the first step of the given epochs for every preset ('-' past the preset's last epoch)."""
    rows = []
    for name, c in PRESETS.items():
        total = c.train.epochs * steps_per_epoch
        row: dict[str, Any] = {"preset": name}
        for e in epochs:
            row[f"epoch {e}"] = f"{beta_at(c.train.schedule, e * steps_per_epoch, steps_per_epoch, total):g}" \
                if e < c.train.epochs else "-"
        rows.append(row)
    return rows


def presets_beta_figure(steps_per_epoch: int = 100) -> Figure:
    """beta (vaelib.schedules.beta_curve) against epochs, one panel per preset over that preset's run."""
    rows = -(-len(PRESETS) // 4)  # four panels a row, every preset drawn
    fig, axes = plt.subplots(rows, 4, figsize=(12, 2.6 * rows), sharey=True, squeeze=False)
    for ax in axes.flat[len(PRESETS):]:
        ax.set_axis_off()
    for ax, (name, c) in zip(axes.flat, PRESETS.items()):
        total = c.train.epochs * steps_per_epoch
        beta = beta_curve(c.train.schedule, total, steps_per_epoch)  # (total,)
        ax.plot(np.arange(total) / steps_per_epoch, beta, color="tab:green", lw=2)
        ax.set_title(f"{name}\n{beta_plan(c.train.schedule)}", fontsize="medium")
        ax.set_ylim(-0.05, 1.1)
        ax.grid(alpha=0.3)
    for ax in axes[-1]:
        ax.set_xlabel("epoch")
    for ax in axes[:, 0]:
        ax.set_ylabel("beta (KL weight)")
    fig.suptitle("beta schedules of the presets, each over its own number of epochs")
    fig.tight_layout()
    return fig

