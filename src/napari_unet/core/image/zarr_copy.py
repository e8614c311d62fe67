"""Whole arrays to OME-Zarr, one chunk at a time: :func:`write_image`, :func:`write_labels_array`.

Both read their source chunk by chunk (numpy, memmap, dask or zarr arrays), so nothing is copied
whole, and reorder its axes into NGFF order (time, then channel or another axis, then Z, Y, X):
``ZCYX`` is written as ``CZYX``. Pyramids take every 2nd pixel in Y and X
(:mod:`~napari_unet.core.image.ngff`), for images too, so image and labels levels line up pixel for
pixel. zarr is imported on first use (``pip install "napari-unet[zarr]"``).
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from .ngff import (
    build_pyramid,
    chunk_regions,
    create_level,
    default_chunks,
    level_count,
    multiscales_metadata,
    ngff_order,
    ngff_version,
    require_zarr,
    set_ome_attrs,
)
from .zarr_write import create_labels

__all__ = ["ngff_blocks", "write_image", "write_labels_array"]


def _reorder(data: Any, axes: str) -> tuple[str, list[int], tuple[int, ...]]:
    """NGFF axes, the permutation from ``axes`` to them, and the reordered shape."""
    axes = str(axes).upper()
    if len(axes) != len(data.shape):
        raise ValueError(f"axes '{axes}' has {len(axes)} letters but the array has shape {tuple(data.shape)}")
    order = ngff_order(axes)
    perm = [axes.index(a) for a in order]
    return order, perm, tuple(int(data.shape[i]) for i in perm)


def ngff_blocks(
    data: Any, axes: str, chunks: Sequence[int] | None = None
) -> Iterator[tuple[tuple[slice, ...], np.ndarray]]:
    """``(region, block)`` for every chunk of ``data`` reordered into NGFF axes order.

    ``region`` is in NGFF order; ``block`` is the numpy data of that region, read from ``data``
    (in its own order) and transposed. ``chunks`` (NGFF order) default to
    :func:`~napari_unet.core.image.ngff.default_chunks`.
    """
    order, perm, shape = _reorder(data, axes)
    for region in chunk_regions(shape, chunks or default_chunks(shape, order)):
        source: list[slice] = [slice(None)] * len(perm)
        for j, i in enumerate(perm):
            source[i] = region[j]
        yield region, np.asarray(data[tuple(source)]).transpose(perm)


def write_image(
    path: str | os.PathLike,
    data: Any,
    *,
    axes: str,
    scale: Sequence[float] | None = None,
    units: Sequence[str | None] | None = None,
    chunks: Sequence[int] | None = None,
    name: str | None = None,
    levels: int | None = None,
    zarr_format: int = 3,
) -> pathlib.Path:
    """Write ``data`` as a new OME-Zarr image (level 0 + pyramid, ``multiscales`` metadata).

    Parameters
    ----------
    path : str or os.PathLike
        A folder that does not exist or is empty.
    data : array-like
        The image, one dimension per letter of ``axes``; read one chunk at a time.
    axes : str
        Its axes, e.g. ``ZCYX`` (written in NGFF order, ``CZYX``).
    scale, units : sequence, optional
        Physical pixel size and unit per axis of ``axes`` (channel axes' entries are ignored).
    chunks : sequence of int, optional
        In NGFF order; default one plane of at most 1024 x 1024 pixels.
    name : str, optional
        The ``multiscales`` name (default the folder's name without ``.zarr``).
    levels : int, optional
        Pyramid levels (default until the largest of Y and X is at most 256 px).
    zarr_format : {2, 3}
        3 (NGFF 0.5, default) or 2 (NGFF 0.4).

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    zarr = require_zarr()
    path = pathlib.Path(path)
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise FileExistsError(f"'{path}' exists and is not an empty folder")
    order, perm, shape = _reorder(data, axes)
    axes = str(axes).upper()
    scale = [1.0] * len(axes) if scale is None else [float(s) for s in scale]
    units = [None] * len(axes) if units is None else list(units)
    if len(scale) != len(axes) or len(units) != len(axes):
        raise ValueError(f"scale {scale} and units {units} need one entry per letter of axes '{axes}'")
    scale = [1.0 if a in "CS" else scale[i] for i, a in zip(perm, order)]
    units = [units[i] for i in perm]
    chunks = tuple(chunks) if chunks else default_chunks(shape, order)
    group = zarr.open_group(str(path), mode="w", zarr_format=zarr_format)
    level0 = create_level(group, "0", shape=shape, dtype=np.dtype(data.dtype), chunks=chunks, axes=order)
    for region, block in ngff_blocks(data, axes, chunks):
        level0[region] = block
    levels = level_count(shape, order) if levels is None else int(levels)
    build_pyramid(group, order, levels, chunks=chunks)
    title = name or path.name.removesuffix(".zarr").removesuffix(".ome")
    ms = multiscales_metadata(
        name=title, axes=order, units=units, scale=scale, levels=levels, version=ngff_version(zarr_format)
    )
    set_ome_attrs(group, {"multiscales": [ms]})
    return path


def write_labels_array(
    root: str | os.PathLike,
    name: str,
    labels: Any,
    *,
    axes: str,
    scale: Sequence[float] | None = None,
    units: Sequence[str | None] | None = None,
    provenance: Mapping[str, Any] | None = None,
    colors: Mapping[int, Sequence[int]] | None = None,
    chunks: Sequence[int] | None = None,
    overwrite: bool = False,
    levels: int | None = None,
    zarr_format: int | None = None,
) -> pathlib.Path:
    """Write a whole label array through :func:`~napari_unet.core.image.zarr_write.create_labels`.

    ``labels`` (numpy, dask, zarr...; booleans become uint8) is read one chunk at a time and
    reordered into NGFF axes order; ``scale`` and ``units`` follow ``axes``. The other parameters
    are :func:`~napari_unet.core.image.zarr_write.create_labels`'s. Returns the labels group
    written; on any error nothing is left (the writer is aborted).
    """
    order, perm, shape = _reorder(labels, axes)
    dtype = np.dtype(labels.dtype)
    dtype = np.dtype(np.uint8) if dtype.kind == "b" else dtype

    def pick(what: str, values: Sequence[Any] | None) -> list[Any] | None:
        if values is None:
            return None
        if len(values) != len(perm):
            raise ValueError(f"{what} {list(values)} has {len(values)} entries, expected {len(perm)} for axes '{axes}'")
        return [values[i] for i in perm]

    writer = create_labels(
        root,
        name,
        shape=shape,
        axes=order,
        dtype=dtype,
        chunks=chunks,
        scale=pick("scale", scale),
        units=pick("units", units),
        provenance=provenance,
        colors=colors,
        overwrite=overwrite,
        zarr_format=zarr_format,
    )
    with writer:
        for region, block in ngff_blocks(labels, axes, writer.chunks):
            writer.write(region, block)
        return writer.finish(levels=levels)
