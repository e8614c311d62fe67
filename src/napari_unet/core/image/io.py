"""Read microscopy TIFFs (and zarr / OME-Zarr) with their axes and calibration; write label images with provenance.

Everything here is plain numpy + tifffile: no napari, no Qt, no torch. zarr and OME-Zarr inputs are
read by :mod:`.zarr_read` (lazily, as dask arrays), which :func:`read_image` hands them to.

* :func:`read_image` returns an :class:`ImageFile`: the (lazily memory-mapped where possible)
  array in the file's own axis order, its axes string, physical scale, units and channel names,
  all taken from the file's metadata (ImageJ hyperstack, OME-TIFF or tifffile "shaped" JSON),
  never from the file name.
* :func:`write_labels` writes a label image atomically, as a calibrated ImageJ hyperstack when
  ImageJ can represent it, else as a tifffile "shaped" TIFF; both record the provenance, which
  :func:`read_provenance` gives back.
"""

from __future__ import annotations

import json
import logging
import math
import os
import pathlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import tifffile

from .calibration import imagej_calibration, imagej_channel_names, norm_unit, ome_calibration, positive
from .files import atomic_write
from .provenance import jsonable, normalize_provenance
from .tiffcheck import magic_problem, series_problem

__all__ = ["ImageFile", "ImageReadError", "check_image_file", "read_image", "read_provenance", "write_labels"]

logger = logging.getLogger(__name__)

#: Axes ImageJ hyperstacks can hold, in the only order ImageJ accepts.
IMAGEJ_AXES = "TZCYXS"
_IMAGEJ_DTYPES = (np.dtype(np.uint8), np.dtype(np.uint16), np.dtype(np.float32))


class ImageReadError(ValueError):
    """A file exists but cannot be read as an image (the message names the file and the problem)."""


@dataclass
class ImageFile:
    """An image read from disk, with the metadata needed to interpret it.

    Attributes
    ----------
    data : numpy.ndarray or dask.array.Array
        Pixel data in the file's own axis order; a read-only :class:`numpy.memmap` when the file is
        uncompressed and contiguous. Byte order is the file's (ImageJ writes big-endian). For zarr
        and OME-Zarr inputs a lazy dask array over the zarr array (chunks = zarr chunks): index it,
        never ``np.asarray`` it whole.
    axes : str
        Uppercase tifffile axes letters, one per dimension of ``data``, e.g. ``"ZCYX"``, ``"YXS"``.
    scale : tuple of float
        Physical size per axis; 1.0 where unknown and for C/S; T holds the frame interval if known.
    units : tuple of str or None
        Unit per axis (``"micron"``, ``"sec"``, ...), None where unknown.
    channel_names : list of str or None
        One name per entry of the C axis (or S axis when there is no C), when the file has them.
    path : pathlib.Path
        The file read.
    metadata : dict
        Raw metadata for provenance: ``{"kind": series kind, "imagej": dict}``, ``{"kind": "ome",
        "ome_xml": str}``, ``{"kind": "shaped", "shaped": dict}`` or just ``{"kind": ...}``; zarr:
        ``{"kind": "ome-zarr", "ngff": "0.4"/"0.5", "level": n, "levels": [shapes], ...}`` or
        ``{"kind": "zarr", ...}`` (see :func:`~.zarr_read.read_zarr`).
    """

    data: Any
    axes: str
    scale: tuple[float, ...]
    units: tuple[str | None, ...]
    channel_names: list[str] | None
    path: pathlib.Path
    metadata: dict = field(default_factory=dict, repr=False)


def _load(path: pathlib.Path, series: tifffile.TiffPageSeries, shape: tuple[int, ...]) -> np.ndarray:
    """Memory-map the series when its data are uncompressed and contiguous, else read it."""
    nbytes = math.prod(shape) * series.dtype.itemsize
    if series.dataoffset is not None and series.dataoffset + nbytes <= path.stat().st_size:
        try:
            data = tifffile.memmap(path, mode="r", series=0)
            return data.reshape(shape)
        except (ValueError, OSError) as exc:
            logger.debug("cannot memory-map %s (%s); reading it into memory", path, exc)
    return series.asarray().reshape(shape)


