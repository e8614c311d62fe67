"""napari writers for Labels layers: a TIFF, or OME-Zarr labels (``.zarr``), with axes, scale, units and provenance.

npe2 command ``napari-unet.write_labels`` (single-layer writer signature ``(path, data,
attributes)``). The file is written by :func:`napari_unet.core.image.io.write_labels`, atomically:
an ImageJ hyperstack (Fiji opens it calibrated) when the labels fit ImageJ, else a tifffile
"shaped" TIFF. napari-unet's reader opens it again as a Labels layer. ``napari-unet.write_labels_zarr``
writes ``.zarr`` paths as OME-Zarr labels (:func:`write_labels_zarr`, docs/big-data.md).
"""

from __future__ import annotations

import logging
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from napari_unet.core.image.io import write_labels
from napari_unet.core.image.provenance import complete_provenance

__all__ = ["default_axes", "labels_for_file", "write_labels_layer", "write_labels_zarr"]

logger = logging.getLogger(__name__)

_DEFAULT_AXES = {1: "X", 2: "YX", 3: "ZYX", 4: "TZYX", 5: "TZCYX"}
_AXES_LETTERS = set("TZCYXSQI")


def default_axes(ndim: int) -> str:
    """Axes assumed for a layer that records none: ``YX``, ``ZYX``, ``TZYX``, ``TZCYX``.

    Beyond 5 dimensions the leading ones are ``Q`` (unknown), e.g. ``QTZCYX``.
    """
    if ndim < 1:
        raise ValueError(f"labels need at least one dimension, got {ndim}")
    return _DEFAULT_AXES.get(ndim) or "Q" * (ndim - 5) + "TZCYX"


def _layer_axes(ndim: int, metadata: Mapping[str, Any], axis_labels: Sequence[str] | None) -> str:
    """Axes from ``metadata["axes"]``, else single-letter axis labels, else :func:`default_axes`."""
    axes = metadata.get("axes")
    if isinstance(axes, str) and len(axes) == ndim:
        return axes.upper()
    if axes is not None:
        logger.info("layer metadata axes %r do not fit %d dimensions; using other axes", axes, ndim)
    if axis_labels is not None and len(axis_labels) == ndim:
        letters = "".join(str(a) for a in axis_labels).upper()
        if len(letters) == ndim and set(letters) <= _AXES_LETTERS and len(set(letters)) == ndim:
            return letters
    return default_axes(ndim)


def _layer_units(ndim: int, layer_units: Sequence[Any] | None, metadata: Mapping[str, Any]) -> list[str | None]:
    """Per-axis units: the layer's own (napari pint units) where not pixels, else the metadata's."""
    meta_units = metadata.get("units")
    meta_units = list(meta_units) if isinstance(meta_units, (list, tuple)) and len(meta_units) == ndim else None
    out: list[str | None] = []
    for i in range(ndim):
        unit = None
        if layer_units is not None and len(layer_units) == ndim and layer_units[i] is not None:
            text = str(layer_units[i])
            unit = None if text in ("", "pixel", "pixels") else text
        if unit is None and meta_units is not None and isinstance(meta_units[i], str):
            unit = meta_units[i]
        out.append(unit)
    return out


def labels_for_file(data: Any) -> np.ndarray:
    """The labels as an array whose dtype a TIFF (ideally ImageJ) can hold.

    Booleans become ``uint8``; integer labels within 0..65535 become ``uint16`` (uint8 kept), so
    Fiji can open them; larger non-negative labels become ``uint32``; signed labels with
    negative values keep their dtype. Values never change.

    Parameters
    ----------
    data : array-like
        The Labels layer's data (numpy, dask, memmap, ...).

    Returns
    -------
    numpy.ndarray
        In native byte order.
    """
    labels = np.asarray(data)
    if labels.dtype == bool:
        return labels.astype(np.uint8)
    if labels.dtype.kind not in "iu":
        return labels.astype(labels.dtype.newbyteorder("="), copy=False)
    if labels.dtype.itemsize == 1 and labels.dtype.kind == "u":
        return labels
    low = int(labels.min()) if labels.size else 0
    high = int(labels.max()) if labels.size else 0
    if low < 0:
        return labels.astype(labels.dtype.newbyteorder("="), copy=False)
    target = (
        np.uint16 if high <= np.iinfo(np.uint16).max else np.uint32 if high <= np.iinfo(np.uint32).max else np.uint64
    )
    return labels.astype(target, copy=False)


