"""The latent explorer (ipywidgets), split by view: controls, directions, four views, the map view, the explorer."""

from .controls import TABS, to_png
from .directions import attribute_directions
from .explorer import LatentExplorer

__all__ = ["TABS", "LatentExplorer", "attribute_directions", "to_png"]
