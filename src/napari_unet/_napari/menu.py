"""The Layers > Segment > "Segment with U-Net" menu command.

It opens (or reuses) the "Segment with U-Net" dock widget, selects the active Image layer in
it and runs it when a model is already chosen (built-in, or the most recently used model
file); otherwise it asks, with an info notification, for a model file to be chosen in the
panel. Nothing here imports torch.
"""

from __future__ import annotations

import logging

import napari.viewer
from napari.layers import Image
from napari.utils.notifications import show_error, show_info

__all__ = ["PLUGIN_NAME", "WIDGET_NAME", "segment_selected_layer"]

log = logging.getLogger(__name__)

#: The npe2 plugin name and the widget's display name in napari.yaml.
PLUGIN_NAME = "napari-unet"
WIDGET_NAME = "Segment with U-Net"


def segment_selected_layer(viewer: napari.viewer.Viewer) -> None:
    """Segment the active layer with the "Segment with U-Net" panel.

    Parameters
    ----------
    viewer : napari.viewer.Viewer
        The viewer (injected by napari).

    Notes
    -----
    * No active layer, or one that is not an Image layer: an error notification names the
      layer and its type; the panel is not opened.
    * Otherwise the panel is opened (or brought back), the layer is selected in it and, if
      a model is selected there, the run starts (its progress shows in the activity dock);
      without a model an info notification asks to choose a model file in the panel.
    """
    layer = viewer.layers.selection.active
    if layer is None:
        show_error(f"{WIDGET_NAME}: no layer is selected; select an Image layer in the layer list")
        return
    if not isinstance(layer, Image):
        show_error(
            f"{WIDGET_NAME} works on Image layers; the selected layer {layer.name!r} is a {type(layer).__name__} layer"
        )
        return
    _dock, widget = viewer.window.add_plugin_dock_widget(PLUGIN_NAME, WIDGET_NAME)
    widget.select_image(layer)
    if widget.running:
        show_info(f"{WIDGET_NAME} is already running; wait for it or press Cancel in the panel")
        return
    if not widget.model_path:
        show_info(
            f"{WIDGET_NAME}: choose a model file in the panel (Model > Browse…), then press Run "
            f"to segment {layer.name!r}"
        )
        return
    log.info("Layers > Segment: running on %r with %s", layer.name, widget.model_path)
    widget.run()
