"""napari reader for microscopy TIFFs: axes, scale, units and channel names become layer properties.

``napari_get_reader`` (npe2 command ``napari-unet.get_reader``) accepts one ``.tif``/``.tiff``
(also ``.ome.tif``) that :func:`napari_unet.core.image.io.read_image` can read and returns
:func:`read_tiff`; for anything else it returns None and never raises. The conversion from an
:class:`~napari_unet.core.image.io.ImageFile` to napari layer data, :func:`image_file_to_layer_data`, is
public so that the sample data (and anyone else) produce exactly the layers that opening the file
gives.

Decisions (see ``docs/reader-writer.md``):

* **Channels.** A ``C`` axis with more than one entry becomes *one* LayerData tuple with
  ``channel_axis`` set, so napari adds one Image layer per channel, named by the file's channel
  names (else ``"<stem> ch0"``, ``"<stem> ch1"``, ...), with ``additive`` blending, napari's
  colormaps (2 channels: magenta, green; more: cyan, magenta, yellow, blue, green, red) and
  per-channel contrast limits. An axis of length one (``C``/``S``) is dropped.
* **RGB.** A samples axis ``S`` of 3 or 4 on ``uint8`` data gives an RGB(A) layer
  (``rgb=True``). Any other ``S`` axis (e.g. the uint16 "RGB-style" hela file: napari's RGB only
  displays uint8 or 0-1 floats) is split like a channel axis, with red/green/blue(/gray)
  colormaps. Every other layer gets ``rgb=False`` explicitly, so napari never guesses RGB from a
  last axis of length 3.
* **Axis labels** are the lower-case axes letters of the layer's dimensions (``("z", "y", "x")``);
  ``layer.metadata["axes"]`` holds the upper-case axes string of the layer's data (``"ZYX"``,
  ``"YXS"`` for RGB, which is what :mod:`napari_unet.api` reads).
* **Units** are pint names napari understands (``"micron"`` -> ``"micrometer"``, ``"sec"`` ->
  ``"second"``), passed only when the file gives at least one; unknown axes are ``"pixel"``.
* **Labels.** A file with integer data that :func:`napari_unet.core.image.io.write_labels` wrote (it
  records provenance) opens as a Labels layer, loaded into memory so that it can be edited.
* **Lazy data.** Image data stay the read-only memory map (or, for compressed files, the array)
  that ``read_image`` returns; only a strided subsample is read for the contrast limits.
"""

from __future__ import annotations

import logging
import os
import pathlib
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from napari_unet.core.image.files import file_stem
from napari_unet.core.image.io import ImageFile, ImageReadError, check_image_file, read_image, read_provenance

from .display import napari_units, robust_contrast_limits

__all__ = ["LayerData", "image_file_to_layer_data", "labels_layer_data", "napari_get_reader", "read_tiff"]

logger = logging.getLogger(__name__)

#: napari's layer data tuple: ``(data, layer keyword arguments, layer type)``.
LayerData = tuple[Any, dict[str, Any], str]
PathLike = str | os.PathLike
ReaderFunction = Callable[[PathLike | Sequence[PathLike]], list[LayerData]]

TIFF_SUFFIXES = (".tif", ".tiff")
_TWO_CHANNEL_COLORMAPS = ("magenta", "green")  # napari's own default for two channels
_MANY_CHANNEL_COLORMAPS = ("cyan", "magenta", "yellow", "blue", "green", "red")  # napari's CMYBGR
_SAMPLE_COLORMAPS = ("red", "green", "blue", "gray")  # an S axis split into channels