def write_labels_layer(path: str, data: Any, meta: dict) -> list[str]:
    """Write one Labels layer to a TIFF (npe2 single-layer writer).

    Parameters
    ----------
    path : str
        Destination; ``.tif`` is appended when it does not end in ``.tif``/``.tiff``.
    data : array-like
        The layer's data, shape e.g. ``(Z, Y, X)``.
    meta : dict
        The layer's attributes as napari passes them: ``name``, ``scale``, ``units``,
        ``axis_labels`` and ``metadata``. Axes come from ``metadata["axes"]`` when it has one
        letter per dimension, else from single-letter ``axis_labels`` (``("z", "y", "x")``), else
        :func:`default_axes`. Units are the layer's own, else ``metadata["units"]``. The
        provenance is ``metadata["provenance"]`` completed to the one schema
        (:func:`~napari_unet.core.image.provenance.complete_provenance`) plus ``layer_name``.

    Returns
    -------
    list of str
        ``[path written]``.

    Raises
    ------
    ValueError
        If scale or units do not fit the data (from :func:`~napari_unet.core.image.io.write_labels`).
    """
    file = pathlib.Path(path)
    if not file.name.lower().endswith((".tif", ".tiff")):
        file = file.with_name(file.name + ".tif")
    labels = labels_for_file(data)
    metadata = dict(meta.get("metadata") or {})
    axes = _layer_axes(labels.ndim, metadata, meta.get("axis_labels"))
    scale = meta.get("scale")
    scale = [float(s) for s in scale] if scale is not None and len(scale) == labels.ndim else None
    units = _layer_units(labels.ndim, meta.get("units"), metadata)
    provenance = complete_provenance(metadata.get("provenance"), layer_name=str(meta.get("name", "")))
    written = write_labels(file, labels, axes=axes, scale=scale, units=units, provenance=provenance)
    logger.info("saved labels layer %r (%s, axes %s) to %s", meta.get("name"), labels.shape, axes, written)
    return [str(written)]


def write_labels_zarr(path: str, data: Any, meta: dict) -> list[str]:
    """Write one Labels layer as OME-Zarr labels (npe2 single-layer writer for ``.zarr``).

    ``path`` (``.zarr`` appended when missing) that does not exist becomes a new OME-Zarr (zarr v3,
    NGFF 0.5) whose root is the label image; an existing OME-Zarr image gets the layer as
    ``path/labels/<layer name>`` (replacing labels of that name: napari asked before saving over
    ``path``). Axes, scale, units and provenance as for :func:`write_labels_layer`; axes are
    reordered to NGFF order (``ZTYX`` → ``TZYX``). The data is read one chunk at a time, so a
    dask- or zarr-backed layer is never loaded whole.

    Returns
    -------
    list of str
        ``[labels group written]``.
    """
    from napari_unet.core.image.ngff import ome_attrs
    from napari_unet.core.image.zarr_copy import write_labels_array
    from napari_unet.core.image.zarr_write import open_ome_group

    root = pathlib.Path(path)
    if not root.name.lower().endswith(".zarr"):
        root = root.with_name(root.name + ".zarr")
    labels = labels_for_file(data) if isinstance(data, np.ndarray) else data  # lazy data keeps its dtype
    metadata = dict(meta.get("metadata") or {})
    axes = _layer_axes(labels.ndim, metadata, meta.get("axis_labels"))
    scale = meta.get("scale")
    scale = [float(s) for s in scale] if scale is not None and len(scale) == labels.ndim else None
    units = _layer_units(labels.ndim, meta.get("units"), metadata)
    name = str(meta.get("name") or "labels").replace("/", "_").lstrip(".") or "labels"
    provenance = complete_provenance(metadata.get("provenance"), layer_name=str(meta.get("name", "")))
    if root.exists():
        found = ome_attrs(open_ome_group(root))
        if "image-label" in found and "napari_unet" in dict(open_ome_group(root).attrs):
            pass  # our own labels file: replaced below as a whole
        elif "multiscales" not in found or "image-label" in found:
            raise ValueError(f"'{root}' exists and is not an OME-Zarr image to add labels to; choose a new name")
        else:
            written = write_labels_array(
                root, name, labels, axes=axes, scale=scale, units=units, provenance=provenance, overwrite=True
            )
            return [str(written)]
    from napari_unet.core.image.files import atomic_directory

    with atomic_directory(root, replace=True) as tmp:
        tmp.rmdir()  # create_labels makes the new OME-Zarr itself
        write_labels_array(tmp, name, labels, axes=axes, scale=scale, units=units, provenance=provenance)
    logger.info("saved labels layer %r (%s, axes %s) to %s", meta.get("name"), labels.shape, axes, root)
    return [str(root)]
