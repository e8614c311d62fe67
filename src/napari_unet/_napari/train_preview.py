"""The training preview: one Labels layer ``"<image> preview"`` over the previewed image, updated in place.

Every preview event of ``iter_train`` carries the current model's labels for the preview image;
:func:`show_preview` puts them in the same layer each time (found again by its metadata key
:data:`PREVIEW_KEY` when a new run starts), placed like the image (its scale and translate, from
:func:`~napari_unet._napari.result_layers.axis_transforms`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from napari.layers import Image, Labels

from .layer_inputs import unwrap
from .result_layers import axis_transforms

__all__ = ["PREVIEW_KEY", "is_preview_layer", "preview_transforms", "show_preview"]

#: Metadata key marking the preview Labels layer (value: the name of the image it previews).
PREVIEW_KEY = "napari_unet_training_preview"


def is_preview_layer(layer: Any, source_name: str | None = None) -> bool:
    """Whether ``layer`` is a preview layer (of the image named ``source_name``, when given)."""
    marker = (getattr(layer, "metadata", None) or {}).get(PREVIEW_KEY)
    return bool(marker) if source_name is None else marker == source_name


def preview_transforms(layer: Image, axes: str, ndim: int) -> tuple[list[float], list[float]]:
    """Scale and translate of ``layer`` (data axes ``axes``) for its preview (``axes`` without ``C``/``S``).

    Identity when they do not fit ``ndim`` dimensions.
    """
    out_axes = "".join(a for a in axes if a not in "CS")
    transforms = axis_transforms(layer, axes)
    if len(out_axes) != ndim or any(a not in transforms for a in out_axes):
        return [1.0] * ndim, [0.0] * ndim
    return [transforms[a][0] for a in out_axes], [transforms[a][1] for a in out_axes]


def show_preview(
    viewer: Any, labels: np.ndarray, source: Image, source_axes: str, previous: Labels | None = None
) -> Labels:
    """Show ``labels`` in the preview layer of ``source``, replacing its data; add it when there is none.

    Parameters
    ----------
    viewer : napari.viewer.Viewer
        The viewer.
    labels : numpy.ndarray
        The preview, with the axes of ``source_axes`` without ``C``/``S``.
    source : napari.layers.Image
        The previewed image.
    source_axes : str
        Axes of ``source``'s data.
    previous : napari.layers.Labels, optional
        The layer the last preview went to (reused when still in the viewer and fitting).

    Returns
    -------
    napari.layers.Labels
        The layer now holding ``labels``.
    """
    layer = previous
    in_viewer = layer is not None and any(unwrap(lay) is layer for lay in viewer.layers)
    if not in_viewer or layer.data.ndim != labels.ndim or not is_preview_layer(layer, source.name):
        layer = next(
            (
                unwrap(lay)
                for lay in viewer.layers
                if isinstance(lay, Labels) and is_preview_layer(lay, source.name) and lay.data.ndim == labels.ndim
            ),
            None,
        )
    scale, translate = preview_transforms(source, source_axes, labels.ndim)
    if layer is None:
        out_axes = "".join(a for a in source_axes if a not in "CS")
        return unwrap(
            viewer.add_labels(
                labels,
                name=f"{source.name} preview",
                scale=scale,
                translate=translate,
                metadata={PREVIEW_KEY: source.name, "axes": out_axes, "source": source.name},
            )
        )
    layer.data = labels
    layer.scale = scale
    layer.translate = translate
    return layer
