"""Helpers of notebook 01_datasets: tables, pixel statistics and preprocessing demos (02's: architecture.py).

Tables are lists of dicts (one dict per row) that `format_table` prints; every number in them is computed
from the real datasets, presets and models. Image values are in [0, 1] units unless a name says uint8.
"""

from __future__ import annotations

import math
from typing import Any

import matplotlib.pyplot as plt
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from vaelib.config import Config, with_overrides
from vaelib.data import datasets as D
from vaelib.data import shapes as S
from vaelib.data.datasets import SPLITS, ImageSplit, data_mean_baseline, load_from_config
from vaelib.data.shapes import render_shapes
from vaelib.evaluation import plots
from vaelib.evaluation.plots import split_example_indices
from vaelib.runtime import to_float

CELEBA_ALIGNED_HW = (218, 178)  # (H, W) of CelebA's img_align_celeba JPEGs
CELEBA_CROP = 140  # torchvision CenterCrop of vaelib.data.datasets._decode_celeba


# --- 01: datasets ------------------------------------------------------------------------------------

def load_or_standin(config: Config) -> tuple[Config, dict[str, ImageSplit], str]:
    """(config, {split: ImageSplit}, note); if the dataset's files are missing, the same input size on its
    embedded stand-in (mnist for grey, shapes for RGB), with the FileNotFoundError message in the note."""
    try:
        splits = {s: load_from_config(config.data, s) for s in SPLITS}
        return config, splits, f"{config.data.dataset}: loaded ({'x'.join(map(str, config.input_shape))})."
    except FileNotFoundError as err:
        name = D.STAND_IN[config.data.dataset]  # embedded data of the same kind
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
        x = to_float(chunk, dtype=torch.float64)  # (B, C, H, W)
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
        return f"{S.SHAPE_NAMES[f[0]]}\n{S.COLOUR_NAMES[f[1]]}"
    if split.labels is not None and split.labels.dim() == 1:
        return split.class_names[int(split.labels[i])]
    return ""


def _show(ax: plt.Axes, image: torch.Tensor) -> None:
    """One image (C, H, W), uint8 or float in [0, 1], without ticks."""
    plots.show(ax, plots.tile(image[None], nrow=1))


def labelled_grid(split: ImageSplit, n: int = 24, ncol: int = 8, title: str = "", seed: int = 0) -> Figure:
    """n images of a split, a seeded pick that takes the classes (shapes: the shape factor) in turn
    (evaluation.plots.split_example_indices: the splits are sorted by class), each titled with its class or its
    shape and colour factors."""
    n = min(n, len(split))
    picked = split_example_indices(split, n, seed).tolist()
    rows = math.ceil(n / ncol)
    fig, axes = plt.subplots(rows, ncol, figsize=(1.2 * ncol, 1.45 * rows + 0.5), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            _show(ax, split.images[picked[i]])
            ax.set_title(_label(split, picked[i]), fontsize=8)
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
    """A uint8 (1, H, W) image before and after the zero padding of vaelib.data.datasets's Fashion-MNIST loader."""
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
    """CenterCrop(140) then Resize(size) (the transforms of data.datasets' CelebA loader) on a uint8 (3, H, W)."""
    from torchvision import transforms as T  # heavy: only this demo needs torchvision

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
    values = {"shape": ", ".join(S.SHAPE_NAMES), "colour": ", ".join(S.COLOUR_NAMES),
              "scale": f"radius {S.SCALES[0]:.2f} .. {S.SCALES[-1]:.2f} of the side",
              "x": f"centre {S.POSITIONS[0]:.2f} .. {S.POSITIONS[-1]:.2f} of the side",
              "y": f"centre {S.POSITIONS[0]:.2f} .. {S.POSITIONS[-1]:.2f} of the side (down)",
              "rotation": f"{S.ROTATIONS[0]:g} .. {S.ROTATIONS[-1]:g} degrees"}
    return [{"factor": f, "values": k, "range": values[f]} for f, k in zip(S.FACTOR_NAMES, S.FACTOR_SIZES)]


def factor_sweep(base: tuple[int, ...] = (0, 0, 4, 3, 4, 1), image_size: int = 32) -> list[torch.Tensor]:
    """For each factor, uint8 images (K, 3, S, S) of its K values with every other factor held at `base`."""
    out = []
    for f, k in enumerate(S.FACTOR_SIZES):
        factors = torch.tensor(base).repeat(k, 1)  # (K, 6)
        factors[:, f] = torch.arange(k)
        out.append(render_shapes(factors, image_size))
    return out


def factor_sweep_figure(rows: list[torch.Tensor]) -> Figure:
    """One row per factor, its values left to right."""
    ncol = max(len(r) for r in rows)
    fig, axes = plt.subplots(len(rows), ncol, figsize=(1.1 * ncol + 1, 1.15 * len(rows) + 0.5), squeeze=False)
    for name, images, ax_row in zip(S.FACTOR_NAMES, rows, axes):
        for j, ax in enumerate(ax_row):
            if j < len(images):
                _show(ax, images[j])
            else:
                ax.axis("off")
        ax_row[0].set_ylabel(name, rotation=0, ha="right", va="center")
    fig.suptitle("shapes: one factor varied per row, the others held fixed")
    fig.tight_layout()
    return fig
