"""The latent explorer: ipywidgets controls over a trained VAE's latent space, for exploring by hand in class.

`explorer_for(dataset, budget, ...)` loads (or trains) the model the earlier notebooks cached and returns a
`LatentExplorer` over the test split; display it in JupyterLab. Four tabs: Sliders (the most informative
latent dimensions by KL, starting from an encoded test image; attribute directions on labelled data),
Interpolate (linear or spherical path between two test images), Sample (the prior, with a temperature and
a reseed button) and Traverse (one dimension swept over [-span, span]). A slider change costs one decode and
one PNG encode, no matplotlib (benchmarks/explorer_latency.py times it).
"""

from __future__ import annotations

import io
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import ipywidgets as W
import numpy as np
import torch
from PIL import Image as PILImage

from .checkpoint import load_checkpoint
from .config import Config
from .data import COLOUR_NAMES, POSITIONS, ROTATIONS, SCALES, SHAPE_NAMES, ImageSplit, load_from_config
from .losses import kl_per_dim
from .metrics import model_device, posterior_stats
from .model import VAE
from .pipeline import cached_fit, notebook_config, run_dir
from .plots import interpolate_latents, tile
from .train import CHECKPOINT, resolve_device

TABS = ("Sliders", "Interpolate", "Sample", "Traverse")
DEFAULT_ATTRIBUTES = ("Smiling", "Eyeglasses", "Male", "Blond_Hair")  # CelebA names, used when present
FACTOR_TEXT = {"shape": lambda i: SHAPE_NAMES[i], "colour": lambda i: COLOUR_NAMES[i],
               "scale": lambda i: f"{SCALES[i]:.2f}", "x": lambda i: f"{POSITIONS[i]:.2f}",
               "y": lambda i: f"{POSITIONS[i]:.2f}", "rotation": lambda i: f"{ROTATIONS[i]:g} deg"}


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


def load_trained(config: Config, runs_dir: str | Path = "runs", *, train_if_missing: bool = True,
                 retrain: bool = False, device: str | None = None) -> tuple[VAE, Path]:
    """The model cached_fit made for `config` under runs_dir (trained first if missing and allowed), its folder."""
    ckpt = run_dir(config, runs_dir) / CHECKPOINT
    if not (train_if_missing or retrain):
        if not ckpt.is_file():
            raise FileNotFoundError(f"no trained model for preset {config.name!r}: expected {ckpt} (run an earlier "
                                    "notebook with the same dataset, budget, seed, image_size and data_root, "
                                    "or allow train_if_missing)")
        model, _ = load_checkpoint(ckpt, device=resolve_device(device))
        return model.eval(), ckpt.parent
    train, val = (load_from_config(config.data, s) for s in ("train", "val"))
    model, _, out = cached_fit(config, train, val, root=runs_dir, retrain=retrain, device=device, quiet=True)
    return model.eval(), out


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


def _image(cls: str) -> W.Image:
    img = W.Image(format="png")
    img.add_class(cls)  # a handle for the browser test and for CSS
    return img


def _slider(description: str, value: float, low: float, high: float, step: float, cls: str = "",
            label_px: int = 90) -> W.FloatSlider:
    s = W.FloatSlider(value=value, min=low, max=high, step=step, description=description, readout_format=".2f",
                      style={"description_width": f"{label_px}px"}, layout=W.Layout(width=f"{label_px + 250}px"))
    if cls:
        s.add_class(cls)
    return s


def _boxed(caption: str, *children: W.Widget) -> W.VBox:
    box = W.Layout(align_items="flex-start", flex="0 0 auto", margin="0 8px")  # never squeezed: wraps instead
    return W.VBox([W.HTML(f"<b>{caption}</b>"), *children], layout=box)