def read_image(path: str | os.PathLike, *, level: int | None = None) -> ImageFile:
    """Read the first series of a TIFF with its axes, scale, units and channel names.

    Parameters
    ----------
    path : str or os.PathLike
        A TIFF file: ImageJ hyperstack, OME-TIFF, tifffile "shaped" TIFF or plain TIFF; or a zarr
        store (a ``.zarr`` folder, or a folder with zarr metadata): OME-Zarr (NGFF 0.4/0.5) or a
        plain zarr array, read lazily by :func:`~.zarr_read.read_zarr`.
    level : int, optional
        Resolution level of a multiscale OME-Zarr image (None or 0: full resolution). A TIFF
        has only level 0.

    Returns
    -------
    ImageFile
        ``data`` has the file's own axis order (e.g. ``ZCYX`` shape ``(45, 2, 130, 133)``).

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ImageReadError
        If the file exists but is not a readable TIFF (not a TIFF, truncated, corrupt, an axis
        of length 0: see :func:`~napari_unet.core.image.tiffcheck.series_problem`), or not a
        readable zarr / OME-Zarr image.
    ValueError
        ``level`` is not a level of the image (the message lists them).
    napari_unet.core.image.zarr_read.MissingExtraError
        A zarr input without zarr/dask installed (the message names ``pip install "napari-unet[zarr]"``).
    """
    from .zarr_read import is_zarr_path, read_zarr  # imports zarr itself only when reading one

    if is_zarr_path(path):
        return read_zarr(path, level=level)
    if level is not None and (isinstance(level, bool) or level != 0):
        raise ValueError(
            f"level={level!r}: '{path}' is not a multiscale image (a TIFF has one level, 0); "
            "level= applies to OME-Zarr inputs"
        )
    return _read(path, pixels=True)


def check_image_file(path: str | os.PathLike) -> None:
    """Raise what :func:`read_image` would raise for ``path``, reading no pixel data (header and
    metadata only); the napari reader accepts exactly the files that pass."""
    from .zarr_read import is_zarr_path, read_zarr

    if is_zarr_path(path):
        read_zarr(path, pixels=False)
    else:
        _read(path, pixels=False)


def _not_a_file(path: pathlib.Path) -> ImageReadError:
    if path.is_dir():
        return ImageReadError(
            f"cannot read '{path}' as an image: it is a folder without zarr metadata "
            "(zarr.json, .zgroup or .zarray), not an image file"
        )
    return ImageReadError(f"cannot read '{path}' as an image: it is not a file")


