"""Four of the explorer's views, one class each (the Map tab is in latent_map.py); `LatentExplorer` composes them.

Each view is built from the explorer's ExplorerState (state.py: the model, the split, the posterior means `mu`,
the KL per dimension, the slider dimensions, picture sizes, `decode`), keeps its own widgets, builds its tab
(`tab`) and redraws its pictures. What one view needs of another comes in as a callable: the Traverse view reads
the Sliders view's code, and the Sliders view tells it when that code or its selected dimension changed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import ipywidgets as W
import numpy as np
import torch

from vaelib.data.shapes import COLOUR_NAMES, POSITIONS, ROTATIONS, SCALES, SHAPE_NAMES
from vaelib.evaluation.plots import interpolate_latents
from vaelib.runtime import to_float
from vaelib.widgets.controls import LATENT_STEP, boxed, image, is_echo, play, slider, strip_columns, to_png
from vaelib.widgets.state import ExplorerState

FACTOR_TEXT = {"shape": lambda i: SHAPE_NAMES[i], "colour": lambda i: COLOUR_NAMES[i],
               "scale": lambda i: f"{SCALES[i]:.2f}", "x": lambda i: f"{POSITIONS[i]:.2f}",
               "y": lambda i: f"{POSITIONS[i]:.2f}", "rotation": lambda i: f"{ROTATIONS[i]:g} deg"}


class SlidersView:
    """The Sliders tab: a test image's code, the top dimensions by KL as sliders, attribute directions.
    on_code() is called after the code changed, on_dim(d) after the slider of dimension d moved."""

    def __init__(self, state: ExplorerState, on_code: Callable[[], None], on_dim: Callable[[int], None]) -> None:
        self.s, self.on_code, self.on_dim = state, on_code, on_dim
        self.directions, self._hold = state.directions, False  # _hold: set_image moves the sliders, one redraw
        n = len(state.split)
        self.index = W.BoundedIntText(value=0, min=0, max=n - 1, description="test image",
                                      layout=W.Layout(width="180px"))
        self.index.add_class("vaelib-index")
        self.reset = W.Button(description="reset sliders", tooltip="back to the test image's code")
        self.original, self.decoded, self.info = image("vaelib-original"), image("vaelib-decoded"), W.HTML()
        self.sliders = [slider(f"z{d}", 0.0, -state.span, state.span, LATENT_STEP, "vaelib-z-slider", 40)
                        for d in state.dims]
        for d, s in zip(state.dims, self.sliders):
            s.tooltip = f"latent {d}: KL {state.kl[d]:.2f} nats per image"
        self.attr_sliders = {a: slider(f"+ {a}", 0.0, -3.0, 3.0, LATENT_STEP, "vaelib-attr-slider", 130)
                             for a in self.directions}
        for s in [*self.sliders, *self.attr_sliders.values()]:
            s.observe(self._on_slider, "value")
        self.index.observe(lambda ch: None if self._hold else self.set_image(ch["new"]), "value")
        self.reset.on_click(lambda _: self.set_image(self.index.value))
        what = "class directions (mean mu of the class minus the rest)" if state.single_labels() else \
            "attribute directions (mean mu with it minus without)"
        attrs = [boxed(what, *self.attr_sliders.values())]
        images = W.VBox([W.HBox([self.index, self.reset]),
                         W.HBox([boxed("test image", self.original), boxed("decoded", self.decoded)])])
        sliders = boxed(f"top {len(state.dims)} of {state.latent_dim} dims by KL", *self.sliders,
                         *(attrs if self.attr_sliders else []))
        beside = W.HBox([sliders, self.info], layout=W.Layout(flex="0 0 auto"))  # factors next to the sliders
        self.tab = W.HBox([images, beside], layout=W.Layout(flex_flow="row wrap"))

    def code(self) -> torch.Tensor:
        """The current code (D,): the start image's mu, the slider values, plus the attribute amounts."""
        z = self._z.clone()
        for name, s in self.attr_sliders.items():
            z += s.value * self.directions[name]
        return z

    def along(self, name: str, amounts: list[float]) -> torch.Tensor:
        """Decoded (K, C, H, W): the current code plus each amount times the direction of attribute or class `name`."""
        if name not in self.directions:
            raise ValueError(f"direction {name!r} is unknown: allowed {', '.join(self.directions) or 'none'}")
        mu = self.s.mu
        z = self.code() + torch.tensor(amounts, dtype=mu.dtype, device=mu.device)[:, None] \
            * self.directions[name]  # (K, D)
        return self.s.decode(z)

    def set_image(self, i: int) -> None:
        """Start from test image i: its mu fills the code (unselected dimensions are held), sliders follow."""
        i = self.s.check_index(i)
        self._z = self.s.mu[i].clone()  # (D,)
        self._hold = True
        try:
            for d, s in zip(self.s.dims, self.sliders):
                bound = max(self.s.span, float(np.ceil(abs(self._z[d].item()) * 2 + 1)) / 2)  # room around mu
                with s.hold_sync():  # one message: the browser never sees the old value in the new range
                    s.min, s.max, s.value = -bound, bound, float(self._z[d])
            for s in self.attr_sliders.values():
                s.value = 0.0
            self.index.value = i
        finally:
            self._hold = False
        self.original.value = to_png(to_float(self.s.split.images[i:i + 1]), self.s.px)
        self.info.value = self._describe_image(i)
        self._refresh_decoded()

    def _describe_image(self, i: int) -> str:
        s = self.s.split
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
            d = self.s.dims[self.sliders.index(change["owner"])]
            if is_echo(change["new"], self._z[d].item(), change["owner"]):
                return  # the browser snapped the image's mu to the step: keep the exact code and the dimension
            self._z[d] = change["new"]
            self.on_dim(d)  # the last moved dimension is the one the Traverse view selects
        self._refresh_decoded()

    def _refresh_decoded(self) -> None:
        self.decoded.value = to_png(self.s.decode(self.code()[None]), self.s.px)
        self.on_code()