def napari_get_reader(path: PathLike | Sequence[PathLike]) -> ReaderFunction | None:
    """Return :func:`read_tiff` if ``path`` is one TIFF that napari-unet can read, else None.

    The check is cheap: file name, then :func:`tiff_problem` (what ``read_image`` checks, from
    the TIFF header and metadata; no pixels are read). Never raises.

    Parameters
    ----------
    path : str, os.PathLike or sequence of them
        What napari asks about. A list is accepted only when it holds exactly one path.

    Returns
    -------
    callable or None
        :func:`read_tiff`, or None (with the reason logged) for other extensions, missing
        files, directories, several paths and files that are not readable TIFFs.
    """
    try:
        if isinstance(path, (list, tuple)):
            if len(path) != 1:
                logger.debug("napari-unet reads one file at a time, not %d paths", len(path))
                return None
            path = path[0]
        if not isinstance(path, (str, os.PathLike)):
            logger.debug("napari-unet cannot read %r: not a path", path)
            return None
        file = pathlib.Path(path)
        if not file.name.lower().endswith(TIFF_SUFFIXES):
            logger.debug("napari-unet reads .tif/.tiff files only, not %s", file)
            return None
        if not file.is_file():
            logger.debug("napari-unet cannot read %s: not an existing file", file)
            return None
        problem = tiff_problem(file)
        if problem:
            logger.warning("napari-unet cannot read %s: %s", file, problem)
            return None
    except Exception as exc:  # the reader contract: never raise, say why
        logger.warning("napari-unet cannot read %r: %s: %s", path, type(exc).__name__, exc)
        return None
    return read_tiff


def tiff_problem(path: pathlib.Path) -> str | None:
    """Why ``path`` is not a TIFF that :func:`~napari_unet.core.image.io.read_image` reads, or None.

    Runs :func:`~napari_unet.core.image.io.check_image_file`: everything ``read_image`` checks (magic
    bytes, an axis of length 0, truncated data, an ImageJ header promising images the file
    lacks, its metadata) without reading pixel data, so this reader is offered for exactly the
    files ``read_image`` then reads.

    Parameters
    ----------
    path : pathlib.Path
        An existing file.

    Returns
    -------
    str or None
        A short reason ("not a TIFF file", "truncated: ...") or None.
    """
    try:
        check_image_file(path)
    except (ImageReadError, OSError) as exc:
        return str(exc.__cause__ or exc)
    return None


def read_tiff(path: PathLike | Sequence[PathLike]) -> list[LayerData]:
    """Read a TIFF into napari layer data (the function :func:`napari_get_reader` returns).

    Parameters
    ----------
    path : str, os.PathLike or a sequence holding one of them
        The file.

    Returns
    -------
    list of LayerData
        ``[(data, kwargs, "image")]`` (one tuple even for several channels: ``kwargs`` then holds
        ``channel_axis``), or ``[(labels, kwargs, "labels")]`` for labels napari-unet wrote.

    Raises
    ------
    napari_unet.core.image.io.ImageReadError
        If the pixels cannot be read after all (napari reports it).
    """
    if isinstance(path, (list, tuple)):
        if len(path) != 1:
            raise ValueError(f"napari-unet reads one file at a time, got {len(path)} paths")
        path = path[0]
    return image_file_to_layer_data(read_image(path))


def _drop_axis(data: Any, axes: str, letter: str) -> tuple[Any, str]:
    """Index the single entry of axis ``letter`` away (a view: memory maps stay memory maps)."""
    i = axes.index(letter)
    index = (slice(None),) * i + (0,)
    return data[index], axes[:i] + axes[i + 1 :]


def _stored_provenance(image: ImageFile) -> dict | None:
    """The provenance ``write_labels`` stored in the file, or None (cheap pre-check first)."""
    meta = image.metadata
    if "shaped" in meta:
        candidate = "provenance" in meta["shaped"]
    else:
        info = (meta.get("imagej") or {}).get("Info")
        candidate = isinstance(info, str) and info.lstrip().startswith("{") and '"provenance"' in info
    return read_provenance(image.path) if candidate else None


