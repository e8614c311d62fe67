"""From napari Image layers to what the core segments: array, axes and channel names.

One layer is read by :func:`napari_unet._sources.image_source` (the console API's own reading of a
layer: ``metadata["axes"]`` and ``metadata["channel_names"]`` from napari-unet's reader, RGB,
multiscale), with the axes guessed when nothing else says what they are. Several single-channel
layers can be stacked as the channels of one input (:func:`combine_input`). Where the axes came
from is always kept, so that a guess is shown to the user (:meth:`ImageInput.describe`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
from napari.layers import Image

from .._sources import image_source
from ..core.image.layout import Layout

__all__ = [
    "AXES_ORIGIN_TEXT",
    "ImageInput",
    "combine_input",
    "extra_channel_candidates",
    "layer_data",
    "single_channel_name",
    "unwrap",
]

#: How the panel explains where the axes came from (keys: ``core.image.axes.AXES_ORIGINS``).
AXES_ORIGIN_TEXT = {
    "given": "typed in the Axes box",
    "recorded": "from the layer's metadata",
    "rgb": "RGB layer",
    "2D": "2D image",
    "guessed": "guessed from the shape, correct them in the Axes box if wrong",
}


def unwrap(obj: Any) -> Any:
    """The napari object behind a ``PublicOnlyProxy`` (plugin widgets get proxies; identity
    checks and Qt item data need the real layer)."""
    return getattr(obj, "__wrapped__", obj)


def layer_data(layer: Image) -> Any:
    """The full-resolution data of ``layer`` (level 0 of a multiscale layer)."""
    return layer.data[0] if getattr(layer, "multiscale", False) else layer.data


def single_channel_name(layer: Image) -> str:
    """The channel name of a one-channel layer: its ``metadata["channel_names"]`` entry (the
    reader records it when it splits a file's channels), else the layer name."""
    names = (layer.metadata or {}).get("channel_names")
    if isinstance(names, (list, tuple)) and len(names) == 1 and names[0]:
        return str(names[0])
    return str(layer.name)


@dataclass(frozen=True)
class ImageInput:
    """What will be fed to the core for one Run.

    Attributes
    ----------
    layer : napari.layers.Image
        The chosen image layer (the first channel when extra channel layers are combined).
    arrays : tuple of array-like
        The layer's data, then the data of each extra channel layer.
    axes : str
        Axes of :attr:`data`.
    layer_axes : str
        Axes of ``layer``'s own data (used to carry its scale and translate over).
    origin : str
        Where ``layer_axes`` came from (a key of :data:`AXES_ORIGIN_TEXT`).
    note : str
        Why the layer's metadata axes were ignored, if they were.
    channel_names : list of str or None
        Names of the channels of :attr:`data`: the layer's ``metadata["channel_names"]``; when
        layers are combined, each layer's single channel name (else the layer name).
    extra_layers : tuple of napari.layers.Image
        The extra channel layers, in order.
    """

    layer: Image
    arrays: tuple[Any, ...]
    axes: str
    layer_axes: str
    origin: str
    note: str = ""
    channel_names: list[str] | None = None
    extra_layers: tuple[Image, ...] = ()

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of :attr:`data`, known without stacking anything."""
        first = tuple(int(n) for n in self.arrays[0].shape)
        return first if len(self.arrays) == 1 else (len(self.arrays), *first)

    @cached_property
    def data(self) -> Any:
        """The array passed to the core: the layer's data, or the layers stacked along a new
        first axis ``C`` (:func:`numpy.stack`, one in-memory copy, when all are numpy arrays;
        else lazily with :func:`dask.array.stack`). Built on first access: in the worker thread."""
        if len(self.arrays) == 1:
            return self.arrays[0]
        if all(isinstance(a, np.ndarray) for a in self.arrays):
            return np.stack(self.arrays)
        import dask.array as da

        return da.stack([da.asarray(a) for a in self.arrays])

    @property
    def image_name(self) -> str:
        """How error messages name the input: ``layer 'x'`` or ``layers 'x' + 'y'``."""
        if not self.extra_layers:
            return f"layer {self.layer.name!r}"
        return "layers " + " + ".join(repr(layer.name) for layer in (self.layer, *self.extra_layers))

    @property
    def origin_text(self) -> str:
        """Where the axes came from, in words."""
        return AXES_ORIGIN_TEXT[self.origin]

    def describe(self, layout: Layout | None = None) -> str:
        """How the input will be read, always saying where the axes came from.

        Without ``layout``: ``axes ZCYX (from the layer's metadata)`` and any note. With the
        plan for a model: :meth:`Layout.describe <napari_unet.core.image.layout.Layout.describe>`, then
        the origin (and the stacked layers) in parentheses, then any note on its own line.
        """
        if layout is not None:
            text = f"{layout.describe()}\n({self.origin_text}"
            text += f"; {len(self.extra_layers) + 1} layers stacked as C)" if self.extra_layers else ")"
            return f"{text}\n{self.note}" if self.note else text
        if self.extra_layers:
            text = f"axes {self.axes} (C: {len(self.arrays)} layers stacked; {self.layer_axes} {self.origin_text})"
        else:
            text = f"axes {self.axes} ({self.origin_text})"
        return f"{text}; {self.note}" if self.note else text


def extra_channel_candidates(layer: Image, layers: Sequence[Image]) -> list[Image]:
    """The layers of ``layers`` that can be stacked after ``layer`` as further channels: not
    ``layer`` itself, not RGB, and of exactly its shape."""
    shape = tuple(layer_data(layer).shape)
    return [
        other
        for other in layers
        if other is not layer and not getattr(other, "rgb", False) and tuple(layer_data(other).shape) == shape
    ]


def combine_input(layer: Image, extra_layers: Sequence[Image] = (), typed_axes: str = "") -> ImageInput:
    """Build the :class:`ImageInput` for ``layer`` plus optional single-channel layers.

    ``layer`` is read by :func:`napari_unet._sources.image_source` (axes: ``typed_axes``, else the
    layer's metadata, RGB, 2D, else guessed). Extra channel layers go after ``layer`` along a
    new first axis ``C`` (axes ``"C" + layer axes``); nothing is stacked here (see
    :attr:`ImageInput.data`).

    Raises
    ------
    ValueError
        Axes that do not fit, data of more than 5 dimensions without axes, a first layer that
        already has a channel axis, or extra layers whose shape differs from the first one's.
    """
    src = image_source(layer, typed_axes, guess=True)
    axes, data = str(src.axes), src.image
    extras = tuple(e for e in extra_layers if e is not layer)
    if not extras:
        return ImageInput(layer, (data,), axes, axes, src.origin, src.note, src.channel_names, ())
    sizes = dict(zip(axes, data.shape))
    if "C" in sizes or sizes.get("S", 1) > 1:
        raise ValueError(
            f"layer {layer.name!r} already has a channel axis (axes {axes}); extra channel layers can only "
            "be added to a single-channel layer"
        )
    arrays = [data]
    for extra in extras:
        extra_data = layer_data(extra)
        if getattr(extra, "rgb", False) or tuple(extra_data.shape) != tuple(data.shape):
            raise ValueError(
                f"extra channel layer {extra.name!r} has shape {tuple(extra_data.shape)}"
                f"{' (RGB)' if getattr(extra, 'rgb', False) else ''}; it must be a single-channel layer of the "
                f"shape of layer {layer.name!r} {tuple(data.shape)}"
            )
        arrays.append(extra_data)
    return ImageInput(
        layer,
        tuple(arrays),
        "C" + axes,
        axes,
        src.origin,
        src.note,
        [single_channel_name(lay) for lay in (layer, *extras)],
        extras,
    )