def _read(path: str | os.PathLike, *, pixels: bool) -> ImageFile:
    path = pathlib.Path(path)
    if not path.exists():
        raise FileNotFoundError(f"image file not found: '{path}'")
    if not path.is_file():
        raise _not_a_file(path)
    try:
        problem = magic_problem(path)
        if problem:
            raise ValueError(problem)
        with tifffile.TiffFile(path) as tif:
            problem = series_problem(tif, path)
            if problem:
                raise ValueError(problem)
            series = tif.series[0]
            shape, axes = tuple(series.shape), series.axes.upper()
            metadata: dict[str, Any] = {"kind": series.kind}
            sizes: dict[str, float] = {}  # by axis letter
            units: dict[str, str | None] = {}
            names: list[str] | None = None
            scale_list: list[Any] = []  # per dimension, from a shaped description
            unit_list: list[Any] = []
            if series.kind == "imagej" and tif.imagej_metadata is not None:
                ij = metadata["imagej"] = tif.imagej_metadata
                sizes, units = imagej_calibration(tif, axes, ij)
                names = imagej_channel_names(ij, shape, axes)
            elif series.kind == "ome" and tif.ome_metadata:
                metadata["ome_xml"] = tif.ome_metadata
                sizes, units, names = ome_calibration(tif.ome_metadata)
            elif series.kind == "shaped" and tif.shaped_metadata:
                meta = metadata["shaped"] = dict(tif.shaped_metadata[0])
                full_shape, full_axes = tuple(series.get_shape(False)), series.get_axes(False).upper()
                if list(meta.get("shape", full_shape)) not in (list(shape), list(full_shape)):
                    raise ValueError(f"data have shape {shape} but the header promises {meta['shape']}")
                if len(str(meta.get("axes", ""))) == len(full_axes) == len(full_shape):
                    shape, axes = full_shape, full_axes  # keep the length-1 axes write_labels stored
                scale_list = list(meta.get("scale") or [])
                unit_list = list(meta.get("units") or [])
            data = _load(path, series, shape) if pixels else None
    except MemoryError:
        raise
    except Exception as exc:  # tifffile raises many kinds (struct.error, KeyError, ...) on corrupt files
        raise ImageReadError(f"cannot read '{path}' as a TIFF image: {exc}") from exc

    if len(scale_list) != len(axes):
        scale_list = [sizes.get(a) for a in axes]
    if len(unit_list) != len(axes):
        unit_list = [units.get(a) if a in sizes else None for a in axes]
    scale = tuple(1.0 if a in "CS" or not positive(s) else float(s) for a, s in zip(axes, scale_list))
    unit_tuple = tuple(None if a in "CS" else norm_unit(u) for a, u in zip(axes, unit_list))
    channel_axis = "C" if "C" in axes else "S"
    if names is not None and (channel_axis not in axes or len(names) != shape[axes.index(channel_axis)]):
        names = None
    logger.debug("read %s: shape %s axes %s scale %s units %s", path, shape, axes, scale, unit_tuple)
    return ImageFile(
        data=data, axes=axes, scale=scale, units=unit_tuple, channel_names=names, path=path, metadata=metadata
    )


def _imagej_compatible(labels: np.ndarray, axes: str) -> bool:
    if labels.dtype not in _IMAGEJ_DTYPES or len(set(axes)) != len(axes) or not set(axes) <= set(IMAGEJ_AXES):
        return False
    order = [IMAGEJ_AXES.index(a) for a in axes]
    if order != sorted(order) or not (axes.endswith("YX") or axes.endswith("YXS")):
        return False
    return "S" not in axes or (labels.dtype == np.uint8 and labels.shape[-1] in (3, 4))


def _ascii_unit(unit: str) -> str:
    """ImageJ's own escaping of non-ASCII characters in the description ("µm" -> "\\u00B5m")."""
    return "".join(c if ord(c) < 128 else f"\\u{ord(c):04X}" for c in unit)


