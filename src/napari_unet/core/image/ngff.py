"""OME-NGFF pieces shared by the OME-Zarr writers (:mod:`~napari_unet.core.image.zarr_write`).

- :func:`require_zarr`: zarr, imported on first use, or an error naming the extra to install;
- axes: :func:`ngff_order` (time, then one channel or other axis, then Z, Y, X, as NGFF asks),
  :func:`axes_metadata` (names, types, NGFF unit names);
- :func:`multiscales_metadata`, :func:`set_ome_attrs` / :func:`ome_attrs`: NGFF 0.4 (zarr v2,
  top-level attributes, ``version`` in each entry) or 0.5 (zarr v3, everything under ``"ome"``);
- chunks and pyramids: :func:`default_chunks`, :func:`chunk_regions`, :func:`check_region`,
  :func:`level_count`, :func:`create_level`, :func:`downsample_level`. Levels are made by taking
  every 2nd pixel in Y and X (no interpolation, which NGFF asks for labels; other axes are kept),
  so pixel ``i`` of level ``k`` is pixel ``i * 2**k`` of level 0 and a scale transform alone places
  it: no translation is needed;
- groups: :func:`open_ome_group`, :func:`labels_names` (a ``labels`` list), :func:`read_zarr_provenance`;
  the checks of :func:`~napari_unet.core.image.zarr_write.create_labels`' options.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import logging
import math
import os
import pathlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from .calibration import norm_unit, positive
from .provenance import normalize_provenance

logger = logging.getLogger(__name__)

#: What to install when zarr is missing.
ZARR_HINT = 'pip install "napari-unet[zarr]" (Python >= 3.11)'
#: Chunk edge in Y and X of new arrays (other axes: 1).
CHUNK_EDGE = 1024
#: Pyramid levels are added until the largest of Y and X is at most this.
SMALLEST_LEVEL = 256
#: Letter → (NGFF axis name, type); other letters become a custom axis named by the letter.
_AXES = {"T": ("t", "time"), "C": ("c", "channel"), "S": ("c", "channel")}
_AXES.update({a: (a.lower(), "space") for a in "ZYX"})
_UNITS = {
    "space": {
        "micron": "micrometer",
        "nm": "nanometer",
        "mm": "millimeter",
        "cm": "centimeter",
        "m": "meter",
        "pm": "picometer",
        "å": "angstrom",
    },
    "time": {"sec": "second", "ms": "millisecond", "us": "microsecond", "ns": "nanosecond", "min": "minute"},
}
_KNOWN = {
    "space": {"angstrom", "picometer", "nanometer", "micrometer", "millimeter", "centimeter", "meter", "kilometer"},
    "time": {"nanosecond", "microsecond", "millisecond", "second", "minute", "hour", "day"},
}
_UNITS["time"].update({"h": "hour", "hr": "hour", "d": "day"})


def require_zarr() -> Any:
    """The ``zarr`` module (zarr-python 3), or ImportError naming the extra to install."""
    try:
        import zarr
    except ImportError as err:
        raise ImportError(f"OME-Zarr needs the zarr package, which is not installed: {ZARR_HINT}") from err
    if int(zarr.__version__.split(".")[0]) < 3:
        raise ImportError(f"OME-Zarr needs zarr >= 3, found zarr {zarr.__version__}: {ZARR_HINT}")
    return zarr


def ngff_order(axes: str) -> str:
    """``axes`` in the order NGFF asks: ``T``, then one channel or other axis, then ``Z``, ``Y``, ``X``.

    Raises
    ------
    ValueError
        If a letter repeats, ``Y`` or ``X`` is missing, or there is more than one axis besides T, Z, Y
        and X (NGFF allows one channel or custom axis).
    """
    axes = axes.upper()
    if len(set(axes)) != len(axes):
        raise ValueError(f"axes '{axes}' repeat a letter")
    if "Y" not in axes or "X" not in axes:
        raise ValueError(f"axes '{axes}' have no Y and X axis, which OME-Zarr needs")
    others = [a for a in axes if a not in "TZYX"]
    if len(others) > 1:
        raise ValueError(
            f"OME-Zarr allows one channel or other axis besides T, Z, Y, X; axes '{axes}' have {len(others)}: "
            f"{''.join(others)}"
        )
    return ("T" if "T" in axes else "") + "".join(others) + "".join(a for a in "ZYX" if a in axes)


def ngff_unit(unit: str | None, kind: str | None) -> str | None:
    """The NGFF (UDUNITS-2) name of ``unit`` for a ``space`` or ``time`` axis, else None."""
    name = norm_unit(unit)
    if name is None or kind not in _UNITS:
        return None
    name = _UNITS[kind].get(name.lower(), name.lower())
    if name not in _KNOWN[kind]:
        logger.info("unit %r is not an NGFF %s unit; not recorded", unit, kind)
        return None
    return name


def axes_metadata(axes: str, units: Sequence[str | None] | None = None) -> list[dict[str, str]]:
    """NGFF ``axes`` entries: ``{"name", "type", "unit"}`` (type and unit where known)."""
    units = list(units) if units is not None else [None] * len(axes)
    out = []
    for letter, unit in zip(axes.upper(), units):
        name, kind = _AXES.get(letter, (letter.lower(), None))
        entry = {"name": name}
        if kind is not None:
            entry["type"] = kind
        ngff = ngff_unit(unit, kind)
        if ngff is not None:
            entry["unit"] = ngff
        out.append(entry)
    return out


def level_scales(axes: str, scale: Sequence[float], levels: int) -> list[list[float]]:
    """Physical pixel size of each level: Y and X doubled per level, other axes kept."""
    return [[float(s) * (2**k if a in "YX" else 1) for a, s in zip(axes, scale)] for k in range(levels)]


def multiscales_metadata(
    *, name: str, axes: str, units: Sequence[str | None] | None, scale: Sequence[float], levels: int, version: str
) -> dict[str, Any]:
    """One NGFF ``multiscales`` entry for levels ``"0"`` ... ``str(levels - 1)``.

    ``version`` ``"0.4"`` puts ``"version"`` in the entry; ``"0.5"`` leaves it to the ``"ome"`` mapping.
    """
    entry: dict[str, Any] = {"version": version} if version == "0.4" else {}
    entry["name"] = name
    entry["axes"] = axes_metadata(axes, units)
    entry["datasets"] = [
        {"path": str(k), "coordinateTransformations": [{"type": "scale", "scale": s}]}
        for k, s in enumerate(level_scales(axes, scale, levels))
    ]
    return entry


def ngff_version(zarr_format: int) -> str:
    """``"0.4"`` for a zarr v2 container, ``"0.5"`` for zarr v3."""
    return "0.4" if zarr_format == 2 else "0.5"


def ome_attrs(group: Any) -> dict[str, Any]:
    """A group's NGFF attributes: the top level (zarr v2) or the ``"ome"`` mapping (zarr v3)."""
    attrs = dict(group.attrs)
    if group.metadata.zarr_format == 2:
        return attrs
    ome = attrs.get("ome")
    return dict(ome) if isinstance(ome, Mapping) else {}


