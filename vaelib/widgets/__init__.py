"""The latent explorer (ipywidgets), split by view: controls, directions, four views, the map view, the explorer."""

from vaelib.widgets.controls import TABS, to_png
from vaelib.widgets.directions import attribute_directions
from vaelib.widgets.explorer import LatentExplorer

__all__ = ["TABS", "LatentExplorer", "attribute_directions", "to_png"]
