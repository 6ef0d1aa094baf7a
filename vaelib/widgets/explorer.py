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
import math
import numbers
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import ipywidgets as W
import numpy as np
import torch
from PIL import Image as PILImage

from vaelib.config_checks import MAX_SEED, SEEDS, check_int, refuse_argument
from vaelib.data.datasets import ImageSplit
from vaelib.io.files import atomic_write_bytes
from vaelib.losses import kl_per_dim
from vaelib.models.base import posterior_stats, require_gaussian_posterior
from vaelib.models.vae import VAE
from vaelib.widgets.controls import TABS
from vaelib.widgets.directions import attribute_directions
from vaelib.widgets.latent_map import MapView
from vaelib.widgets.snapshot import snapshot_figure
from vaelib.widgets.state import ExplorerState, check_image_index
from vaelib.widgets.views import InterpolateView, SampleView, SlidersView, TraverseView

DEFAULT_ATTRIBUTES = ("Smiling", "Eyeglasses", "Male", "Blond_Hair")  # CelebA names, used when present


def _check_arguments(model: VAE, split: ImageSplit, *, span: float, seed: int, threads: int | None,
                     **counts: int) -> None:
    """Refuse, in one line naming it, an argument out of range, before anything is encoded."""
    if not isinstance(split, ImageSplit):
        refuse_argument("split", split, "an ImageSplit (what load_dataset returns; ImageSplit(images, None, None) "
                                        "wraps uint8 images (N, C, H, W))")
    lows = {"n_sliders": 1, "image_px": 8, "strip_px": 8, "samples": 1, "interp_steps": 2, "traverse_steps": 2,
            "map_cells": 2, "max_images": 1}
    for name, value in counts.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < lows[name]:
            raise ValueError(f"{name}={value!r} is invalid: allowed an integer >= {lows[name]}")
    if isinstance(span, bool) or not isinstance(span, numbers.Real) or not 0 < span < math.inf:  # nan too
        refuse_argument("span", span, "a finite number > 0")
    check_int("seed", seed, 0, MAX_SEED - 1, SEEDS)
    require_gaussian_posterior(model, "the latent explorer")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ValueError(f"threads={threads!r} is invalid: allowed None (torch's setting) or an integer >= 1")
    if len(split) == 0 or tuple(split.images.shape[1:]) != model.config.input_shape:
        raise ValueError(f"split images of shape {tuple(split.images.shape)} are invalid: allowed "
                         f"(N >= 1, {', '.join(map(str, model.config.input_shape))}) for this model")
    if model.latent_dim < 2:
        raise ValueError(f"latent_dim={model.latent_dim} is invalid: the Map tab needs a model with >= 2")


SHARED = ("s", "tab")  # every view has one of its own: read them through explorer.views[name]
OWNER = {"code": "sliders", "directions": "sliders", "map_dims": "map"}  # held by two parts: the one shown


def attribute_owners(parts: dict[str, Any]) -> dict[str, Any]:
    """{public attribute name: the part (a view, or the state) that `LatentExplorer.<name>` reads it from}, built
    once: each name has one owner, OWNER says which where two parts hold it, SHARED names are left out. A name two
    parts hold that OWNER does not settle is refused (a new attribute must not change what an old name means)."""
    held: dict[str, list[str]] = {}
    for key, part in parts.items():
        for name in {n for n in (*vars(part), *dir(type(part))) if not n.startswith("_") and n not in SHARED}:
            held.setdefault(name, []).append(key)
    clashes = {n: keys for n, keys in held.items() if len(keys) > 1 and n not in OWNER}
    if clashes:
        raise TypeError(f"explorer attributes held by more than one part: {clashes}; settle them in OWNER")
    return {n: parts[OWNER.get(n, keys[0])] for n, keys in held.items()}