class InterpolateView:
    """The Interpolate tab: a linear or spherical path between two test images' codes."""

    def __init__(self, state: ExplorerState, steps: int) -> None:
        self.s, self.steps, split = state, steps, state.split
        n = len(split)
        self.index_a, self.index_b = (W.BoundedIntText(value=v, min=0, max=n - 1, description=f"image {k}",
                                                       layout=W.Layout(width="200px"))
                                      for k, v in (("A", 0), ("B", self._other_class(0))))
        self.path_kind = W.ToggleButtons(options=["linear", "spherical"], value="linear", description="path")
        self.t = slider("t (A to B)", 0.0, 0.0, 1.0, 1 / (self.steps - 1), "vaelib-t-slider")
        self.interp_play = play(self.steps, "vaelib-interp-play")  # walks t from A to B, one step a frame
        self.interp_image, self.path_strip = image("vaelib-interp"), image("vaelib-path")
        self.image_a, self.image_b = image("vaelib-image-a"), image("vaelib-image-b")
        for w in (self.index_a, self.index_b, self.path_kind):
            w.observe(lambda _: self._refresh_path(), "value")
        self.t.observe(lambda _: self._refresh_t(), "value")
        self.interp_play.observe(lambda ch: setattr(self.t, "value", ch["new"] / (self.steps - 1)), "value")
        rows = [W.HBox([self.index_a, self.index_b])]
        if state.single_labels() and split.class_names:
            options = [("-", -1), *((c, i) for i, c in enumerate(split.class_names))]
            self.class_a, self.class_b = (W.Dropdown(options=options, value=-1, description=f"class {k}",
                                                     layout=W.Layout(width="200px")) for k in "AB")
            self.class_a.observe(lambda ch: self._pick_class(self.index_a, ch["new"]), "value")
            self.class_b.observe(lambda ch: self._pick_class(self.index_b, ch["new"]), "value")
            rows.append(W.HBox([self.class_a, self.class_b]))
        ends = W.HBox([boxed("image A", self.image_a), boxed("decoded at t", self.interp_image),
                       boxed("image B", self.image_b)])
        self.tab = W.VBox([*rows, self.path_kind, W.HBox([self.t, self.interp_play]), ends,
                           boxed(f"the whole path, {self.steps} steps from A to B", self.path_strip)])

    def _other_class(self, a: int) -> int:
        """The first test image of another class than image a (of another image when there are no labels)."""
        labels = self.s.split.labels
        if self.s.single_labels():
            hits = (labels != labels[a]).nonzero()
            if len(hits):
                return int(hits[0, 0])
        return min(a + 1, len(self.s.split) - 1)

    def _pick_class(self, box: W.BoundedIntText, label: int) -> None:
        hits = (self.s.split.labels == label).nonzero()
        if label >= 0 and len(hits):
            box.value = int(hits[0, 0])  # the first test image of that class

    def _refresh_path(self) -> None:
        i, j = self.index_a.value, self.index_b.value
        s = self.s
        self.image_a.value, self.image_b.value = (to_png(to_float(s.split.images[k:k + 1]), s.px) for k in (i, j))
        self.path = interpolate_latents(s.mu[i], s.mu[j], self.steps, self.path_kind.value == "spherical")
        self.path_strip.value = to_png(s.decode(self.path), s.strip_px, nrow=strip_columns(self.steps))
        self._refresh_t()

    def interpolated(self, t: float) -> torch.Tensor:
        """The decoded (1, C, H, W) step of the path nearest t in [0, 1]; exactly A's code at 0, B's at 1."""
        return self.s.decode(self.path[round(t * (self.steps - 1))][None])

    def _refresh_t(self) -> None:
        self.interp_image.value = to_png(self.interpolated(self.t.value), self.s.px)
        self.interp_play.value = round(self.t.value * (self.steps - 1))  # the Play button follows a dragged t


