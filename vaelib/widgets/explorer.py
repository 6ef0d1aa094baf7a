"""The latent explorer: ipywidgets controls over a trained VAE's latent space, for exploring by hand in class.

`LatentExplorer(model, split)` explores a trained VAE over a split; display it in JupyterLab (notebook 05
gets one from `vaelib.lessons.latent_explorer.explorer_for`). Four tabs: Sliders (the most informative
latent dimensions by KL, starting from an encoded test image; attribute directions on labelled data),
Interpolate (linear or spherical path between two test images), Sample (the prior, with a temperature and
a reseed button) and Traverse (one dimension swept over [-span, span]). A slider change costs one decode and
one PNG encode, no matplotlib (benchmarks/explorer_latency.py times it).
"""

from __future__ import annotations

import io
import time
from collections.abc import Sequence
from typing import Any

import ipywidgets as W
import numpy as np
import torch
from PIL import Image as PILImage

from ..data import ImageSplit
from ..losses import kl_per_dim
from ..metrics import posterior_stats
from ..model import VAE, model_device
from ..runtime import to_float
from .controls import TABS, to_png
from .directions import attribute_directions
from .views import InterpolateView, SampleView, SlidersView, TraverseView

DEFAULT_ATTRIBUTES = ("Smiling", "Eyeglasses", "Male", "Blond_Hair")  # CelebA names, used when present