class LatentExplorer:
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

    # --- the four tabs --------------------------------------------------------------------------------

    def _sliders_tab(self) -> W.HBox:
        n = len(self.split)
        self.index = W.BoundedIntText(value=0, min=0, max=n - 1, description="test image",
                                      layout=W.Layout(width="180px"))
        self.reset = W.Button(description="reset sliders", tooltip="back to the test image's code")
        self.original, self.decoded, self.info = _image("vaelib-original"), _image("vaelib-decoded"), W.HTML()
        self.sliders = [_slider(f"z{d}", 0.0, -self.span, self.span, 0.01, "vaelib-z-slider", 40) for d in self.dims]
        for d, s in zip(self.dims, self.sliders):
            s.tooltip = f"latent {d}: KL {self.kl[d]:.2f} nats per image"
        self.attr_sliders = {a: _slider(f"+ {a}", 0.0, -3.0, 3.0, 0.05, "vaelib-attr-slider", 130)
                             for a in self.directions}
        for s in [*self.sliders, *self.attr_sliders.values()]:
            s.observe(self._on_slider, "value")
        self.index.observe(lambda ch: None if self._hold else self.set_image(ch["new"]), "value")
        self.reset.on_click(lambda _: self.set_image(self.index.value))
        attrs = [_boxed("attribute directions (mean mu with it minus without)", *self.attr_sliders.values())]
        images = W.VBox([W.HBox([self.index, self.reset]),
                         W.HBox([_boxed("test image", self.original), _boxed("decoded", self.decoded)])])
        sliders = _boxed(f"top {len(self.dims)} of {self.model.latent_dim} dims by KL", *self.sliders,
                         *(attrs if self.attr_sliders else []))
        beside = W.HBox([sliders, self.info], layout=W.Layout(flex="0 0 auto"))  # factors next to the sliders
        return W.HBox([images, beside], layout=W.Layout(flex_flow="row wrap"))

    def _interp_tab(self) -> W.VBox:
        n = len(self.split)
        self.index_a, self.index_b = (W.BoundedIntText(value=v, min=0, max=n - 1, description=f"image {k}",
                                                       layout=W.Layout(width="200px"))
                                      for k, v in (("A", 0), ("B", min(1, n - 1))))
        self.path_kind = W.ToggleButtons(options=["linear", "spherical"], value="linear", description="path")
        self.t = _slider("t (A to B)", 0.0, 0.0, 1.0, 1 / (self.steps - 1), "vaelib-t-slider")
        self.interp_image, self.path_strip = _image("vaelib-interp"), _image("vaelib-path")
        self.image_a, self.image_b = _image("vaelib-image-a"), _image("vaelib-image-b")
        for w in (self.index_a, self.index_b, self.path_kind):
            w.observe(lambda _: self._refresh_path(), "value")
        self.t.observe(lambda _: self._refresh_t(), "value")
        rows = [W.HBox([self.index_a, self.index_b])]
        if self.split.labels is not None and self.split.labels.ndim == 1 and self.split.class_names:
            options = [("-", -1), *((c, i) for i, c in enumerate(self.split.class_names))]
            self.class_a, self.class_b = (W.Dropdown(options=options, value=-1, description=f"class {k}",
                                                     layout=W.Layout(width="200px")) for k in "AB")
            self.class_a.observe(lambda ch: self._pick_class(self.index_a, ch["new"]), "value")
            self.class_b.observe(lambda ch: self._pick_class(self.index_b, ch["new"]), "value")
            rows.append(W.HBox([self.class_a, self.class_b]))
        ends = W.HBox([_boxed("image A", self.image_a), _boxed("decoded at t", self.interp_image),
                       _boxed("image B", self.image_b)])
        return W.VBox([*rows, self.path_kind, self.t, ends,
                       _boxed(f"the whole path, {self.steps} steps from A to B", self.path_strip)])

    def _sample_tab(self, samples: int) -> W.VBox:
        self.temperature = _slider("temperature", 1.0, 0.0, 2.0, 0.05, "vaelib-temperature")
        self.reseed = W.Button(description="reseed", icon="refresh", tooltip="draw new noise from the prior")
        self.sample_image, self.seed_label = _image("vaelib-samples"), W.Label()
        self._draw_noise(samples)
        self.temperature.observe(lambda _: self._refresh_samples(), "value")
        self.reseed.on_click(lambda _: self._on_reseed())
        return W.VBox([W.HBox([self.temperature, self.reseed, self.seed_label]),
                       _boxed("decoded z ~ N(0, T^2 I)", self.sample_image)])

    def _traverse_tab(self, steps: int) -> W.VBox:
        self.traverse_dim = W.Dropdown(options=[(f"z{d} (KL {self.kl[d]:.2f} nats)", d) for d in self.dims],
                                       value=self.dims[0], description="dimension")
        self.traverse_span = _slider("span", self.span, 0.5, 6.0, 0.5)
        self.traverse_image, self.traverse_steps = _image("vaelib-traverse"), steps
        for w in (self.traverse_dim, self.traverse_span):
            w.observe(lambda _: self._refresh_traversal(), "value")
        return W.VBox([W.HBox([self.traverse_dim, self.traverse_span]),
                       _boxed("the current code with one dimension swept over [-span, span] "
                              "(moving its slider selects a dimension)", self.traverse_image)])

    # --- state and redraws ----------------------------------------------------------------------------

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

    def code(self) -> torch.Tensor:
        """The current code (D,): the start image's mu, the slider values, plus the attribute amounts."""
        z = self._z.clone()
        for name, s in self.attr_sliders.items():
            z += s.value * self.directions[name]
        return z

    def set_image(self, i: int) -> None:
        """Start from test image i: its mu fills the code (unselected dimensions are held), sliders follow."""
        i = self._check(i)
        self._z = self.mu[i].clone()  # (D,)
        self._hold = True
        try:
            for d, s in zip(self.dims, self.sliders):
                bound = max(self.span, float(np.ceil(abs(self._z[d].item()) * 2 + 1)) / 2)  # room around mu
                s.min, s.max, s.value = -bound, bound, float(self._z[d])
            for s in self.attr_sliders.values():
                s.value = 0.0
            self.index.value = i
        finally:
            self._hold = False
        self.original.value = to_png(self.split.images[i:i + 1] / 255, self.px)
        self.info.value = self._describe_image(i)
        self._refresh_decoded()

    def _describe_image(self, i: int) -> str:
        s = self.split
        if s.factors is not None:
            head, rows = "true generating factors", [(n, FACTOR_TEXT.get(n, str)(int(v)))
                                                     for n, v in zip(s.factor_names, s.factors[i].tolist())]
        elif s.labels is not None and s.labels.ndim == 2:
            head, rows = "attributes", [(n, "yes") for n, v in zip(s.class_names, s.labels[i].tolist()) if v > 0]
        elif s.labels is not None:
            label = int(s.labels[i])
            head, rows = "label", [("class", s.class_names[label] if s.class_names else str(label))]
        else:
            return ""
        table = "".join(f"<tr><td>{k}</td><td><b>{v}</b></td></tr>" for k, v in rows)
        return f"<b>{head}</b><table>{table}</table>"

    def _on_slider(self, change: dict[str, Any]) -> None:
        if self._hold:
            return
        if change["owner"] in self.sliders:
            d = self.dims[self.sliders.index(change["owner"])]
            self._z[d] = change["new"]
            self.traverse_dim.value = d  # the last moved dimension is the selected one
        self._refresh_decoded()

    def _refresh_decoded(self) -> None:
        self.decoded.value = to_png(self.decode(self.code()[None]), self.px)
        self._refresh_traversal()

    def _refresh_traversal(self) -> None:
        if getattr(self, "ui", None) is not None and self.ui.selected_index == TABS.index("Traverse"):
            self.traverse_image.value = to_png(self.traversal(), self.px // 2)  # only when on screen

    def traversal(self) -> torch.Tensor:
        """Decoded (steps, C, H, W): the current code with the selected dimension swept over [-span, span]."""
        z = self.code().repeat(self.traverse_steps, 1)  # (steps, D)
        span = self.traverse_span.value
        z[:, self.traverse_dim.value] = torch.linspace(-span, span, self.traverse_steps, device=z.device)
        return self.decode(z)

    def _pick_class(self, box: W.BoundedIntText, label: int) -> None:
        hits = (self.split.labels == label).nonzero()
        if label >= 0 and len(hits):
            box.value = int(hits[0, 0])  # the first test image of that class

    def set_pair(self, a: int, b: int) -> None:
        """Interpolate between test images a and b."""
        self.index_a.value, self.index_b.value = self._check(a), self._check(b)

    def _refresh_path(self) -> None:
        i, j = self.index_a.value, self.index_b.value
        self.image_a.value, self.image_b.value = (to_png(self.split.images[k:k + 1] / 255, self.px) for k in (i, j))
        a, b = self.mu[i], self.mu[j]
        self._path = interpolate_latents(a, b, self.steps, self.path_kind.value == "spherical")  # (steps, D)
        self.path_strip.value = to_png(self.decode(self._path), self.px // 2)
        self._refresh_t()

    def interpolated(self, t: float) -> torch.Tensor:
        """The decoded (1, C, H, W) step of the path nearest t in [0, 1]; exactly A's code at 0, B's at 1."""
        return self.decode(self._path[round(t * (self.steps - 1))][None])

    def _refresh_t(self) -> None:
        self.interp_image.value = to_png(self.interpolated(self.t.value), self.px)

    def _draw_noise(self, samples: int) -> None:
        gen = torch.Generator().manual_seed(self.seed)  # on the CPU: the same noise on every device
        self._eps = torch.randn(samples, self.model.latent_dim, generator=gen)  # (S, D)
        self.seed_label.value = f"seed {self.seed}"

    def _on_reseed(self) -> None:
        self.seed += 1
        self._draw_noise(len(self._eps))
        self._refresh_samples()

    def samples(self) -> torch.Tensor:
        """Decoded (S, C, H, W) prior samples z = T * eps, eps ~ N(0, I) from the current seed."""
        return self.decode(self._eps * self.temperature.value)

    def _refresh_samples(self) -> None:
        self.sample_image.value = to_png(self.samples(), self.px // 2, nrow=round(len(self._eps) ** 0.5))

    # --- text, timing and a static picture --------------------------------------------------------------

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
        panels = [(f"test image {i}", self.split.images[i:i + 1].float() / 255, None),
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

def explorer_for(dataset: str = "digits", budget: str = "small", seed: int = 0, *, image_size: int | None = None,
                 data_root: str = "data", runs_dir: str | Path = "runs", device: str | None = None,
                 train_if_missing: bool = True, retrain: bool = False, **options: Any) -> LatentExplorer:
    """The explorer over the test split, for the model notebook_config(dataset, budget, seed, ...) trains."""
    config = notebook_config(dataset, budget, seed, image_size=image_size, data_root=data_root)
    model, _ = load_trained(config, runs_dir, train_if_missing=train_if_missing, retrain=retrain, device=device)
    return LatentExplorer(model, load_from_config(config.data, "test"), seed=seed, **options)