def write_labels(
    path: str | os.PathLike,
    labels: np.ndarray,
    *,
    axes: str,
    scale: Sequence[float] | None = None,
    units: Sequence[str | None] | None = None,
    provenance: Mapping | None = None,
) -> pathlib.Path:
    """Write a label image atomically, recording axes, calibration and provenance.

    uint8/uint16/float32 labels whose axes are an ordered subset of ``TZCYXS`` become an ImageJ
    hyperstack (X/Y resolution, Z ``spacing``, T ``finterval``, ``unit``, provenance as JSON in the
    ``Info`` property), so Fiji opens them calibrated. Anything else (uint32/int64 labels, axes
    such as ``QYX``) becomes a tifffile "shaped" TIFF with ``axes``, ``scale``, ``units`` and
    ``provenance`` in its JSON description.

    Parameters
    ----------
    path : str or os.PathLike
        Destination file (``.tif``).
    labels : numpy.ndarray
        Label image, one dimension per letter of ``axes``.
    axes : str
        Axes letters of ``labels``, e.g. ``"ZYX"``.
    scale, units : sequence, optional
        Physical size and unit per axis (as returned by :func:`read_image`).
    provenance : Mapping, optional
        JSON-serialisable description of how the labels were made (model, options, source image).

    Returns
    -------
    pathlib.Path
        The path written.

    Raises
    ------
    ValueError
        If ``axes``, ``scale`` or ``units`` do not have one entry per dimension of ``labels``.
    """
    labels = np.asarray(labels)
    axes = axes.upper()
    if len(axes) != labels.ndim:
        raise ValueError(
            f"axes '{axes}' has {len(axes)} letters but labels have {labels.ndim} dimensions (shape {labels.shape})"
        )
    scale_list = [1.0] * labels.ndim if scale is None else [float(s) for s in scale]
    unit_list = [None] * labels.ndim if units is None else [u if u is None else str(u) for u in units]
    for name, seq in (("scale", scale_list), ("units", unit_list)):
        if len(seq) != labels.ndim:
            raise ValueError(f"{name} {seq} has {len(seq)} entries, expected {labels.ndim} for axes '{axes}'")
    if not all(positive(s) for s in scale_list):
        raise ValueError(f"scale {scale_list} must be positive and finite for every axis of '{axes}'")
    prov = jsonable(dict(provenance or {}))
    path = pathlib.Path(path)
    with atomic_write(path) as tmp:
        if _imagej_compatible(labels, axes):
            cal = dict(zip(axes, zip(scale_list, unit_list)))
            meta: dict[str, Any] = {"axes": axes}
            if "Z" in cal:
                meta["spacing"] = cal["Z"][0]
            if "T" in cal:
                meta["finterval"] = cal["T"][0]
                if cal["T"][1] and norm_unit(cal["T"][1]) != "sec":
                    meta["tunit"] = _ascii_unit(cal["T"][1])
            spatial = {a: cal[a][1] for a in "XYZ" if a in cal}
            if spatial.get("X"):
                meta["unit"] = _ascii_unit(spatial["X"])
                for a in "YZ":
                    if spatial.get(a) and spatial[a] != spatial["X"]:
                        meta[f"{a.lower()}unit"] = _ascii_unit(spatial[a])
            if prov:
                meta["Info"] = json.dumps({"provenance": prov}, indent=1)
            tifffile.imwrite(
                tmp, labels, imagej=True, ome=False, metadata=meta, resolution=(1.0 / cal["X"][0], 1.0 / cal["Y"][0])
            )
        else:
            tifffile.imwrite(
                tmp,
                labels,
                ome=False,
                photometric="minisblack",
                metadata={"axes": axes, "scale": scale_list, "units": unit_list, "provenance": prov},
            )
    logger.info("wrote labels %s %s (%s) to %s", labels.shape, labels.dtype, axes, path)
    return path


def read_provenance(path: str | os.PathLike) -> dict | None:
    """Return the provenance :func:`write_labels` stored in ``path``, or None if there is none.

    Parameters
    ----------
    path : str or os.PathLike
        A TIFF written by :func:`write_labels` (ImageJ ``Info`` JSON or shaped JSON description),
        or OME-Zarr labels written by :mod:`~napari_unet.core.image.zarr_write` (e.g.
        ``IMAGE.zarr/labels/<name>``).

    Returns
    -------
    dict or None
        The provenance mapping; None when the file records none (or was not written by us).
        Records written before the one schema (:mod:`~napari_unet.core.image.provenance`) are
        read with their old keys also under the new names.
    """
    from .zarr_read import is_zarr_path

    if is_zarr_path(path):
        from .ngff import read_zarr_provenance

        return read_zarr_provenance(path)
    meta = read_image(path).metadata
    if "shaped" in meta:
        prov = meta["shaped"].get("provenance")
        return normalize_provenance(prov) if isinstance(prov, Mapping) else None
    info = (meta.get("imagej") or {}).get("Info")
    if isinstance(info, str) and info.lstrip().startswith("{"):
        try:
            prov = json.loads(info).get("provenance")
        except (ValueError, AttributeError):
            return None
        return normalize_provenance(prov) if isinstance(prov, Mapping) else None
    return None
