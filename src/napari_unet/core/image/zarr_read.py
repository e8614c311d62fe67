"""Read zarr arrays and OME-Zarr images (NGFF 0.4 and 0.5) lazily, as an :class:`~.io.ImageFile`.

The pixels stay on disk: ``ImageFile.data`` is a dask array over the zarr array, one dask chunk per
zarr chunk, so only what a computation indexes is ever read. zarr and dask are imported when a zarr
image is read, never at ``import napari_unet`` (they come with the ``zarr`` extra).

* **OME-Zarr** (a group with NGFF ``multiscales`` metadata): NGFF 0.4 keeps it in the group's
  ``.zattrs`` (zarr v2), NGFF 0.5 under ``"ome"`` in the group's ``zarr.json`` attributes (zarr v3).
  Axes come from ``multiscales[0].axes`` (``t``/``c``/``z``/``y``/``x``, else by their ``type``),
  the scale per axis from the chosen level's ``coordinateTransformations`` (times the multiscale's
  own, if any), units from the axes, channel names from ``omero.channels[].label``. Level 0 (full
  resolution) unless ``level=`` picks another.
* **bioformats2raw** layouts (a group whose image is its child ``0``) are read through that child.
* **Plain zarr arrays** (or a group holding exactly one array and no NGFF metadata) have no axes:
  they are guessed from the shape (:func:`~.axes.guess_axes`, with its warning), as for arrays.
"""

from __future__ import annotations

import logging
import os
import pathlib
from typing import Any

from .axes import guess_axes
from .calibration import norm_unit, positive
from .checks import empty_problem

__all__ = ["NGFF_VERSIONS", "ZARR_EXTRA", "MissingExtraError", "is_zarr_path", "read_zarr"]

logger = logging.getLogger(__name__)

#: The install command that brings zarr, ome-zarr and dask.
ZARR_EXTRA = 'pip install "napari-unet[zarr]"'
#: NGFF (OME-Zarr) versions this module reads.
NGFF_VERSIONS = ("0.4", "0.5")
#: Files that mark a folder as a zarr array or group (zarr v2 and v3).
ZARR_MARKERS = (".zarray", ".zgroup", ".zattrs", "zarr.json")
_AXIS_TYPES = {"time": "T", "channel": "C"}


class MissingExtraError(ImportError):
    """An optional dependency is missing; the message names the command that installs it."""


def is_zarr_path(path: str | os.PathLike) -> bool:
    """Whether ``path`` names a zarr store: a ``.zarr`` name, or a folder with zarr metadata.

    Cheap (file names only). A ``.zarr`` name counts even when nothing is there, so that reading it
    gives the zarr reader's error rather than the TIFF reader's.
    """
    path = pathlib.Path(path)
    if path.name.lower().endswith(".zarr"):
        return True
    return path.is_dir() and any((path / marker).is_file() for marker in ZARR_MARKERS)


def import_zarr() -> tuple[Any, Any]:
    """``(zarr, dask.array)``, or :class:`MissingExtraError` naming the install command."""
    try:
        import dask.array as da
        import zarr
    except ImportError as exc:
        raise MissingExtraError(
            f"reading zarr / OME-Zarr needs the zarr extra: {ZARR_EXTRA} (zarr 3 needs Python >= 3.11); "
            f"missing: {exc.name or exc}"
        ) from exc
    return zarr, da


def _error(path: pathlib.Path, problem: str) -> Exception:
    from .io import ImageReadError  # io imports this module lazily: no cycle at import time

    return ImageReadError(f"cannot read '{path}' as zarr / OME-Zarr: {problem}")