def image_file_to_layer_data(
    image: ImageFile, *, name: str | None = None, levels: Sequence[Any] | None = None
) -> list[LayerData]:
    """Convert an :class:`~napari_unet.core.image.io.ImageFile` into napari layer data.

    Parameters
    ----------
    image : ImageFile
        As returned by :func:`napari_unet.core.image.io.read_image`.
    name : str, optional
        Layer name (single layer) or prefix of ``"<name> ch<i>"`` when the file has no channel
        names; default: the file name without its TIFF extension.
    levels : sequence of arrays, optional
        A multiscale image: every level, full resolution first, with ``image.axes`` (``image.data``
        is level 0). The layer data is then that list (napari's multiscale), each level cut and
        ordered like level 0; contrast limits come from the smallest level.

    Returns
    -------
    list of LayerData
        One tuple. Its ``metadata`` (per channel when split) holds ``axes`` (the axes of the
        layer's data, e.g. ``"ZYX"``), ``channel_names`` (the names of the layer's channels: one
        name for a split channel, the S names for RGB), ``source_axes``, ``path``, ``scale`` and
        ``units`` (per axis of ``axes``, ``core.image.io`` unit names), and for a split channel
        ``channel_index`` and ``source_channel_names``.
    """
    stem = name if name is not None else file_stem(image.path)
    data, axes = image.data, image.axes
    scale = dict(zip(axes, image.scale))
    units = dict(zip(axes, image.units))
    names = list(image.channel_names) if image.channel_names else None
    names_axis = "C" if "C" in axes else "S"
    source = {"source_axes": image.axes, "path": str(image.path)}

    provenance = _stored_provenance(image) if data.dtype.kind in "iub" else None
    if provenance is not None:
        return [labels_layer_data(image, name=stem, metadata={"channel_names": names, "provenance": provenance})]

    single_name: str | None = None
    dropped = ""
    for letter in "CS":
        if letter in axes and data.shape[axes.index(letter)] == 1:
            if letter == names_axis and names:
                single_name = names[0]
            data, axes = _drop_axis(data, axes, letter)
            dropped += letter
            logger.debug("%s: dropped the %s axis of length 1", image.path, letter)
    names_axis_present = names_axis in axes

    rgb = False
    split: str | None = None
    if "S" in axes and data.shape[axes.index("S")] in (3, 4) and data.dtype == np.uint8:
        rgb = True
        if not axes.endswith("S"):
            data = np.moveaxis(data, axes.index("S"), -1)
            axes = axes.replace("S", "") + "S"
    data, probe = _with_levels(data, levels, image.axes, dropped, rgb)  # probe: read for contrast limits
    if "C" in axes:
        split = "C"
    elif "S" in axes and not rgb:
        split = "S"
    if "C" in axes and "S" in axes and not rgb:
        logger.info(
            "%s: split along C; its S axis (length %d) stays a slider", image.path, probe.shape[axes.index("S")]
        )

    if split is None:
        layer_names = names if (names_axis_present and rgb) else ([single_name] if single_name else None)
        metadata = {**source, "channel_names": layer_names}
        kwargs = _layer_kwargs(stem, axes, scale, units, rgb=rgb, metadata=metadata)
        kwargs["contrast_limits"] = [0.0, 255.0] if rgb else list(robust_contrast_limits(probe))
        kwargs.update(_multiscale(data))
        return [(data, kwargs, "image")]

    channel_axis = axes.index(split)
    n_channels = probe.shape[channel_axis]
    layer_axes = axes.replace(split, "")
    if names and split == names_axis and len(names) == n_channels:
        channel_names = [str(n) for n in names]
    else:
        channel_names = [f"{stem} ch{i}" for i in range(n_channels)]
    base = _layer_kwargs(stem, layer_axes, scale, units, rgb=False, metadata={})
    if split == "S" and n_channels in (3, 4):
        colormaps = list(_SAMPLE_COLORMAPS[:n_channels])
    elif n_channels == 2:
        colormaps = list(_TWO_CHANNEL_COLORMAPS)
    else:
        colormaps = [_MANY_CHANNEL_COLORMAPS[i % len(_MANY_CHANNEL_COLORMAPS)] for i in range(n_channels)]
    index = (slice(None),) * channel_axis
    kwargs: dict[str, Any] = {
        "channel_axis": channel_axis,
        "name": channel_names,
        "colormap": colormaps,
        "blending": "additive",
        "rgb": False,
        "contrast_limits": [list(robust_contrast_limits(probe[index + (i,)])) for i in range(n_channels)],
        # per-channel lists, so napari never mistakes a per-axis tuple for a per-channel one
        "scale": [base["scale"]] * n_channels,
        "axis_labels": [base["axis_labels"]] * n_channels,
        "metadata": [
            {
                **base["metadata"],
                **source,
                "channel_names": [channel_names[i]],
                "channel_index": i,
                "source_channel_names": channel_names,
            }
            for i in range(n_channels)
        ],
    }
    if "units" in base:
        kwargs["units"] = [base["units"]] * n_channels
    kwargs.update(_multiscale(data))
    logger.debug(
        "%s: %d channels along %s (axis %d) named %s", image.path, n_channels, split, channel_axis, channel_names
    )
    return [(data, kwargs, "image")]


