"""How a model trained in the Train panel reaches the Segment panels docked in the same viewer.

Every Segment widget docked in the viewer (found among ``viewer.window.dock_widgets`` by its
class name and its public ``set_model`` method, so this module does not import the Segment
widget's module) gets ``set_model(path)``: its model list is refreshed and the new model selected.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from .layer_inputs import unwrap

__all__ = ["docked_widgets", "offer_in_segment_widgets"]

log = logging.getLogger(__name__)


def docked_widgets(viewer: Any) -> list[Any]:
    """The inner widgets docked in ``viewer``'s window (empty without a window)."""
    window = getattr(viewer, "window", None)
    if window is None:
        return []
    try:
        mapping = window.dock_widgets  # napari >= 0.6.2
    except AttributeError:
        qt_window = getattr(window, "_qt_window", None)
        mapping = getattr(qt_window, "_wrapped_dock_widgets", None) or {}
        return [w for dock in mapping.values() if (w := getattr(dock, "inner_widget", None)) is not None]
    except Exception:  # noqa: BLE001 - a closed window
        return []
    return list(mapping.values())


def offer_in_segment_widgets(viewer: Any, path: str | os.PathLike) -> int:
    """Select the model file ``path`` in every Segment widget docked in ``viewer``.

    A Segment widget is recognised by its class name (``SegmentWidget``) and its public
    ``set_model(path)`` method, which refreshes its model list, selects ``path`` and adds it to
    the recent models.

    Returns
    -------
    int
        How many Segment widgets now show the model.
    """
    count = 0
    for widget in docked_widgets(viewer):
        inner = unwrap(widget)
        setter = getattr(inner, "set_model", None)
        if type(inner).__name__ != "SegmentWidget" or not callable(setter):
            continue
        try:
            setter(os.fspath(path))
        except Exception as exc:  # noqa: BLE001 - the model was saved; only the offer failed
            log.warning("could not select %s in the Segment widget: %s", path, exc)
        else:
            count += 1
    return count