def read_zarr(path: str | os.PathLike, *, level: int | None = None, pixels: bool = True) -> Any:
    """Read a zarr array or an OME-Zarr image lazily.

    Parameters
    ----------
    path : str or os.PathLike
        A ``.zarr`` folder (an OME-Zarr group, a bioformats2raw group or a plain array), or a zarr
        array or group inside one.
    level : int, optional
        Resolution level of a multiscale image; None or 0: full resolution.
    pixels : bool
        False: metadata only (``data`` is None), for checking a path cheaply.

    Returns
    -------
    ImageFile
        ``data`` a dask array with the zarr chunks, in the stored axis order; ``metadata`` holds
        ``kind`` (``"ome-zarr"`` or ``"zarr"``), ``ngff`` (version, OME-Zarr only), ``zarr_format``,
        ``level``, ``levels`` (the shape of every level) and ``array`` (the array's path in the store).

    Raises
    ------
    FileNotFoundError
        Nothing at ``path``.
    MissingExtraError
        zarr or dask is not installed.
    ImageReadError
        Not a zarr store, a group without an image, an unknown NGFF version, axes that do not fit
        the arrays, a missing level array.
    ValueError
        ``level`` is not one of the image's levels (the message lists them).
    """
    from .io import ImageFile

    path = pathlib.Path(path)
    if level is not None and (isinstance(level, bool) or not isinstance(level, int) or level < 0):
        raise ValueError(f"level must be a non-negative integer (0 = full resolution), got {level!r}")
    if not path.exists():
        raise FileNotFoundError(f"zarr image not found: '{path}'")
    zarr, da = import_zarr()
    node, path = _open(zarr, path)
    if isinstance(node, zarr.Array):
        image = _plain(node, path, level)
    else:
        attrs = dict(node.attrs)
        ome = attrs.get("ome") if isinstance(attrs.get("ome"), dict) else None
        multiscales = (ome or attrs).get("multiscales")
        if multiscales is None and "bioformats2raw.layout" in (ome or attrs) and "0" in set(node.group_keys()):
            return read_zarr(path / "0", level=level, pixels=pixels)
        if multiscales is None:
            arrays = sorted(node.array_keys())
            if len(arrays) != 1:
                found = f"{len(arrays)} arrays ({', '.join(arrays)})" if arrays else "no arrays"
                raise _error(
                    path,
                    f"a zarr group without OME-Zarr 'multiscales' metadata and {found}; expected an "
                    "OME-Zarr image (NGFF 0.4/0.5) or one zarr array",
                )
            image = _plain(node[arrays[0]], path, level)
        else:
            image = _ngff(node, path, ome, attrs, multiscales, level)
    array = image.pop("array_node")
    data = da.from_zarr(array) if pixels else None
    logger.debug(
        "read %s: %s level %s, shape %s axes %s",
        path,
        image["metadata"]["kind"],
        image["metadata"]["level"],
        array.shape,
        image["axes"],
    )
    return ImageFile(data=data, path=path, **image)


def _open(zarr: Any, path: pathlib.Path) -> tuple[Any, pathlib.Path]:
    if not path.is_dir():
        raise _error(path, "it is a file; a zarr store is a folder (with zarr.json, or .zgroup/.zarray)")
    try:
        return zarr.open(store=str(path), mode="r"), path
    except Exception as exc:  # noqa: BLE001 - zarr raises several kinds for a folder that is not a store
        raise _error(
            path,
            f"no zarr array or group there (a zarr folder holds zarr.json, or .zgroup/.zarray): "
            f"{type(exc).__name__}: {exc}",
        ) from exc


def _plain(array: Any, path: pathlib.Path, level: int | None) -> dict[str, Any]:
    """A zarr array without NGFF metadata: one level, axes guessed from the shape (with a warning)."""
    if level not in (None, 0):
        raise ValueError(f"level {level} is out of range for '{path}': a plain zarr array has one level (0)")
    shape = tuple(int(s) for s in array.shape)
    problem = empty_problem(shape)
    if problem:
        raise _error(path, f"its array {problem}")
    try:
        axes = guess_axes(shape)
    except ValueError as exc:
        raise _error(path, str(exc)) from None
    return {
        "array_node": array,
        "axes": axes,
        "scale": (1.0,) * len(shape),
        "units": (None,) * len(shape),
        "channel_names": None,
        "metadata": {
            "kind": "zarr",
            "zarr_format": array.metadata.zarr_format,
            "level": 0,
            "levels": [shape],
            "array": array.path,
        },
    }


def _axis_letter(axis: Any, path: pathlib.Path) -> str:
    if isinstance(axis, str):  # NGFF 0.3 spelling, kept readable
        axis = {"name": axis}
    if not isinstance(axis, dict) or not isinstance(axis.get("name"), str):
        raise _error(path, f"axis {axis!r} has no name; expected e.g. {{'name': 'y', 'type': 'space'}}")
    name = axis["name"].strip().upper()
    if len(name) == 1 and name in "TCZYX":
        return name
    letter = _AXIS_TYPES.get(str(axis.get("type", "")).lower())
    if letter is None:
        raise _error(
            path,
            f"axis {axis['name']!r} (type {axis.get('type')!r}) is not one of t, c, z, y, x "
            "and not of type time or channel",
        )
    return letter


