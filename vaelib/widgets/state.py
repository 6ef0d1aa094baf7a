"""What the latent explorer's views share, in one explicit object: the model, the split, its posterior means and
KL per dimension, the dimensions the sliders and the map show, the attribute directions, the picture sizes, and
the one `decode` every picture goes through. Each view (views.py, latent_map.py) is built from it and keeps its own
widgets; LatentExplorer (explorer.py) builds the state, the views and the tabs around them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from vaelib.data.datasets import ImageSplit
from vaelib.models.base import model_device


@dataclass
class ExplorerState:
    model: nn.Module  # a VAE in eval mode (a Gaussian posterior: the explorer checks it)
    split: ImageSplit  # the images explored (at most max_images of the test split)
    mu: torch.Tensor  # (N, D) posterior means of the split, on the model's device
    kl: np.ndarray  # (D,) KL per dimension, nats per image
    dims: list[int]  # the slider dimensions, most informative (highest KL) first
    map_dims: list[int]  # the Map tab's two dimensions: the top two by KL
    directions: dict[str, torch.Tensor]  # attribute or class name -> direction (D,) in code space
    px: int  # side of one image, pixels
    strip_px: int  # side of each image of a strip or grid, pixels
    span: float  # the sliders' half range around 0
    threads: int | None  # CPU threads of a decode (None: torch's setting)

    @property
    def latent_dim(self) -> int:
        return int(self.mu.shape[1])

    @torch.inference_mode()
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Images (B, C, H, W) in [0, 1] decoded from codes (B, D), on `threads` CPU threads."""
        before = torch.get_num_threads()
        if self.threads:  # a one-image decode is too small to split: a second thread mostly waits on a busy core
            torch.set_num_threads(self.threads)
        try:
            # a fresh, aligned copy: the same code decodes to the same bits whichever tensor it was a view of
            return self.model.decode(z.to(model_device(self.model), copy=True))
        finally:
            torch.set_num_threads(before)

    def check_index(self, i: Any) -> int:
        """i as an int, refused in one line unless it indexes the split."""
        return check_image_index(i, len(self.split))

    def single_labels(self) -> bool:
        """Whether every image has one class (the colours of the map, class directions, class pickers)."""
        return self.split.labels is not None and self.split.labels.ndim == 1


def check_image_index(i: Any, n: int) -> int:
    """i as an int, refused in one line unless 0 <= i < n (the number of test images)."""
    if isinstance(i, bool) or not isinstance(i, (int, np.integer)) or not 0 <= i < n:
        raise ValueError(f"image index {i!r} is invalid: allowed 0..{n - 1} (the {n} test images)")
    return int(i)