def _with_levels(data: Any, levels: Sequence[Any] | None, axes: str, dropped: str, rgb: bool) -> tuple[Any, Any]:
    """``(layer data, array to read contrast limits from)``: ``data`` twice for one level; for a
    multiscale image every level cut like level 0 (:func:`_like_level0`), and the smallest one."""
    if levels is None or len(levels) < 2:
        return data, data
    cut = [_like_level0(level, axes, dropped, rgb) for level in levels]
    return cut, cut[-1]


def _multiscale(data: Any) -> dict[str, Any]:
    return {"multiscale": True} if isinstance(data, list) else {}


def _like_level0(level: Any, axes: str, dropped: str, rgb: bool) -> Any:
    """One level of a multiscale image (axes ``axes``) with the length-1 axes ``dropped`` and, for
    RGB, the samples moved last, as :func:`image_file_to_layer_data` does with level 0."""
    for letter in dropped:
        level, axes = _drop_axis(level, axes, letter)
    if rgb and not axes.endswith("S"):
        level = np.moveaxis(level, axes.index("S"), -1)
    return level


def labels_layer_data(image: ImageFile, *, name: str, metadata: dict[str, Any] | None = None) -> LayerData:
    """A Labels layer of ``image``'s data, loaded into memory (native byte order, editable).

    Parameters
    ----------
    image : ImageFile
        Integer labels, as returned by :func:`napari_unet.core.image.io.read_image`.
    name : str
        The layer name.
    metadata : dict, optional
        Added to the layer metadata (beside ``axes``, ``source_axes``, ``path``, ``scale``, ``units``).

    Returns
    -------
    LayerData
        ``(labels, kwargs, "labels")`` with the file's scale, units and axis labels.
    """
    labels = np.asarray(image.data)
    labels = labels.astype(labels.dtype.newbyteorder("="), copy=True)
    meta = {"source_axes": image.axes, "path": str(image.path), **(metadata or {})}
    kwargs = _layer_kwargs(
        name,
        image.axes,
        dict(zip(image.axes, image.scale)),
        dict(zip(image.axes, image.units)),
        rgb=None,
        metadata=meta,
    )
    return labels, kwargs, "labels"


def _layer_kwargs(
    name: str,
    axes: str,
    scale: dict[str, float],
    units: dict[str, str | None],
    *,
    rgb: bool | None,
    metadata: dict[str, Any],
) -> dict[str, Any]:
    """name, scale, axis_labels, units (when known), rgb and metadata for a layer with ``axes``.

    For an RGB layer the trailing ``S`` is part of ``metadata["axes"]`` but not of the napari
    per-dimension properties. ``rgb=None`` leaves out the ``rgb`` key (Labels layers).
    """
    dims = axes[:-1] if rgb else axes
    layer_scale = tuple(float(scale.get(a, 1.0)) for a in dims)
    layer_units = napari_units([units.get(a) for a in dims])
    kwargs: dict[str, Any] = {
        "name": name,
        "scale": layer_scale,
        "axis_labels": tuple(a.lower() for a in dims),
        "metadata": {
            "axes": axes,
            **metadata,
            "scale": tuple(float(scale.get(a, 1.0)) for a in axes),
            "units": tuple(units.get(a) for a in axes),
        },
    }
    if any(u is not None for u in layer_units):
        kwargs["units"] = tuple(u or "pixel" for u in layer_units)
    if rgb is not None:
        kwargs["rgb"] = rgb
    return kwargs
