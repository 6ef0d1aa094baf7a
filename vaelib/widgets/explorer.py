"""The latent explorer: ipywidgets controls over a trained VAE's latent space, for exploring by hand in class.

`LatentExplorer(model, split)` explores a trained VAE over a split; display it in JupyterLab (notebook 05 builds
one over the test split, for the model `vaelib.lessons.latent_explorer.load_trained` returns). Five tabs:
Sliders (the most informative latent dimensions by KL, starting from an encoded test image; attribute or class
directions on labelled data), Interpolate (linear or spherical path between two test images, with a Play
button), Sample (the prior, with a temperature and a reseed button), Traverse (one dimension swept over [-span,
span], played or as a strip) and Map (the test codes on the two highest-KL dimensions, a picked point decoded, a
manifold grid). Under the tabs, "save PNG" writes the current tab's main picture to a file. Sized for a
projector: one image `image_px` (256) pixels, each image of a strip or grid `strip_px` (128). A slider change
costs one decode and one PNG encode, no matplotlib (benchmarks/explorer_latency.py times it).
"""

from __future__ import annotations

import io
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import ipywidgets as W
import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.lines import Line2D
from PIL import Image as PILImage

from ..data import ImageSplit
from ..files import atomic_write_bytes
from ..losses import kl_per_dim
from ..metrics import posterior_stats
from ..model import VAE, model_device, require_gaussian_posterior
from ..runtime import to_float
from .controls import TABS, to_png
from .directions import attribute_directions
from .latent_map import PALETTE, MapView
from .views import InterpolateView, SampleView, SlidersView, TraverseView

DEFAULT_ATTRIBUTES = ("Smiling", "Eyeglasses", "Male", "Blond_Hair")  # CelebA names, used when present