def set_ome_attrs(group: Any, values: Mapping[str, Any]) -> None:
    """Store NGFF ``values`` on ``group``: at the top level (0.4), or under ``"ome"`` with ``"version": "0.5"``."""
    if group.metadata.zarr_format == 2:
        group.attrs.update(dict(values))
        return
    ome = ome_attrs(group)
    ome["version"] = "0.5"
    ome.update(values)
    group.attrs["ome"] = ome


def default_chunks(shape: Sequence[int], axes: str, edge: int = CHUNK_EDGE) -> tuple[int, ...]:
    """One plane of at most ``edge`` x ``edge`` pixels: Y and X ``min(n, edge)``, every other axis 1."""
    return tuple(max(1, min(n, edge)) if a in "YX" else 1 for a, n in zip(axes.upper(), shape))


def chunk_regions(shape: Sequence[int], chunks: Sequence[int]) -> Iterator[tuple[slice, ...]]:
    """Every chunk of an array as a region (tuple of slices), in C order."""
    ranges = [range(0, n, c) for n, c in zip(shape, chunks)]
    for starts in itertools.product(*ranges):
        yield tuple(slice(s, min(s + c, n)) for s, c, n in zip(starts, chunks, shape))


def check_region(region: Sequence[slice], shape: Sequence[int], chunks: Sequence[int]) -> tuple[slice, ...]:
    """``region`` with explicit bounds, checked to cover whole chunks.

    Raises
    ------
    ValueError
        If ``region`` is not one slice (step 1) per axis, or starts or ends inside a chunk (it
        may end at the array's edge).
    """
    if len(region) != len(shape) or not all(isinstance(s, slice) for s in region):
        raise ValueError(f"region {region!r} must be one slice per axis of the labels, shape {tuple(shape)}")
    out = []
    for s, n, c in zip(region, shape, chunks):
        start, stop, step = s.indices(n)
        if step != 1 or stop <= start or start % c or (stop % c and stop != n):
            raise ValueError(
                f"region {region!r} is not aligned to the chunks {tuple(chunks)} of the labels (shape "
                f"{tuple(shape)}): every slice must start at a multiple of its chunk and end at one or at the edge"
            )
        out.append(slice(start, stop))
    return tuple(out)