class SampleView:
    """The Sample tab: prior samples z = T * eps at a temperature, with a reseed button."""

    def __init__(self, state: ExplorerState, samples: int, seed: int) -> None:
        self.s, self.seed = state, seed
        self.temperature = slider("temperature", 1.0, 0.0, 2.0, 0.05, "vaelib-temperature")
        self.reseed = W.Button(description="reseed", icon="refresh", tooltip="draw new noise from the prior")
        self.sample_image, self.seed_label = image("vaelib-samples"), W.Label()
        self._draw_noise(samples)
        self.temperature.observe(lambda _: self._refresh_samples(), "value")
        self.reseed.on_click(lambda _: self._on_reseed())
        self.tab = W.VBox([W.HBox([self.temperature, self.reseed, self.seed_label]),
                           boxed("decoded z ~ N(0, T^2 I)", self.sample_image)])

    def _draw_noise(self, samples: int) -> None:
        gen = torch.Generator().manual_seed(self.seed)  # on the CPU: the same noise on every device
        self.noise = torch.randn(samples, self.s.latent_dim, generator=gen)  # (S, D)
        self.seed_label.value = f"seed {self.seed}"

    def _on_reseed(self) -> None:
        self.seed += 1
        self._draw_noise(len(self.noise))
        self._refresh_samples()

    def samples(self) -> torch.Tensor:
        """Decoded (S, C, H, W) prior samples z = T * eps, eps ~ N(0, I) from the current seed."""
        return self.s.decode(self.noise * self.temperature.value)

    def _refresh_samples(self) -> None:
        self.sample_image.value = to_png(self.samples(), self.s.strip_px, nrow=round(len(self.noise) ** 0.5))


class TraverseView:
    """The Traverse tab: the current code (`code()`, the Sliders view's) with one dimension swept over [-span, span],
    as a strip and played; redrawn only while `shown()` (its tab is on screen)."""

    def __init__(self, state: ExplorerState, steps: int, code: Callable[[], torch.Tensor],
                 shown: Callable[[], bool]) -> None:
        self.s, self.code, self.shown = state, code, shown
        self.traverse_dim = W.Dropdown(options=[(f"z{d} (KL {state.kl[d]:.2f} nats)", d) for d in state.dims],
                                       value=state.dims[0], description="dimension")
        self.traverse_dim.add_class("vaelib-traverse-dim")
        self.traverse_span = slider("span", state.span, 0.5, 6.0, 0.5)
        self.traverse_image, self.traverse_steps = image("vaelib-traverse"), steps
        self.traverse_play = play(steps, "vaelib-traverse-play")  # sweeps the value from -span to span
        self.traverse_frame, self.traverse_value = image("vaelib-traverse-frame"), W.Label()
        for w in (self.traverse_dim, self.traverse_span):
            w.observe(lambda _: self._refresh_traversal(), "value")
        self.traverse_play.observe(lambda _: self._refresh_frame(), "value")
        strip = boxed("the current code with one dimension swept over [-span, span] "
                      "(moving its slider selects a dimension)", self.traverse_image)
        self.tab = W.VBox([W.HBox([self.traverse_dim, self.traverse_span]),
                           W.HBox([self.traverse_play, self.traverse_value]),
                           boxed("decoded at the played value", self.traverse_frame), strip])

    def _refresh_traversal(self) -> None:
        if self.shown():  # only when on screen
            self.traverse_image.value = to_png(self.traversal(), self.s.strip_px,
                                               nrow=strip_columns(self.traverse_steps))
            self._refresh_frame()

    def _refresh_frame(self) -> None:
        if self.shown():
            k = self.traverse_play.value
            self.traverse_frame.value = to_png(self.traversal(k), self.s.px)
            self.traverse_value.value = f"z{self.traverse_dim.value} = {self.traverse_values()[k].item():+.2f}"

    def traverse_values(self) -> torch.Tensor:
        """The (steps,) values the selected dimension takes, from -span to span."""
        span = self.traverse_span.value
        return torch.linspace(-span, span, self.traverse_steps)

    def traversal(self, k: int | None = None) -> torch.Tensor:
        """Decoded (steps, C, H, W): the current code with the selected dimension swept over [-span, span];
        with k, only step k, (1, C, H, W)."""
        z = self.code().repeat(self.traverse_steps, 1)  # (steps, D)
        z[:, self.traverse_dim.value] = self.traverse_values().to(z)
        return self.s.decode(z if k is None else z[k:k + 1])