def _scale_of(transforms: Any, ndim: int, path: pathlib.Path, where: str) -> list[float]:
    scale = [1.0] * ndim
    for t in transforms or []:
        if isinstance(t, dict) and t.get("type") == "scale":
            values = t.get("scale")
            if not isinstance(values, list) or len(values) != ndim:
                raise _error(path, f"{where} scale {values!r} does not have one entry per axis ({ndim})")
            scale = [a * float(b) for a, b in zip(scale, values)]
    return scale


def _ngff(
    node: Any, path: pathlib.Path, ome: dict | None, attrs: dict, multiscales: Any, level: int | None
) -> dict[str, Any]:
    """An OME-Zarr image: the chosen level with its axes, scale, units and channel names."""
    if not isinstance(multiscales, list) or not multiscales or not isinstance(multiscales[0], dict):
        raise _error(path, f"'multiscales' must be a non-empty list of images, got {multiscales!r}")
    ms = multiscales[0]
    version = str((ome or {}).get("version") or ms.get("version") or "")
    if version not in NGFF_VERSIONS:
        raise _error(
            path,
            f"NGFF version {version or 'missing'!r} is not supported (napari-unet reads {' and '.join(NGFF_VERSIONS)})",
        )
    datasets = ms.get("datasets")
    if not isinstance(datasets, list) or not datasets:
        raise _error(path, "its multiscales have no 'datasets' (resolution levels)")
    arrays = []
    for ds in datasets:
        key = ds.get("path") if isinstance(ds, dict) else None
        try:
            arrays.append(node[str(key)])
        except Exception as exc:  # noqa: BLE001 - KeyError, or zarr's own errors
            raise _error(
                path, f"level array {key!r} named in its multiscales is missing ({type(exc).__name__})"
            ) from None
    shapes = [tuple(int(s) for s in a.shape) for a in arrays]
    chosen = 0 if level is None else level
    if chosen >= len(arrays):
        listed = ", ".join(f"{i}: {s}" for i, s in enumerate(shapes))
        raise ValueError(f"level {chosen} is out of range for '{path}': it has {len(arrays)} levels ({listed})")
    axes_meta = ms.get("axes")
    if not isinstance(axes_meta, list):
        raise _error(path, f"its multiscales have no 'axes' list (NGFF {version} requires one)")
    axes = "".join(_axis_letter(a, path) for a in axes_meta)
    ndim = len(shapes[chosen])
    if len(axes) != ndim:
        raise _error(
            path,
            f"its axes {axes!r} name {len(axes)} dimensions but level {chosen} has {ndim} (shape {shapes[chosen]})",
        )
    if len(set(axes)) != len(axes) or "Y" not in axes or "X" not in axes:
        raise _error(path, f"its axes {axes!r} must be distinct and include y and x")
    ds = datasets[chosen]
    scale = _scale_of(ds.get("coordinateTransformations"), ndim, path, f"level {chosen}")
    overall = _scale_of(ms.get("coordinateTransformations"), ndim, path, "multiscale")
    scale = [a * b for a, b in zip(scale, overall)]
    scale_t = tuple(1.0 if a == "C" or not positive(s) else float(s) for a, s in zip(axes, scale))
    units = tuple(
        None if a == "C" or not isinstance(m, dict) else norm_unit(m.get("unit")) for a, m in zip(axes, axes_meta)
    )
    omero = (ome or attrs).get("omero")
    names = None
    if "C" in axes and isinstance(omero, dict) and isinstance(omero.get("channels"), list):
        labels = [c.get("label") if isinstance(c, dict) else None for c in omero["channels"]]
        if len(labels) == shapes[chosen][axes.index("C")] and all(isinstance(n, str) and n for n in labels):
            names = [str(n) for n in labels]
    if len(multiscales) > 1:
        logger.info("%s holds %d multiscale images; reading the first", path, len(multiscales))
    metadata = {
        "kind": "ome-zarr",
        "ngff": version,
        "zarr_format": arrays[chosen].metadata.zarr_format,
        "level": chosen,
        "levels": shapes,
        "array": arrays[chosen].path,
        "name": ms.get("name"),
        "level_scales": [_level_scale(d, overall, ndim, path) for d in datasets],
    }
    problem = empty_problem(shapes[chosen])
    if problem:
        raise _error(path, f"level {chosen} {problem}")
    return {
        "array_node": arrays[chosen],
        "axes": axes,
        "scale": scale_t,
        "units": units,
        "channel_names": names,
        "metadata": metadata,
    }


def _level_scale(ds: Any, overall: list[float], ndim: int, path: pathlib.Path) -> list[float]:
    transforms = ds.get("coordinateTransformations") if isinstance(ds, dict) else None
    return [a * b for a, b in zip(_scale_of(transforms, ndim, path, "level"), overall)]
