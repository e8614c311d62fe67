"""The Train panel's data: the chosen (Image, Labels) rows, or two folders, as checked training pairs.

:func:`pairs_from_layers` reads each row's image with :func:`napari_unet._sources.image_source`,
checks it for the chosen network with :func:`~napari_unet.core.image.layout.plan_layout` (2D: the
planes of a stack are samples; 3D: the image needs a ``Z`` axis and every ``ZYX`` volume is a sample)
and checks that its labels have the image's shape without channels, with messages that name both
layers and their shapes. The pairs handed to the core carry the layer's data and axes
(:class:`LayerData`), never the layer itself, so the worker thread does not touch layers.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from napari.layers import Image

from .._sources import ImageSource, image_source
from ..core.image.layout import plan_layout
from ..core.training.data import pairs_from_folders
from .layer_inputs import layer_data

__all__ = [
    "LayerData",
    "channel_count",
    "image_for_network",
    "pairs_from_folder_values",
    "pairs_from_layers",
    "path_or_none",
]


def path_or_none(value: Any) -> pathlib.Path | None:
    """A FileEdit value as a path, or None when blank."""
    if value is None:
        return None
    text = os.fspath(value).strip()
    if text in ("", "."):
        return None
    return pathlib.Path(text).expanduser()


@dataclass(frozen=True)
class LayerData:
    """An image layer's data with its axes, handed to the core in place of the layer.

    Duck-typed like a napari layer (``data``, ``name``, ``metadata``) so the core reads the
    axes from ``metadata["axes"]`` and names it ``layer '<name>'`` in its messages, without
    the worker thread touching the layer itself.
    """

    data: Any
    name: str
    metadata: dict[str, Any]


def channel_count(shape: Sequence[int], axes: str) -> int:
    """Channels the core feeds for an image (all of ``C``; RGB ``S`` becomes one gray channel)."""
    sizes = dict(zip(axes, shape))
    return int(sizes["C"]) if sizes.get("C", 1) > 1 else 1


def image_for_network(layer: Any, ndim: int) -> ImageSource:
    """``layer``'s data and axes as a network of ``ndim`` dimensions reads them.

    The axes come from :func:`~napari_unet._sources.image_source` (recorded, RGB, ``YX``, else
    guessed). For a 3D network a 3-dimensional layer whose axes were only *guessed* as ``CYX``
    (a first axis of at most 4) is read as ``ZYX``: a thin stack, since a 3D network needs a Z axis.

    Raises
    ------
    ValueError
        For a 3D network, an image without a ``Z`` axis, naming the layer, its axes and shape.
    """
    src = image_source(layer, guess=True)
    axes = str(src.axes)
    shape = tuple(int(n) for n in src.image.shape)
    if ndim == 3 and src.origin == "guessed" and axes == "CYX":
        src = dataclasses.replace(src, axes="ZYX")
    elif ndim == 3 and "Z" not in axes:
        raise ValueError(
            f"Network is 3D but image layer {layer.name!r} has no Z axis (axes {axes}, shape {shape}): "
            "choose Network 2D, or a Z-stack"
        )
    return src


def pairs_from_layers(
    layer_pairs: Sequence[tuple[Image | None, Any]], ndim: int = 2, patch_size: int = 0
) -> tuple[list[tuple[Any, Any]], Image | None, str, list[str]]:
    """Training pairs from the rows, checked for a network of ``ndim`` dimensions.

    Parameters
    ----------
    layer_pairs : sequence of (Image layer or None, Labels layer or None)
        The chosen rows.
    ndim : int
        2 or 3: the network's dimensionality.
    patch_size : int
        The patch edge; for a 3D network a stack with fewer planes than this gets a note.

    Returns
    -------
    pairs : list of (LayerData, labels array)
    first_image : napari.layers.Image or None
        The first row's image (the one previewed).
    description : str
        ``layers 'a', 'b'``: recorded in the model file.
    notes : list of str
        What the user should know before training (e.g. patches padded along Z).

    Raises
    ------
    ValueError
        A row without a layer, an image the network cannot read, labels of the wrong shape.
    """
    pairs: list[tuple[Any, Any]] = []
    notes: list[str] = []
    n_channels: int | None = None
    for k, (image, labels) in enumerate(layer_pairs):
        if image is None or labels is None:
            what = "an Image layer" if image is None else "a Labels layer"
            raise ValueError(f"pair {k + 1} has no {what}: open or choose one (or remove the pair)")
        src = image_for_network(image, ndim)
        axes, data = str(src.axes), src.image
        if n_channels is None:
            n_channels = channel_count(data.shape, axes)
        layout = plan_layout(data.shape, axes, model_channels=n_channels, model_ndim=ndim, image_name=src.image_name)
        lab = layer_data(labels)
        if tuple(lab.shape) != layout.out_shape:
            raise ValueError(
                f"labels layer {labels.name!r} has shape {tuple(lab.shape)} but image layer {image.name!r} "
                f"gives {layout.out_shape} (image axes {layout.axes}, labels axes {layout.out_axes})"
            )
        depth_z = layout.spatial_shape[0]
        if ndim == 3 and depth_z < patch_size:
            notes.append(
                f"'{image.name}' has {depth_z} planes along Z, fewer than the patch size {patch_size}: "
                "its patches are mirror-padded along Z"
            )
        metadata: dict[str, Any] = {"axes": axes}
        if src.channel_names is not None:
            metadata["channel_names"] = list(src.channel_names)
        pairs.append((LayerData(data, image.name, metadata), lab))
    if not pairs:
        raise ValueError("no training pairs: add an Image and a Labels layer")
    names = [p[0].name for p in pairs]
    description = "layers " + ", ".join(repr(n) for n in names[:5]) + (" …" if len(names) > 5 else "")
    return pairs, layer_pairs[0][0], description, notes


def pairs_from_folder_values(images_dir: Any, masks_dir: Any) -> tuple[list[tuple[Any, Any]], str]:
    """(image path, mask path) pairs of the two folder controls' values, and a description."""
    images = path_or_none(images_dir)
    masks = path_or_none(masks_dir)
    if images is None or masks is None:
        raise ValueError("choose the images folder and the masks folder")
    pairs = pairs_from_folders(images, masks)
    return [(img, mask) for img, mask in pairs], f"{images} ({len(pairs)} images, masks {masks})"
