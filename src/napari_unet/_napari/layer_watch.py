"""Hear what a panel's choices depend on: the viewer's layer list, and some events of chosen layers.

A panel that offers layers in its boxes must hear when layers are added, removed, moved or
renamed (:class:`LayerListWatch`). A panel that shows something computed from the layers it
has chosen (the classes found in Labels layers, how an Image layer will be read) must hear when
their data changes, and stop hearing layers it no longer uses (:class:`LayerWatch`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

__all__ = ["LayerListWatch", "LayerWatch"]


class LayerListWatch:
    """Call ``callback`` when a layer of ``viewer`` is added, removed, moved or renamed.

    napari holds bound methods weakly: keep this object (and pass a bound method) for as long
    as the panel lives, and a closed panel is not kept alive by the viewer's layer list.
    """

    def __init__(self, viewer: Any, callback: Callable[..., Any]) -> None:
        self.callback = callback
        layer_events = viewer.layers.events
        layer_events.inserted.connect(self._on_inserted)
        layer_events.removed.connect(callback)
        layer_events.moved.connect(callback)
        for layer in viewer.layers:
            layer.events.name.connect(callback)

    def _on_inserted(self, event: Any) -> None:
        layer = getattr(event, "value", None)
        if layer is not None:
            layer.events.name.connect(self.callback)
        self.callback(event)


class LayerWatch:
    """Connect ``callback`` to the events ``names`` of the layers given to :meth:`watch`.

    Parameters
    ----------
    names : sequence of str
        Event names, e.g. ``("data", "paint", "labels_update")``; a layer without one is skipped.
    callback : callable
        Called with the event; pass a bound method (napari holds those weakly).
    """

    def __init__(self, names: Sequence[str], callback: Callable[..., Any]) -> None:
        self.names = tuple(names)
        self.callback = callback
        self.layers: list[Any] = []

    def watch(self, layers: Iterable[Any]) -> None:
        """Follow exactly ``layers`` (None entries ignored): disconnect the others, connect the new ones."""
        wanted = [layer for layer in layers if layer is not None]
        for layer in self.layers:
            if not any(layer is w for w in wanted):
                self._connect(layer, False)
        for layer in wanted:
            if not any(layer is w for w in self.layers):
                self._connect(layer, True)
        self.layers = wanted

    def _connect(self, layer: Any, connect: bool) -> None:
        for name in self.names:
            emitter = getattr(layer.events, name, None)
            if emitter is not None:
                (emitter.connect if connect else emitter.disconnect)(self.callback)