class LatentExplorer(SlidersView, InterpolateView, SampleView, TraverseView, MapView):
    """ipywidgets explorer of a VAE's latent space over a labelled or unlabelled split; display it."""

    def __init__(self, model: VAE, split: ImageSplit, *, n_sliders: int = 8, start_index: int = 0,
                 image_px: int = 256, strip_px: int = 128, span: float = 3.0, samples: int = 16, seed: int = 0,
                 interp_steps: int = 11, traverse_steps: int = 9, map_cells: int = 8,
                 attributes: Sequence[str] | None = None, max_images: int = 2000, threads: int | None = 1,
                 save_dir: str | Path | None = None) -> None:
        for name, value, low in (("n_sliders", n_sliders, 1), ("image_px", image_px, 8), ("strip_px", strip_px, 8),
                                 ("samples", samples, 1), ("interp_steps", interp_steps, 2),
                                 ("traverse_steps", traverse_steps, 2), ("map_cells", map_cells, 2),
                                 ("max_images", max_images, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name}={value!r} is invalid: allowed an integer >= {low}")
        if not span > 0:
            raise ValueError(f"span={span!r} is invalid: allowed a value > 0")
        require_gaussian_posterior(model, "the latent explorer")
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
            raise ValueError(f"threads={threads!r} is invalid: allowed None (torch's setting) or an integer >= 1")
        if len(split) == 0 or tuple(split.images.shape[1:]) != model.config.input_shape:
            raise ValueError(f"split images of shape {tuple(split.images.shape)} are invalid: allowed "
                             f"(N >= 1, {', '.join(map(str, model.config.input_shape))}) for this model")
        if model.latent_dim < 2:
            raise ValueError(f"latent_dim={model.latent_dim} is invalid: the Map tab needs a model with >= 2")
        self.model, self.split = model.eval(), split.subset(slice(0, max_images))  # encoding all CelebA is slow
        self._check(start_index)
        self.px, self.strip_px, self.span, self.seed = image_px, strip_px, float(span), seed
        self.steps, self.threads, self.save_dir = interp_steps, threads, save_dir
        self.mu, logvar = posterior_stats(model, self.split.images)  # (N, D) each, on the model's device
        self.kl = kl_per_dim(self.mu.double(), logvar.double()).mean(0).cpu().numpy()  # (D,) nats per image
        order = [int(d) for d in np.argsort(-self.kl, kind="stable")]  # most informative first
        self.dims, self.map_dims = order[:n_sliders], order[:2]
        if attributes is None and self.split.labels is not None and self.split.labels.ndim == 2:
            attributes = [a for a in DEFAULT_ATTRIBUTES if a in self.split.class_names] or self.split.class_names[:4]
        self.directions = attribute_directions(model, self.split, attributes or (), mu=self.mu)
        self._hold = False  # True while set_image moves the sliders: one redraw, not one per slider
        tabs = [self._sliders_tab(), self._interp_tab(), self._sample_tab(samples), self._traverse_tab(traverse_steps),
                self._map_tab(map_cells)]
        self.ui = W.Tab(children=tabs, titles=TABS)
        self.ui.observe(lambda _: self._refresh_traversal(), "selected_index")
        self.save_button = W.Button(description="save PNG", icon="download",
                                    tooltip="write this tab's picture to a PNG file in the notebook's folder")
        self.save_label = W.Label()
        self.save_label.add_class("vaelib-save-label")
        self.save_button.on_click(lambda _: self._on_save())
        self.box = W.VBox([self.ui, W.HBox([self.save_button, self.save_label])])
        self.box.add_class("vaelib-explorer")
        self.set_image(start_index)
        self._refresh_path()
        self._refresh_samples()
        self.pick(start_index)

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

    def shown_image(self) -> tuple[str, W.Image]:
        """The selected tab's name and its main picture, the one "save PNG" writes."""
        tab = TABS[self.ui.selected_index or 0]
        return tab, {"Sliders": self.decoded, "Interpolate": self.interp_image, "Sample": self.sample_image,
                     "Traverse": self.traverse_image, "Map": self.map_decoded}[tab]

    def save_png(self, folder: str | Path | None = None) -> Path:
        """Write the selected tab's main picture, as shown, to folder/explorer-<tab>-<n>.png (n: the first free
        number) and say where in `save_label`. folder: else `save_dir`, else the working folder (in Jupyter,
        the notebook's)."""
        tab, img = self.shown_image()
        folder = Path(folder or self.save_dir or Path.cwd())
        if not folder.is_dir():
            raise FileNotFoundError(f"folder {str(folder)!r} is invalid: allowed an existing folder")
        n = 1
        while os.path.lexists(path := folder / f"explorer-{tab.lower()}-{n}.png"):  # a dangling link counts
            n += 1
        atomic_write_bytes(path, lambda f: f.write(img.value))
        w, h = PILImage.open(io.BytesIO(img.value)).size
        self.save_label.value = f"saved {path.resolve()} ({w}x{h} px)"
        return path

    def _on_save(self) -> None:
        try:
            self.save_png()
        except OSError as err:  # a full disk or a read-only folder: say so under the button
            self.save_label.value = f"not saved: {err}"

    def describe(self) -> str:
        """The controls, one line per tab (no number that depends on training)."""
        a = self.attr_sliders
        kind = "class" if self.split.labels is not None and self.split.labels.ndim == 1 else "attribute"
        attrs = f", {len(a)} {kind} direction sliders ({', '.join(a)})" if a else ""
        classes = ", class A, class B" if hasattr(self, "class_a") else ""
        return "\n".join([
            f"Sliders: test image (0..{len(self.split) - 1}), reset sliders, {len(self.sliders)} latent sliders "
            f"(top {len(self.dims)} of {self.model.latent_dim} dims by KL){attrs}, decoded image",
            f"Interpolate: image A, image B{classes}, path (linear | spherical), t ({self.steps} steps), play, "
            "path strip",
            f"Sample: temperature (0..2), reseed, {len(self._eps)} samples",
            f"Traverse: dimension ({len(self.dims)} choices), span, play ({self.traverse_steps} steps), "
            "decoded at the played value, strip",
            "Map: test codes on the top 2 dims by KL, pick a test image or move 2 coordinates, decoded pick, "
            f"{self.map_cells}x{self.map_cells} manifold grid",
            "save PNG: the selected tab's main picture to explorer-<tab>-<n>.png"])

    def check(self) -> dict[str, bool]:
        """Invariants that hold whatever the weights (the first one only until a slider is moved)."""
        a, b = (self.mu[i][None] for i in (self.index_a.value, self.index_b.value))
        origin = self.decode(torch.zeros(1, self.model.latent_dim))
        return {"sliders start at the image's mu": torch.equal(self.code(), self.mu[self.index.value]),
                "interpolation ends at images A and B": torch.equal(self.interpolated(0.0), self.decode(a))
                and torch.equal(self.interpolated(1.0), self.decode(b)),
                "temperature 0 samples equal decode(0)": torch.allclose(self.decode(self._eps * 0.0),
                                                                        origin.expand(len(self._eps), -1, -1, -1),
                                                                        atol=1e-6),
                "the map decodes the picked image's mu": torch.equal(self.map_code(), self.mu[self.map_index.value])}

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        bundle = self.box._repr_mimebundle_(**kwargs)  # the live widget in JupyterLab
        bundle["text/plain"] = "LatentExplorer\n" + self.describe()  # what a static viewer shows
        return bundle

    def slider_latency(self, repeats: int = 50, slider: int = 0) -> np.ndarray:
        """Milliseconds from setting a latent slider's value to new decoded PNG bytes, one per repeat."""
        s = self.sliders[slider]
        start = s.value
        values = [start + (0.5 if k % 2 == 0 else -0.5) * (1 + k / repeats) for k in range(repeats)]  # all new
        times = change_latency(s, values, self.decoded)
        s.value = start
        return times

    def latencies(self, repeats: int = 50) -> dict[str, np.ndarray]:
        """Milliseconds from a change to its new picture, `repeats` each: a latent slider, the interpolation's
        Play button (one frame), a map coordinate."""
        x, start = self.map_x, self.map_x.value
        xs = [x.min + (x.max - x.min) * (k % 10 + 0.5) / 10 for k in range(repeats)]  # each new
        times = {"latent slider": self.slider_latency(repeats),
                 "play frame": change_latency(self.interp_play, [(k + 1) % self.steps for k in range(repeats)],
                                              self.interp_image),
                 "map coordinate": change_latency(x, xs, self.map_decoded)}
        self.interp_play.value, x.value = 0, start
        return times

    def snapshot(self):
        """A matplotlib Figure of every tab's current picture, for static renderings (papermill, HTML)."""
        i, sq = self.index.value, round(len(self._eps) ** 0.5)
        pictures = [to_png(x, 1, nrow) for x, nrow in (
            (to_float(self.split.images[i:i + 1]), None), (self.decode(self.code()[None]), None),
            (self.samples(), sq), (self.traversal(), None), (self.decode(self._path), None))]
        d0, d1 = self.map_dims
        titles = [f"test image {i}", "decoded from the sliders", f"samples, T={self.temperature.value:g}",
                  f"traversal of z{self.traverse_dim.value} over [-{self.traverse_span.value:g}, "
                  f"{self.traverse_span.value:g}]",
                  f"{self.path_kind.value} path from image {self.index_a.value} to {self.index_b.value}",
                  f"map: test codes on z{d0} (across), z{d1} (up); ring: image {self.map_index.value}",
                  f"map: decoded grid over z{d0}, z{d1}, other dims 0"]
        fig = plt.figure(figsize=(9, 10))
        grid = fig.add_gridspec(4, 6, height_ratios=[3, 1, 1, 4.5])
        axes = [fig.add_subplot(grid[0, 2 * k:2 * k + 2]) for k in range(3)]
        axes += [fig.add_subplot(grid[r, :]) for r in (1, 2)] + [fig.add_subplot(grid[3, k:k + 3]) for k in (0, 3)]
        (x0, y0), (x1, y1) = self.map_lo, self.map_hi
        for k, (ax, title, png) in enumerate(zip(axes, titles, [*pictures, self.map_image.value,
                                                                self.map_grid.value])):
            on_map = k >= len(pictures)  # the map's two pictures keep their axes: ticks in latent coordinates
            ax.imshow(PILImage.open(io.BytesIO(png)).convert("RGB"), interpolation="nearest",
                      extent=(x0, x1, y0, y1) if on_map else None, aspect="auto" if on_map else None)
            ax.set_title(title, fontsize="small")
            if on_map:
                ax.set_xlabel(f"z{d0}", fontsize="small")
                ax.set_ylabel(f"z{d1}", fontsize="small")
                ax.tick_params(labelsize="x-small")
            else:
                ax.set_axis_off()
        self._map_legend(axes[-2])
        fig.tight_layout()
        return fig

    def _map_legend(self, ax) -> None:
        """The class colours of the map's dots, as a legend on its axes (none when an image has no single class)."""
        s = self.split
        if s.labels is None or s.labels.ndim != 1 or not s.class_names:
            return
        handles = [Line2D([], [], ls="", marker="o", color=PALETTE[k % len(PALETTE)], label=name)
                   for k, name in enumerate(s.class_names)]
        ax.legend(handles=handles, fontsize="x-small", ncol=2, loc="best", framealpha=0.8, title="class",
                  title_fontsize="x-small")


def change_latency(control: W.ValueWidget, values: Sequence[Any], picture: W.Image) -> np.ndarray:
    """Milliseconds from setting control.value to each of `values` to new PNG bytes in `picture`, one each."""
    times = []
    for v in values:
        before = picture.value
        t0 = time.perf_counter()
        control.value = v
        times.append((time.perf_counter() - t0) * 1000)
        if picture.value is before:
            raise RuntimeError(f"the picture was not redrawn after setting {control.description!r} to {v!r}")
    return np.array(times)
