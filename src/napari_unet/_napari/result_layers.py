"""Result layers: labels or probabilities added to the viewer so that they overlay their image.

:func:`show_result` gives the result the image's scale, translate, units and axis labels for
the axes it keeps, and metadata ``{"axes", "source", "provenance"}`` (what napari-unet's writer
stores in the TIFF). Running again on the same image replaces the data of the earlier result
layer instead of piling up layers; a layer that napari-unet did not make is never touched.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from typing import Any

import napari.viewer
import numpy as np
from napari.layers import Image, Labels, Layer, Tracks

from .layer_inputs import unwrap

__all__ = ["axis_transforms", "is_result_layer", "result_layer_name", "show_result", "show_tracks"]

log = logging.getLogger(__name__)

_NO_TRANSFORM = (1.0, 0.0, None, None)


def axis_transforms(layer: Layer, layer_axes: str) -> dict[str, tuple[float, float, Any, str | None]]:
    """``{axis: (scale, translate, unit, axis label)}`` of ``layer``'s world axes, by axes letter.

    The axis label is None when the layer has napari's default labels (``"-2"``, ``"-1"``...),
    which only make sense for the layer's own number of dimensions. An RGB layer's samples
    axis (last letter of ``layer_axes``) has no world axis.
    """
    dims = layer_axes[:-1] if getattr(layer, "rgb", False) else layer_axes
    scale = list(layer.scale)
    translate = list(layer.translate)
    units = list(getattr(layer, "units", None) or [None] * len(scale))
    labels: list[str | None] = list(getattr(layer, "axis_labels", None) or [None] * len(scale))
    if labels == [str(i) for i in range(-len(labels), 0)]:
        labels = [None] * len(labels)
    if len(dims) != len(scale):
        log.warning(
            "layer %r: %d axes (%s) but %d scale entries; result left uncalibrated",
            layer.name,
            len(dims),
            dims,
            len(scale),
        )
        return {}
    return {a: (float(s), float(t), u, lab) for a, s, t, u, lab in zip(dims, scale, translate, units, labels)}


def is_result_layer(layer: Layer) -> bool:
    """Whether ``layer`` was made by napari-unet (its metadata carries our provenance)."""
    prov = (layer.metadata or {}).get("provenance")
    return isinstance(prov, dict) and "napari_unet_version" in prov and "source" in layer.metadata


def result_layer_name(image_name: str, probabilities: bool = False) -> str:
    """``"<image> labels"``, or ``"<image> probabilities"``."""
    return f"{image_name} {'probabilities' if probabilities else 'labels'}"


def _calibration(image: Layer, image_axes: str, axes: str, probabilities: bool) -> dict[str, Any]:
    """scale, translate and (when all known) units and axis labels for a result with ``axes``."""
    transforms = axis_transforms(image, image_axes)
    per_axis = [transforms.get(a, _NO_TRANSFORM) for a in axes]
    if probabilities:
        per_axis[0] = (1.0, 0.0, None, "class")
    scale, translate, units, axis_labels = (list(v) for v in zip(*per_axis))
    kwargs: dict[str, Any] = {"scale": scale, "translate": translate}
    if all(u is not None for u in units[1 if probabilities else 0 :]):
        kwargs["units"] = [u if u is not None else "pixel" for u in units]
    if all(lab is not None for lab in axis_labels):
        kwargs["axis_labels"] = axis_labels
    return kwargs


def _earlier_result(viewer: napari.viewer.Viewer, kind: type, name: str, source: str) -> Layer | None:
    """Our earlier result: same type, same source, and the name napari gave it (a layer of that
    name that is not ours makes napari append ``" [1]"`` to ours)."""
    same_name = re.compile(re.escape(name) + r"( \[\d+\])?")
    for layer in viewer.layers:
        if (
            isinstance(layer, kind)
            and same_name.fullmatch(layer.name)
            and (layer.metadata or {}).get("source") == source
            and is_result_layer(layer)
        ):
            return unwrap(layer)
    return None


def show_result(
    viewer: napari.viewer.Viewer,
    result: Any,
    *,
    image: Layer,
    image_axes: str,
    out_axes: str,
    provenance: Mapping[str, Any],
    probabilities: bool = False,
    class_names: Sequence[str] = (),
) -> Layer:
    """Add ``result`` as a layer over ``image``, or replace the data of our earlier result.

    Parameters
    ----------
    viewer : napari.viewer.Viewer
        The viewer.
    result : array-like or list of them
        Labels with axes ``out_axes``, or probabilities ``(n_classes, *out_axes)``: numpy, or a dask or
        zarr array (results too large for memory), which the layer reads plane by plane, never whole;
        or a list of such arrays, full resolution first (a multiscale layer: a pyramid of labels,
        of which napari reads only the chunks it shows).
    image : napari.layers.Layer
        The segmented layer: the result takes its calibration and name.
    image_axes : str
        Axes of ``image``'s data.
    out_axes : str
        Axes of the labels (the input's axes without its channel axis).
    provenance : mapping
        How the result was made; stored as ``metadata["provenance"]``.
    probabilities : bool
        ``result`` holds probabilities: an Image layer (magma, 0–1) with the classes first.
    class_names : sequence of str
        Names of the classes (``metadata["channel_names"]`` of a probabilities layer).

    Returns
    -------
    napari.layers.Layer
        The Labels (or Image) layer now holding ``result``.
    """
    kind = Image if probabilities else Labels
    name = result_layer_name(image.name, probabilities)
    axes = "C" + out_axes if probabilities else out_axes
    kwargs = _calibration(image, image_axes, axes, probabilities)
    metadata: dict[str, Any] = {"axes": axes, "source": image.name, "provenance": dict(provenance)}
    if probabilities and class_names:
        metadata["channel_names"] = list(class_names)
    existing = _earlier_result(viewer, kind, name, image.name)
    multiscale = isinstance(result, (list, tuple))
    if multiscale:
        kwargs["multiscale"] = True
    if existing is not None and not multiscale and not existing.multiscale and existing.data.ndim == result.ndim:
        existing.data = result
        for key, value in kwargs.items():
            setattr(existing, key, value)
        existing.metadata = metadata
        if probabilities:
            existing.contrast_limits = (0.0, 1.0)
        log.info("replaced the data of layer %r", name)
        return existing
    index = None
    if existing is not None:
        index = list(viewer.layers).index(existing)
        viewer.layers.remove(existing)
    if probabilities:
        target = viewer.add_image(
            result, name=name, metadata=metadata, colormap="magma", contrast_limits=(0.0, 1.0), **kwargs
        )
    else:
        target = viewer.add_labels(result, name=name, metadata=metadata, **kwargs)
    target = unwrap(target)
    if index is not None:
        viewer.layers.move(list(viewer.layers).index(target), index)
    return target


def show_tracks(
    viewer: napari.viewer.Viewer,
    tracks: np.ndarray | None,
    *,
    image: Layer,
    image_axes: str,
    out_axes: str,
    provenance: Mapping[str, Any],
) -> Tracks | None:
    """Add napari Tracks data of labels with ``out_axes`` over ``image`` (or replace our earlier one).

    ``tracks`` has rows ``track_id, t, [z,] y, x``
    (:func:`~napari_unet.core.labels.tracking.tracks_from_labels`); the layer ``"<image> tracks"``
    gets the scale and translate of those axes, so it overlays the labels layer. Nothing is added
    (None, and an earlier tracks layer of ours is removed) when ``tracks`` is None or has no rows, or when the
    labels' first axis is not ``T`` (napari's Tracks layer puts time first, so it would not line
    up with the labels).
    """
    name = f"{image.name} tracks"
    existing = _earlier_result(viewer, Tracks, name, image.name)
    if existing is not None:
        viewer.layers.remove(existing)
    if tracks is None or not len(tracks) or not out_axes.startswith("T") or len(out_axes) not in (3, 4):
        log.info("no tracks layer for %r (axes %s)", image.name, out_axes)
        return None
    kwargs = _calibration(image, image_axes, out_axes, probabilities=False)
    metadata = {"axes": out_axes, "source": image.name, "provenance": dict(provenance)}
    layer = viewer.add_tracks(tracks, name=name, metadata=metadata, tail_length=10, **kwargs)
    return unwrap(layer)
