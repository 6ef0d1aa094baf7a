"""A static picture of the explorer: every tab's current picture in one matplotlib Figure, for what papermill and
the HTML reports show where no widget runs."""

from __future__ import annotations

import io
from typing import Any

import matplotlib.pyplot as plt
from matplotlib.lines import Line2D
from PIL import Image as PILImage

from vaelib.runtime import to_float
from vaelib.widgets.controls import to_png
from vaelib.widgets.latent_map import PALETTE


def snapshot_figure(explorer: Any):
    """Every tab's current picture of a LatentExplorer, titled with what it shows; the map keeps latent ticks."""
    i, sq = explorer.index.value, round(len(explorer.noise) ** 0.5)
    pictures = [to_png(x, 1, nrow) for x, nrow in (
        (to_float(explorer.split.images[i:i + 1]), None), (explorer.decode(explorer.code()[None]), None),
        (explorer.samples(), sq), (explorer.traversal(), None), (explorer.decode(explorer.path), None))]
    d0, d1 = explorer.map_dims
    titles = [f"test image {i}", "decoded from the sliders", f"samples, T={explorer.temperature.value:g}",
              f"traversal of z{explorer.traverse_dim.value} over [-{explorer.traverse_span.value:g}, "
              f"{explorer.traverse_span.value:g}]",
              f"{explorer.path_kind.value} path from image {explorer.index_a.value} to {explorer.index_b.value}",
              f"map: test codes on z{d0} (across), z{d1} (up); ring: image {explorer.map_index.value}",
              f"map: decoded grid over z{d0}, z{d1}, other dims 0"]
    fig = plt.figure(figsize=(9, 10))
    grid = fig.add_gridspec(4, 6, height_ratios=[3, 1, 1, 4.5])
    axes = [fig.add_subplot(grid[0, 2 * k:2 * k + 2]) for k in range(3)]
    axes += [fig.add_subplot(grid[r, :]) for r in (1, 2)] + [fig.add_subplot(grid[3, k:k + 3]) for k in (0, 3)]
    (x0, y0), (x1, y1) = explorer.map_lo, explorer.map_hi
    for k, (ax, title, png) in enumerate(zip(axes, titles, [*pictures, explorer.map_image.value,
                                                            explorer.map_grid.value])):
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
    _map_legend(explorer.state.split, axes[-2])
    fig.tight_layout()
    return fig


def _map_legend(s, ax) -> None:
    """The class colours of the map's dots, as a legend on its axes (none when an image has no single class)."""
    if s.labels is None or s.labels.ndim != 1 or not s.class_names:
        return
    handles = [Line2D([], [], ls="", marker="o", color=PALETTE[k % len(PALETTE)], label=name)
               for k, name in enumerate(s.class_names)]
    ax.legend(handles=handles, fontsize="x-small", ncol=2, loc="best", framealpha=0.8, title="class",
              title_fontsize="x-small")
