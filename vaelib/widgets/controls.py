"""Building blocks of the explorer's views: PNG pictures, sliders and captioned boxes."""

from __future__ import annotations

import io

import ipywidgets as W
import numpy as np
import torch
from PIL import Image as PILImage

from ..plots import tile

TABS = ("Sliders", "Interpolate", "Sample", "Traverse")


def to_png(images: torch.Tensor, px: int = 160, nrow: int | None = None) -> bytes:
    """PNG bytes of images (N, C, H, W) in [0, 1], `nrow` per row, each upscaled (nearest) to about px pixels."""
    h, c = images.shape[-2], images.shape[1]
    grid = tile(images.detach().to("cpu", torch.float32), nrow or len(images))  # one white pixel between
    arr = (grid * 255).round().astype(np.uint8)  # (H', W', C)
    img = PILImage.fromarray(arr[..., 0] if c == 1 else arr)
    scale = max(1, round(px / h))  # an integer factor keeps the pixels crisp
    img = img.resize((img.width * scale, img.height * scale), PILImage.Resampling.NEAREST)
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=1)  # fast; the images are small
    return buf.getvalue()


def image(cls: str) -> W.Image:
    img = W.Image(format="png")
    img.add_class(cls)  # a handle for the browser test and for CSS
    return img


def slider(description: str, value: float, low: float, high: float, step: float, cls: str = "",
            label_px: int = 90) -> W.FloatSlider:
    s = W.FloatSlider(value=value, min=low, max=high, step=step, description=description, readout_format=".2f",
                      style={"description_width": f"{label_px}px"}, layout=W.Layout(width=f"{label_px + 250}px"))
    if cls:
        s.add_class(cls)
    return s


def boxed(caption: str, *children: W.Widget) -> W.VBox:
    box = W.Layout(align_items="flex-start", flex="0 0 auto", margin="0 8px")  # never squeezed: wraps instead
    return W.VBox([W.HTML(f"<b>{caption}</b>"), *children], layout=box)
