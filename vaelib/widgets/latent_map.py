"""The explorer's Map tab: the test codes on the two highest-KL dimensions, a picked point decoded, a manifold grid.

Drawn with PIL, not matplotlib: a pick redraws the marker on a cached scatter and decodes one code, a few
milliseconds. The scatter and the manifold grid share their extent and size, so a point lies over the grid
cell that decodes its coordinates.
"""

from __future__ import annotations

import io
from typing import Any

import ipywidgets as W
import torch
from PIL import Image as PILImage
from PIL import ImageDraw

from vaelib.data.shapes import SHAPE_NAMES
from vaelib.widgets.controls import LATENT_STEP, boxed, image, is_echo, png_bytes, slider, to_png
from vaelib.widgets.state import ExplorerState

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",  # matplotlib's tab10: ten classes
           "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")
GREY, LINE = "#606060", "#dddddd"


class MapView:
    """The Map tab: test codes on the state's `map_dims`, coloured by class; a test image or two coordinates
    decoded."""

    def __init__(self, state: ExplorerState, cells: int) -> None:
        self.s, self.map_cells, self.map_dims, self._hold = state, cells, state.map_dims, False
        xy = state.mu[:, self.map_dims].double().cpu()  # (N, 2)
        lo, hi = xy.min(0).values, xy.max(0).values
        pad = 0.05 * (hi - lo) + 0.05  # a margin, and room when every code is the same
        self.map_lo, self.map_hi = (lo - pad).tolist(), (hi + pad).tolist()  # [x, y] each
        self.map_grid = image("vaelib-map-grid")
        self.map_grid.value = to_png(state.decode(self.grid_codes()), 2 * state.px / cells, nrow=cells)
        self._map_size = PILImage.open(io.BytesIO(self.map_grid.value)).size  # (width, height) of the grid
        self._scatter = self._draw_scatter(xy)
        n = len(state.split)
        self.map_index = W.BoundedIntText(value=0, min=0, max=n - 1, description="test image",
                                          layout=W.Layout(width="180px"))
        self.map_index.add_class("vaelib-map-index")
        self.map_x, self.map_y = (slider(f"z{d}", 0.0, self.map_lo[k], self.map_hi[k], LATENT_STEP,
                                         f"vaelib-map-{'xy'[k]}", 40) for k, d in enumerate(self.map_dims))
        self.map_image, self.map_decoded, self.map_info = image("vaelib-map"), image("vaelib-map-decoded"), W.HTML()
        self.map_index.observe(lambda ch: None if self._hold else self.pick(ch["new"]), "value")
        for s in (self.map_x, self.map_y):
            s.observe(self._on_map_slider, "value")
        d0, d1 = self.map_dims
        picked = boxed("the picked code, decoded", self.map_index, self.map_x, self.map_y, self.map_decoded,
                       self.map_info)
        self.tab = W.HBox([boxed(f"test codes on z{d0} (across) and z{d1} (up), the top 2 dims by KL",
                                 self.map_image, W.HTML(self._legend())), picked,
                           boxed(f"decoded {cells}x{cells} grid over the same square, the other dims at 0",
                                 self.map_grid)], layout=W.Layout(flex_flow="row wrap"))

    def grid_codes(self) -> torch.Tensor:
        """(cells * cells, D) codes at the grid's cell centres, row by row from the top; other dims 0."""
        c = self.map_cells
        centres = [(torch.arange(c, dtype=torch.float64) + 0.5) / c * (hi - lo) + lo
                   for lo, hi in zip(self.map_lo, self.map_hi)]
        y, x = torch.meshgrid(centres[1].flip(0), centres[0], indexing="ij")  # (c, c) each; up is +y
        mu = self.s.mu
        z = torch.zeros(c * c, self.s.latent_dim, dtype=mu.dtype, device=mu.device)
        z[:, self.map_dims[0]], z[:, self.map_dims[1]] = x.reshape(-1).to(z), y.reshape(-1).to(z)
        return z

    def to_pixel(self, x: float, y: float) -> tuple[float, float]:
        """Pixel (column, row) on the scatter of map coordinates (x, y)."""
        w, h = self._map_size
        (x0, y0), (x1, y1) = self.map_lo, self.map_hi
        return (x - x0) / (x1 - x0) * w, (y1 - y) / (y1 - y0) * h

    def _groups(self) -> tuple[list[int] | None, tuple[str, ...]]:
        """What colours the points: each image's class, or on shapes (no class) its shape factor; with names."""
        s = self.s.split
        if self.s.single_labels():
            return [int(k) for k in s.labels.tolist()], tuple(s.class_names or ())
        if s.factors is not None and s.factor_names[:1] == ("shape",):
            return [int(k) for k in s.factors[:, 0].tolist()], SHAPE_NAMES
        return None, ()

    def _colours(self) -> list[str]:
        groups, _ = self._groups()
        if groups is None:
            return [GREY] * len(self.s.split)
        return [PALETTE[k % len(PALETTE)] for k in groups]

    def _draw_scatter(self, xy: torch.Tensor) -> PILImage.Image:
        size = self._map_size
        img = PILImage.new("RGB", size, "white")
        draw = ImageDraw.Draw(img)
        for k in range(1, self.map_cells):  # the grid's cell borders, to read a point's cell
            draw.line([(k * size[0] / self.map_cells, 0), (k * size[0] / self.map_cells, size[1])], fill=LINE)
            draw.line([(0, k * size[1] / self.map_cells), (size[0], k * size[1] / self.map_cells)], fill=LINE)
        for (x, y), colour in zip(xy.tolist(), self._colours()):
            u, v = self.to_pixel(x, y)
            draw.ellipse([u - 3, v - 3, u + 3, v + 3], fill=colour)
        return img

    def _legend(self) -> str:
        groups, names = self._groups()
        if groups is None or not names:
            return "<small>no single class per image: every point grey</small>"
        keys = (f"<span style='color:{PALETTE[k % len(PALETTE)]}'>&#9679;</span> {name}"
                for k, name in enumerate(names))
        return "<small>" + " &nbsp;".join(keys) + "</small>"

    def pick(self, i: int) -> None:
        """Pick test image i on the map: its whole code mu is decoded, the two sliders go to its coordinates."""
        i = self.s.check_index(i)
        self._map_z = self.s.mu[i].clone()  # (D,)
        self._hold = True
        try:
            self.map_index.value = i
            for s, d in zip((self.map_x, self.map_y), self.map_dims):
                s.value = float(self._map_z[d])
        finally:
            self._hold = False
        self._refresh_map()

    def map_code(self) -> torch.Tensor:
        """The picked code (D,): the picked test image's mu with the two map coordinates from the sliders."""
        return self._map_z.clone()

    def _on_map_slider(self, change: dict[str, Any]) -> None:
        d = self.map_dims[0 if change["owner"] is self.map_x else 1]
        if self._hold or is_echo(change["new"], self._map_z[d].item(), change["owner"]):
            return  # the browser snapped the coordinate to the step: keep the exact code
        self._map_z[d] = change["new"]
        self._refresh_map()

    def _refresh_map(self) -> None:
        mu = self.s.mu
        self.map_decoded.value = to_png(self.s.decode(self._map_z[None]), self.s.px)
        x, y = (self._map_z[d].item() for d in self.map_dims)
        img = self._scatter.copy()
        u, v = self.to_pixel(x, y)
        ImageDraw.Draw(img).ellipse([u - 9, v - 9, u + 9, v + 9], outline="black", width=3)  # the picked point
        self.map_image.value = png_bytes(img)
        near = int(((mu[:, self.map_dims] - mu.new_tensor([x, y])) ** 2).sum(1).argmin())
        d0, d1 = self.map_dims
        self.map_info.value = (f"z{d0} = {x:+.2f}, z{d1} = {y:+.2f}<br>nearest test image: {near}"
                               + self._class_text(near))

    def _class_text(self, i: int) -> str:
        s = self.s.split
        if not self.s.single_labels():
            return ""
        label = int(s.labels[i])
        return f" (class <b>{s.class_names[label] if s.class_names else label}</b>)"