def level_count(shape: Sequence[int], axes: str, smallest: int = SMALLEST_LEVEL) -> int:
    """Levels needed until the largest of Y and X is at most ``smallest`` pixels (at least 1)."""
    y, x = shape[axes.index("Y")], shape[axes.index("X")]
    levels = 1
    while max(y, x) > smallest and min(y, x) > 1:
        y, x, levels = math.ceil(y / 2), math.ceil(x / 2), levels + 1
    return levels


def create_level(group: Any, path: str, *, shape: Sequence[int], dtype: Any, chunks: Sequence[int], axes: str) -> Any:
    """An empty array (fill 0) in ``group``: ``"/"``-separated chunk keys (NGFF 0.4 asks for them on zarr
    v2) and, on zarr v3, the NGFF axis names as ``dimension_names`` (0.5 asks for them)."""
    kwargs: dict[str, Any] = {}
    if group.metadata.zarr_format == 2:
        kwargs["chunk_key_encoding"] = {"name": "v2", "separator": "/"}
    else:
        kwargs["dimension_names"] = [entry["name"] for entry in axes_metadata(axes)]
    chunks = tuple(min(c, n) if n else 1 for c, n in zip(chunks, shape))
    return group.create_array(path, shape=tuple(shape), dtype=dtype, chunks=chunks, fill_value=0, **kwargs)


def downsample_level(source: Any, target: Any, axes: str, threads: int | None = None) -> None:
    """``target = source[..., ::2, ::2]`` along Y and X, one chunk of ``target`` at a time.

    Each step reads at most 2 x 2 chunks' worth of ``source``; whole levels are never held.
    Chunks are written by a few threads (each chunk by one, so the writes never overlap).
    """
    yi, xi = axes.index("Y"), axes.index("X")

    def one(region: tuple[slice, ...]) -> None:
        wide = list(region)
        for i in (yi, xi):
            wide[i] = slice(region[i].start * 2, min(region[i].stop * 2, source.shape[i]))
        block = np.asarray(source[tuple(wide)])
        step = tuple(slice(None, None, 2) if i in (yi, xi) else slice(None) for i in range(block.ndim))
        target[region] = block[step]

    workers = threads or min(4, os.cpu_count() or 1)
    regions = chunk_regions(target.shape, target.chunks)
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        while batch := list(itertools.islice(regions, 64 * workers)):  # bounded: levels may have many chunks
            for future in [pool.submit(one, r) for r in batch]:
                future.result()