class LatentExplorer:
    """ipywidgets explorer of a VAE's latent space over a labelled or unlabelled split; display it.

    Composed of one view per tab (`views`: sliders, interpolate, sample, traverse, map) around one ExplorerState
    (`state`: the model, the split, its codes, `decode`). A view's controls and pictures read through the explorer
    too: `explorer.sliders` is `explorer.views["sliders"].sliders`, `explorer.mu` is `explorer.state.mu`, through one
    index built at construction (`attribute_owners`: each name has one owner)."""

    def __init__(self, model: VAE, split: ImageSplit, *, n_sliders: int = 8, start_index: int = 0,
                 image_px: int = 256, strip_px: int = 128, span: float = 3.0, samples: int = 16, seed: int = 0,
                 interp_steps: int = 11, traverse_steps: int = 9, map_cells: int = 8,
                 attributes: Sequence[str] | None = None, max_images: int = 2000, threads: int | None = 1,
                 save_dir: str | Path | None = None) -> None:
        _check_arguments(model, split, n_sliders=n_sliders, image_px=image_px, strip_px=strip_px, samples=samples,
                         interp_steps=interp_steps, traverse_steps=traverse_steps, map_cells=map_cells,
                         max_images=max_images, span=span, seed=seed, threads=threads)
        split = split.subset(slice(0, max_images))  # encoding all CelebA is slow
        check_image_index(start_index, len(split))
        mu, logvar = posterior_stats(model.eval(), split.images)  # (N, D) each, on the model's device
        kl = kl_per_dim(mu.double(), logvar.double()).mean(0).cpu().numpy()  # (D,) nats per image
        order = [int(d) for d in np.argsort(-kl, kind="stable")]  # most informative first
        if attributes is None and split.labels is not None and split.labels.ndim == 2:
            attributes = [a for a in DEFAULT_ATTRIBUTES if a in split.class_names] or split.class_names[:4]
        self.state = ExplorerState(model, split, mu, kl, order[:n_sliders], order[:2],
                                   attribute_directions(model, split, attributes or (), mu=mu),
                                   image_px, strip_px, float(span), threads)
        self.save_dir = save_dir
        sliders = SlidersView(self.state, on_code=lambda: traverse._refresh_traversal(),
                              on_dim=lambda d: setattr(traverse.traverse_dim, "value", d))
        traverse = TraverseView(self.state, traverse_steps, code=sliders.code, shown=self._traverse_shown)
        self.views = {"sliders": sliders, "interpolate": InterpolateView(self.state, interp_steps),
                      "sample": SampleView(self.state, samples, int(seed)), "traverse": traverse,
                      "map": MapView(self.state, map_cells)}
        self._owners = attribute_owners({**self.views, "state": self.state})
        self.ui = W.Tab(children=[v.tab for v in self.views.values()], titles=TABS)
        self.ui.observe(lambda _: traverse._refresh_traversal(), "selected_index")
        self.save_button = W.Button(description="save PNG", icon="download",
                                    tooltip="write this tab's picture to a PNG file in the notebook's folder")
        self.save_label = W.Label()
        self.save_label.add_class("vaelib-save-label")
        self.save_button.on_click(lambda _: self._on_save())
        self.box = W.VBox([self.ui, W.HBox([self.save_button, self.save_label])])
        self.box.add_class("vaelib-explorer")
        sliders.set_image(start_index)
        self.views["interpolate"]._refresh_path()
        self.views["sample"]._refresh_samples()
        self.views["map"].pick(start_index)
        self._owners = attribute_owners({**self.views, "state": self.state})  # again: with what the first draw set

    def __getattr__(self, name: str) -> Any:
        """A view's or the state's public attribute, through the index `_owners` built once in __init__ (called
        only when the explorer itself has no `name`)."""
        owners = self.__dict__.get("_owners", {})
        if name not in owners:
            raise AttributeError(f"'LatentExplorer' object has no attribute {name!r}")
        return getattr(owners[name], name)

    def __dir__(self) -> list[str]:
        return sorted({*super().__dir__(), *self.__dict__.get("_owners", {})})

    def _traverse_shown(self) -> bool:
        return "ui" in self.__dict__ and self.ui.selected_index == TABS.index("Traverse")

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
            f"Sample: temperature (0..2), reseed, {len(self.noise)} samples",
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
                "temperature 0 samples equal decode(0)": torch.allclose(self.decode(self.noise * 0.0),
                                                                        origin.expand(len(self.noise), -1, -1, -1),
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
        return snapshot_figure(self)


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
