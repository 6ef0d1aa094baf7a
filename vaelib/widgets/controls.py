"""Building blocks of the explorer's views: PNG pictures, sliders, Play buttons and captioned boxes."""

from __future__ import annotations

import io

import ipywidgets as W
import numpy as np
import torch
from PIL import Image as PILImage

from vaelib.evaluation.plots import tile

TABS = ("Sliders", "Interpolate", "Sample", "Traverse", "Map")
LATENT_STEP = 0.05  # a latent slider's step: one arrow key press; PageUp/PageDown move 5 steps (noUiSlider)
PLAY_MS = 250  # milliseconds per frame of a Play button


def to_png(images: torch.Tensor, px: int = 256, nrow: int | None = None) -> bytes:
    """PNG bytes of images (N, C, H, W) in [0, 1], `nrow` per row, each upscaled (nearest) to about px pixels."""
    h, c = images.shape[-2], images.shape[1]
    grid = tile(images.detach().to("cpu", torch.float32), nrow or len(images))  # one white pixel between
    arr = (grid * 255).round().astype(np.uint8)  # (H', W', C)
    return png_bytes(PILImage.fromarray(arr[..., 0] if c == 1 else arr), max(1, round(px / h)))


def strip_columns(n: int, most: int = 6) -> int:
    """Images per row of an n-image strip: one row up to `most`, else two rows (11 steps at 128 px: 768 px wide,
    not 1,408 px, so a path fits a projector's width)."""
    return n if n <= most else -(-n // 2)


def png_bytes(img: PILImage.Image, scale: int = 1) -> bytes:
    """PNG bytes of a PIL image upscaled by an integer factor (nearest: the pixels stay crisp)."""
    if scale > 1:
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


def play(steps: int, cls: str) -> W.Play:
    """A Play button that counts 0 .. steps - 1, one frame every PLAY_MS ms (the browser runs the clock)."""
    p = W.Play(value=0, min=0, max=steps - 1, step=1, interval=PLAY_MS, description="play", show_repeat=True)
    p.add_class(cls)
    return p


def snapped(value: float, s: W.FloatSlider) -> float:
    """Where the browser's slider puts `value`: on the nearest step counted from s.min, clipped to its range."""
    return min(max(s.min + round((value - s.min) / s.step) * s.step, s.min), s.max)


def is_echo(new: float, held: float, s: W.FloatSlider) -> bool:
    """True when the browser sent back `held` snapped to the step, not a move by a person.

    The browser's slider (noUiSlider) snaps every value the kernel sets to its step grid and sends the snapped
    value back. A person moves the slider from that snapped value by whole steps, so a value within a
    thousandth of a step of it is the echo.
    """
    return abs(new - snapped(held, s)) < 1e-3 * s.step


def boxed(caption: str, *children: W.Widget) -> W.VBox:
    box = W.Layout(align_items="flex-start", flex="0 0 auto", margin="0 8px")  # never squeezed: wraps instead
    return W.VBox([W.HTML(f"<b>{caption}</b>"), *children], layout=box)