def build_pyramid(group: Any, axes: str, levels: int, *, chunks: Sequence[int], threads: int | None = None) -> None:
    """Levels ``"1"`` ... ``str(levels - 1)`` of ``group`` from level ``"0"``, each from the one before
    (:func:`downsample_level`), with level 0's dtype and ``chunks``."""
    previous = group["0"]
    for k in range(1, levels):
        shape = tuple(-(-n // 2) if a in "YX" else n for a, n in zip(axes, previous.shape))
        level = create_level(group, str(k), shape=shape, dtype=previous.dtype, chunks=chunks, axes=axes)
        downsample_level(previous, level, axes, threads)
        previous = level


def open_ome_group(path: str | os.PathLike, mode: str = "r") -> Any:
    """The zarr group at ``path``, or ValueError saying it is not one."""
    zarr = require_zarr()
    try:
        return zarr.open_group(str(path), mode=mode)
    except Exception as err:  # zarr raises several kinds (FileNotFoundError, ContainsArrayError, ...)
        raise ValueError(f"cannot open '{path}' as a zarr group: {err}") from err


def labels_names(root: str | os.PathLike) -> list[str]:
    """The names in the ``"labels"`` list of ``root/labels`` ([] when there is none)."""
    path = pathlib.Path(root) / "labels"
    if not path.is_dir():
        return []
    return [str(n) for n in ome_attrs(open_ome_group(path)).get("labels") or []]


def read_zarr_provenance(path: str | os.PathLike) -> dict | None:
    """The provenance stored by :meth:`LabelsWriter.finish` in the labels group at ``path``, or None."""
    record = dict(open_ome_group(path).attrs).get("napari_unet")
    prov = record.get("provenance") if isinstance(record, Mapping) else None
    return normalize_provenance(prov) if isinstance(prov, Mapping) else None


def label_colors(colors: Mapping[int, Sequence[int]] | None) -> list[dict[str, Any]]:
    out = []
    for value, rgba in dict(colors or {}).items():
        rgba = [int(c) for c in rgba]
        if len(rgba) != 4 or not all(0 <= c <= 255 for c in rgba):
            raise ValueError(f"colour of label {value} must be 4 integers 0-255 (RGBA), got {rgba}")
        out.append({"label-value": int(value), "rgba": rgba})
    return out


def per_axis(name: str, values: Sequence[Any] | None, axes: str, default: Any) -> list[Any]:
    out = [default] * len(axes) if values is None else list(values)
    if len(out) != len(axes):
        raise ValueError(f"{name} {out} has {len(out)} entries, expected {len(axes)} for axes '{axes}'")
    return out


def check_labels_layout(
    shape: Sequence[int],
    axes: str,
    dtype: Any,
    chunks: Sequence[int] | None,
    scale: Sequence[float] | None,
    units: Sequence[str | None] | None,
) -> tuple[tuple[int, ...], str, np.dtype, tuple[int, ...], list[float], list[str | None]]:
    """The array options of ``create_labels``, checked (ValueError naming the bad one)."""
    axes = str(axes).upper()
    shape = tuple(int(n) for n in shape)
    if len(axes) != len(shape) or any(n < 1 for n in shape):
        raise ValueError(f"shape {shape} must have one positive size per letter of axes '{axes}'")
    if ngff_order(axes) != axes:
        raise ValueError(f"axes '{axes}' are not in OME-Zarr order; transpose the labels to '{ngff_order(axes)}'")
    dtype = np.dtype(dtype)
    if dtype.kind not in "iu":
        raise ValueError(f"OME-Zarr labels must have an integer dtype, got {dtype}")
    chunks = tuple(int(c) for c in per_axis("chunks", chunks, axes, 0)) if chunks else default_chunks(shape, axes)
    if any(c < 1 for c in chunks):
        raise ValueError(f"chunks {chunks} must be positive")
    scale = [float(s) for s in per_axis("scale", scale, axes, 1.0)]
    if not all(positive(s) for s in scale):
        raise ValueError(f"scale {scale} must be positive and finite for every axis of '{axes}'")
    units = [None if u is None else str(u) for u in per_axis("units", units, axes, None)]
    return shape, axes, dtype, chunks, scale, units


def check_labels_name(name: str) -> str:
    """``name`` if it can name labels in a ``labels`` group, else ValueError."""
    if not isinstance(name, str) or not name or "/" in name or "\\" in name or name.startswith((".", "__")):
        raise ValueError(
            f"labels name {name!r} must be a non-empty folder name without '/' that does not start with '.'"
        )
    return name
