"""Helpers of the overview notebooks (01_datasets, 02_architecture): tables, pixel statistics and small demos.

Tables are lists of dicts (one dict per row) that `format_table` prints; every number in them is computed
from the real datasets, presets and models. Image values are in [0, 1] units unless a name says uint8.
"""

from __future__ import annotations

import math
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from . import data as D
from . import plots
from .config import PRESETS, BetaSchedule, Config, with_overrides
from .data import SPLITS, ImageSplit, data_mean_baseline, load_from_config, render_shapes
from .losses import elbo
from .model import VAE
from .schedules import beta_at, beta_curve

STANDIN = {"fashion_mnist": "digits", "cifar10": "shapes", "celeba": "shapes"}  # embedded data of the same kind
CELEBA_ALIGNED_HW = (218, 178)  # (H, W) of CelebA's img_align_celeba JPEGs
CELEBA_CROP = 140  # torchvision CenterCrop of vaelib.data._decode_celeba


def format_table(rows: list[dict[str, Any]], floats: str = ".4g") -> str:
    """Rows of dicts with the same keys as an aligned plain-text table; floats formatted with `floats`."""
    if not rows:
        return "(no rows)"
    cols = list(rows[0])
    cells = [[f"{r[c]:{floats}}" if isinstance(r[c], float) else str(r[c]) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    lines = [cols, ["-" * w for w in widths], *cells]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() for row in lines)


# --- 01: datasets ------------------------------------------------------------------------------------

def load_or_standin(config: Config) -> tuple[Config, dict[str, ImageSplit], str]:
    """(config, {split: ImageSplit}, note); if the dataset's files are missing, the same input size on its
    embedded stand-in (digits for grey, shapes for RGB), with the FileNotFoundError message in the note."""
    try:
        splits = {s: load_from_config(config.data, s) for s in SPLITS}
        return config, splits, f"{config.data.dataset}: loaded ({'x'.join(map(str, config.input_shape))})."
    except FileNotFoundError as err:
        name = STANDIN[config.data.dataset]
        standin = with_overrides(config, **{"data.dataset": name, "name": f"{config.name}_on_{name}"})
        note = (f"FileNotFoundError: {err}\n\n=> {config.data.dataset} is not available here, so the rest of this "
                f"notebook uses the embedded stand-in '{name}' at the same input shape "
                f"({'x'.join(map(str, config.input_shape))}).")
        return standin, {s: load_from_config(standin.data, s) for s in SPLITS}, note


def pixel_stats(split: ImageSplit) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-pixel mean and (population) variance over a split's images, each (C, H, W) float64 in [0, 1] units."""
    total = torch.zeros(split.images.shape[1:], dtype=torch.float64)
    squares = torch.zeros_like(total)
    for chunk in split.images.split(D.CHUNK):
        x = chunk.double() / 255  # (B, C, H, W)
        total += x.sum(0)
        squares += x.pow(2).sum(0)
    mean = total / len(split)
    return mean, (squares / len(split) - mean.pow(2)).clamp_min(0)


def split_summary(splits: dict[str, ImageSplit], name: str) -> dict[str, Any]:
    """One table row: split sizes, shape, dtype, value range and pixel mean/std of the training images."""
    train = splits["train"]
    x = train.images
    mean, var = pixel_stats(train)
    grand_var = (var + mean.pow(2)).mean().item() - mean.mean().item() ** 2  # variance over all pixel values
    if train.factors is not None:
        targets = f"{len(train.factor_names)} factors"
    elif train.labels is not None:
        targets = f"{len(train.class_names)} classes" if train.labels.dim() == 1 else f"{train.labels.shape[1]} attrs"
    else:
        targets = "none"
    return {"dataset": name, "train": len(train), "val": len(splits["val"]), "test": len(splits["test"]),
            "image (C x H x W)": "x".join(map(str, x.shape[1:])), "dtype": str(x.dtype).replace("torch.", ""),
            "min": int(x.min()), "max": int(x.max()), "mean": mean.mean().item(), "std": math.sqrt(grand_var),
            "targets": targets}


def baseline_row(splits: dict[str, ImageSplit], name: str) -> dict[str, Any]:
    """The data-mean baseline on the test split: per image (nats-compatible SSE), per pixel, and as PSNR."""
    per_image = data_mean_baseline(splits["train"], splits["test"])
    pixels = splits["test"].images[0].numel()
    return {"dataset": name, "pixels (C*H*W)": pixels, "baseline SSE per image": per_image,
            "MSE per pixel": per_image / pixels, "PSNR (dB)": 10 * math.log10(pixels / per_image),
            "sum of train pixel variances": pixel_stats(splits["train"])[1].sum().item()}


def _label(split: ImageSplit, i: int) -> str:
    if split.factors is not None:
        f = split.factors[i].tolist()
        return f"{D.SHAPE_NAMES[f[0]]}\n{D.COLOUR_NAMES[f[1]]}"
    if split.labels is not None and split.labels.dim() == 1:
        return split.class_names[int(split.labels[i])]
    return ""


def _show(ax: plt.Axes, image: torch.Tensor) -> None:
    """One image (C, H, W), uint8 or float in [0, 1], without ticks."""
    plots.show(ax, plots.tile(image[None], nrow=1))


def labelled_grid(split: ImageSplit, n: int = 24, ncol: int = 8, title: str = "") -> Figure:
    """The first n images of a split, each titled with its class or its shape and colour factors."""
    n = min(n, len(split))
    rows = math.ceil(n / ncol)
    fig, axes = plt.subplots(rows, ncol, figsize=(1.2 * ncol, 1.45 * rows + 0.5), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            _show(ax, split.images[i])
            ax.set_title(_label(split, i), fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def pixel_stats_figure(splits_by_name: dict[str, ImageSplit]) -> Figure:
    """A row per dataset: per-pixel mean image and per-pixel variance (averaged over channels)."""
    fig, axes = plt.subplots(len(splits_by_name), 2, figsize=(7, 3.2 * len(splits_by_name)), squeeze=False)
    for (name, split), (ax_m, ax_v) in zip(splits_by_name.items(), axes):
        mean, var = pixel_stats(split)
        _show(ax_m, mean)
        ax_m.set_title(f"{name}: per-pixel mean")
        im = ax_v.imshow(var.mean(0).numpy(), cmap="viridis", interpolation="nearest")
        ax_v.set_xticks([])
        ax_v.set_yticks([])
        ax_v.set_title(f"{name}: per-pixel variance")
        fig.colorbar(im, ax=ax_v, fraction=0.046, pad=0.04)
    fig.tight_layout()
    return fig


def halving_rows(sizes: tuple[int, ...] = (28, 32), layers: int = 3, kernel: int = 3) -> list[dict[str, Any]]:
    """Side lengths through `layers` stride-2 convs (padding k//2) and the mirrored transposed convs."""
    rows = []
    for size in sizes:
        enc = [size]
        for _ in range(layers):
            enc.append((enc[-1] + 2 * (kernel // 2) - kernel) // 2 + 1)  # Conv2d output size
        dec = [enc[-1]]
        for _ in range(layers):
            dec.append((dec[-1] - 1) * 2 - 2 * (kernel // 2) + kernel + kernel % 2)  # ConvTranspose2d, output_padding
        rows.append({"layers": layers, "input": size, "encoder": " -> ".join(map(str, enc)),
                     "decoder": " -> ".join(map(str, dec)), "decoder output = input": dec[-1] == size})
    return rows


def pad_figure(image: torch.Tensor, pad: int = 2) -> Figure:
    """A uint8 (1, H, W) image before and after the zero padding of vaelib.data's Fashion-MNIST loader."""
    padded = torch.nn.functional.pad(image, (pad, pad, pad, pad))  # (1, H + 2 pad, W + 2 pad), zero border
    fig, axes = plt.subplots(1, 2, figsize=(6.5, 3.4), gridspec_kw={"width_ratios": [image.shape[2], padded.shape[2]]})
    for ax, x, what in zip(axes, (image, padded), ("before", f"after F.pad by {pad}")):
        _show(ax, x)
        ax.set_title(f"{what}: {x.shape[2]}x{x.shape[1]}")
    h, w = image.shape[1:]
    axes[1].add_patch(Rectangle((pad - 0.5, pad - 0.5), w, h, fill=False, edgecolor="red", lw=1.5))
    fig.suptitle("Fashion-MNIST: pad 28 -> 32 (red: the original 28x28 area)")
    fig.tight_layout()
    return fig


def celeba_standin(seed: int = 0) -> torch.Tensor:
    """A uint8 (3, 218, 178) image with CelebA's aligned-image size: a textured shapes image, not a face."""
    h, w = CELEBA_ALIGNED_HW
    factors = torch.tensor([[1, 4, 5, 4, 3, 0]])  # a large blue circle a little above the centre
    image = render_shapes(factors, h, "textured", torch.Generator().manual_seed(seed))[0]  # (3, 218, 218)
    left = (h - w) // 2
    return image[:, :, left:left + w].contiguous()


def celeba_crop_demo(image: torch.Tensor, size: int = 64) -> dict[str, Any]:
    """CenterCrop(140) then Resize(size) (the transforms of vaelib.data's CelebA loader) on a uint8 (3, H, W)."""
    from torchvision import transforms as T

    pil = T.ToPILImage()(image)
    crop = T.CenterCrop(CELEBA_CROP)(pil)
    resized = T.Resize(size)(crop)
    h, w = image.shape[1:]
    top, left = int(round((h - CELEBA_CROP) / 2.0)), int(round((w - CELEBA_CROP) / 2.0))  # as CenterCrop
    to_tensor = T.PILToTensor()
    return {"image": image, "crop": to_tensor(crop), "resized": to_tensor(resized),
            "box": (top, left, CELEBA_CROP, CELEBA_CROP)}  # (top, left, height, width)


def celeba_crop_figure(demo: dict[str, Any]) -> Figure:
    """The image with the crop box, the 140x140 crop and the resized image, each titled with its size."""
    fig, axes = plt.subplots(1, 3, figsize=(10, 4.2), gridspec_kw={"width_ratios": [178, 140, 140]})
    top, left, h, w = demo["box"]
    for ax, key in zip(axes, ("image", "crop", "resized")):
        _show(ax, demo[key])
        ax.set_title(f"{key}: {demo[key].shape[2]}x{demo[key].shape[1]} (W x H)")
    axes[0].add_patch(Rectangle((left - 0.5, top - 0.5), w, h, fill=False, edgecolor="red", lw=2))
    fig.suptitle("CelebA preprocessing on a stand-in of the same size: CenterCrop(140), then Resize(64)")
    fig.tight_layout()
    return fig


def factor_rows() -> list[dict[str, Any]]:
    """The shapes dataset's generative factors: name, number of values, and the values."""
    values = {"shape": ", ".join(D.SHAPE_NAMES), "colour": ", ".join(D.COLOUR_NAMES),
              "scale": f"radius {D.SCALES[0]:.2f} .. {D.SCALES[-1]:.2f} of the side",
              "x": f"centre {D.POSITIONS[0]:.2f} .. {D.POSITIONS[-1]:.2f} of the side",
              "y": f"centre {D.POSITIONS[0]:.2f} .. {D.POSITIONS[-1]:.2f} of the side (down)",
              "rotation": f"{D.ROTATIONS[0]:g} .. {D.ROTATIONS[-1]:g} degrees"}
    return [{"factor": f, "values": k, "range": values[f]} for f, k in zip(D.FACTOR_NAMES, D.FACTOR_SIZES)]


def factor_sweep(base: tuple[int, ...] = (0, 0, 4, 3, 4, 1), image_size: int = 32) -> list[torch.Tensor]:
    """For each factor, uint8 images (K, 3, S, S) of its K values with every other factor held at `base`."""
    out = []
    for f, k in enumerate(D.FACTOR_SIZES):
        factors = torch.tensor(base).repeat(k, 1)  # (K, 6)
        factors[:, f] = torch.arange(k)
        out.append(render_shapes(factors, image_size))
    return out


def factor_sweep_figure(rows: list[torch.Tensor]) -> Figure:
    """One row per factor, its values left to right."""
    ncol = max(len(r) for r in rows)
    fig, axes = plt.subplots(len(rows), ncol, figsize=(1.1 * ncol + 1, 1.15 * len(rows) + 0.5), squeeze=False)
    for name, images, ax_row in zip(D.FACTOR_NAMES, rows, axes):
        for j, ax in enumerate(ax_row):
            if j < len(images):
                _show(ax, images[j])
            else:
                ax.axis("off")
        ax_row[0].set_ylabel(name, rotation=0, ha="right", va="center")
    fig.suptitle("shapes: one factor varied per row, the others held fixed")
    fig.tight_layout()
    return fig


# --- 02: architecture --------------------------------------------------------------------------------

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
                     "clip": c.train.grad_clip, "epochs": c.train.epochs, "parameters": f"{model.parameter_count():,}"})
    return rows


def shared_settings() -> dict[str, list[str]]:
    """The settings every preset shares (one value each when they all agree)."""
    fields = {"kernel": lambda c: c.model.kernel_size, "LeakyReLU slope": lambda c: c.model.leaky_slope,
              "Adam lr": lambda c: c.train.lr, "recon": lambda c: c.train.recon}
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
    fig, axes = plt.subplots(2, 3, figsize=(10, 5), sharey=True)
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