class LatentExplorer(SlidersView, InterpolateView, SampleView, TraverseView):
    """ipywidgets explorer of a VAE's latent space over a labelled or unlabelled split; display it."""

    def __init__(self, model: VAE, split: ImageSplit, *, n_sliders: int = 8, start_index: int = 0,
                 image_px: int = 160, span: float = 3.0, samples: int = 16, seed: int = 0, interp_steps: int = 11,
                 traverse_steps: int = 9, attributes: Sequence[str] | None = None, max_images: int = 2000,
                 threads: int | None = 1) -> None:
        for name, value, low in (("n_sliders", n_sliders, 1), ("image_px", image_px, 8), ("samples", samples, 1),
                                 ("interp_steps", interp_steps, 2), ("traverse_steps", traverse_steps, 2),
                                 ("max_images", max_images, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name}={value!r} is invalid: allowed an integer >= {low}")
        if not span > 0:
            raise ValueError(f"span={span!r} is invalid: allowed a value > 0")
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
            raise ValueError(f"threads={threads!r} is invalid: allowed None (torch's setting) or an integer >= 1")
        if len(split) == 0 or tuple(split.images.shape[1:]) != model.config.input_shape:
            raise ValueError(f"split images of shape {tuple(split.images.shape)} are invalid: allowed "
                             f"(N >= 1, {', '.join(map(str, model.config.input_shape))}) for this model")
        self.model, self.split = model.eval(), split.subset(slice(0, max_images))  # encoding all CelebA is slow
        self._check(start_index)
        self.px, self.span, self.seed, self.steps, self.threads = image_px, float(span), seed, interp_steps, threads
        self.mu, logvar = posterior_stats(model, self.split.images)  # (N, D) each, on the model's device
        self.kl = kl_per_dim(self.mu.double(), logvar.double()).mean(0).cpu().numpy()  # (D,) nats per image
        self.dims = [int(d) for d in np.argsort(-self.kl, kind="stable")[:n_sliders]]  # most informative first
        if attributes is None and self.split.labels is not None and self.split.labels.ndim == 2:
            attributes = [a for a in DEFAULT_ATTRIBUTES if a in self.split.class_names] or self.split.class_names[:4]
        self.directions = attribute_directions(model, self.split, attributes or (), mu=self.mu)
        self._hold = False  # True while set_image moves the sliders: one redraw, not one per slider
        tabs = [self._sliders_tab(), self._interp_tab(), self._sample_tab(samples), self._traverse_tab(traverse_steps)]
        self.ui = W.Tab(children=tabs, titles=TABS)
        self.ui.add_class("vaelib-explorer")
        self.ui.observe(lambda _: self._refresh_traversal(), "selected_index")
        self.set_image(start_index)
        self._refresh_path()
        self._refresh_samples()

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

    def _check(self, i: Any) -> int:
        n = len(self.split)
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)) or not 0 <= i < n:
            raise ValueError(f"image index {i!r} is invalid: allowed 0..{n - 1} (the {n} test images)")
        return int(i)

    def describe(self) -> str:
        """The controls, one line per tab (no number that depends on training)."""
        a = self.attr_sliders
        attrs = f", {len(a)} attribute sliders ({', '.join(a)})" if a else ""
        classes = ", class A, class B" if hasattr(self, "class_a") else ""
        return "\n".join([
            f"Sliders: test image (0..{len(self.split) - 1}), reset sliders, {len(self.sliders)} latent sliders "
            f"(top {len(self.dims)} of {self.model.latent_dim} dims by KL){attrs}, decoded image",
            f"Interpolate: image A, image B{classes}, path (linear | spherical), t ({self.steps} steps), path strip",
            f"Sample: temperature (0..2), reseed, {len(self._eps)} samples",
            f"Traverse: dimension ({len(self.dims)} choices), span, {self.traverse_steps} steps"])

    def check(self) -> dict[str, bool]:
        """Invariants that hold whatever the weights (the first one only until a slider is moved)."""
        a, b = (self.mu[i][None] for i in (self.index_a.value, self.index_b.value))
        origin = self.decode(torch.zeros(1, self.model.latent_dim))
        return {"sliders start at the image's mu": torch.equal(self.code(), self.mu[self.index.value]),
                "interpolation ends at images A and B": torch.equal(self.interpolated(0.0), self.decode(a))
                and torch.equal(self.interpolated(1.0), self.decode(b)),
                "temperature 0 samples equal decode(0)": torch.allclose(self.decode(self._eps * 0.0),
                                                                        origin.expand(len(self._eps), -1, -1, -1),
                                                                        atol=1e-6)}

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        bundle = self.ui._repr_mimebundle_(**kwargs)  # the live widget in JupyterLab
        bundle["text/plain"] = "LatentExplorer\n" + self.describe()  # what a static viewer shows
        return bundle

    def slider_latency(self, repeats: int = 50, slider: int = 0) -> np.ndarray:
        """Milliseconds from setting a latent slider's value to new decoded PNG bytes, one per repeat."""
        s = self.sliders[slider]
        start, times = s.value, []
        for k in range(repeats):
            before = self.decoded.value
            t0 = time.perf_counter()
            s.value = start + (0.5 if k % 2 == 0 else -0.5) * (1 + k / repeats)  # a new value every time
            times.append((time.perf_counter() - t0) * 1000)
            if self.decoded.value is before:
                raise RuntimeError("the decoded image was not redrawn after a slider change")
        s.value = start
        return np.array(times)

    def snapshot(self):
        """A matplotlib Figure of every tab's current picture, for static renderings (papermill, HTML)."""
        import matplotlib.pyplot as plt

        i, sq = self.index.value, round(len(self._eps) ** 0.5)
        panels = [(f"test image {i}", to_float(self.split.images[i:i + 1]), None),
                  ("decoded from the sliders", self.decode(self.code()[None]), None),
                  (f"samples, T={self.temperature.value:g}", self.samples(), sq),
                  (f"traversal of z{self.traverse_dim.value} over [-{self.traverse_span.value:g}, "
                   f"{self.traverse_span.value:g}]", self.traversal(), None),
                  (f"{self.path_kind.value} path from image {self.index_a.value} to {self.index_b.value}",
                   self.decode(self._path), None)]
        fig = plt.figure(figsize=(9, 6.4))
        grid = fig.add_gridspec(3, 3, height_ratios=[3, 1, 1])
        axes = [fig.add_subplot(grid[0, k]) for k in range(3)] + [fig.add_subplot(grid[r, :]) for r in (1, 2)]
        for ax, (title, x, nrow) in zip(axes, panels):
            ax.imshow(PILImage.open(io.BytesIO(to_png(x, 1, nrow))).convert("RGB"), interpolation="nearest")
            ax.set_title(title, fontsize="small")
            ax.set_axis_off()
        fig.tight_layout()
        return fig
