"""Attribute directions in latent space: mean code with an attribute (or class) minus mean code without."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from vaelib.data.datasets import ImageSplit
from vaelib.models.base import posterior_stats
from vaelib.models.vae import VAE


def _has(split: ImageSplit, name: str) -> torch.Tensor:
    """Bool (N,): which images carry attribute (multi-label) or class (single-label) `name`."""
    if split.labels is None or not split.class_names:
        raise ValueError(f"split {split.name}/{split.split} has no labels: attribute directions need labels")
    if name not in split.class_names:
        raise ValueError(f"attribute {name!r} is unknown: allowed {', '.join(split.class_names)}")
    j = split.class_names.index(name)
    return split.labels[:, j] > 0 if split.labels.ndim == 2 else split.labels == j


@torch.inference_mode()
def attribute_directions(model: VAE, split: ImageSplit, names: Sequence[str],
                         mu: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Per name, the mean mu of the images with the attribute minus that of the images without, (D,).

    Labels: multi-label (N, A) in {0, 1} (CelebA's attributes) or classes (N,) (one class against the
    rest). `mu` (N, D): the split's posterior means, when already computed.
    """
    masks = {name: _has(split, name) for name in names}  # refuse a bad name before encoding anything
    for name, has in masks.items():
        if has.all() or not has.any():
            raise ValueError(f"attribute {name!r} is invalid for this split: {int(has.sum())} of {len(has)} "
                             "images have it; allowed an attribute some images have and some lack")
    if mu is None:
        mu, _ = posterior_stats(model, split.images)  # (N, D)
    return {name: mu[has.to(mu.device)].mean(0) - mu[~has.to(mu.device)].mean(0) for name, has in masks.items()}
