"""Turn per-class probabilities, or the label features made from them, into label images.

The probability functions (:func:`semantic_labels`, :func:`instance_labels`,
:func:`labels_from_probabilities`) take an array laid out as ``(n_classes, *leading, *spatial)``:

* axis 0 is the class axis; class 0 is background. With several classes the values are
  per-class probabilities (softmax output) that sum to 1 over the class axis. With a single
  class the value is the foreground probability and ``threshold`` decides foreground.
* then any number of *leading* axes (time, channels of a batch, Z when a 2D model ran slice by
  slice, ...), each index of which is processed independently;
* then ``spatial_ndim`` spatial axes: 2 (``YX``) or 3 (``ZYX``).

Output labels have shape ``probabilities.shape[1:]``.

Label making never needs the float probabilities themselves, only the compact ``uint8``
*label features* of :mod:`~napari_unet.core.inference.features` (class index and watershed-seed bit per
pixel in ``codes``, the quantised boundary probability in ``landscape``).
:func:`labels_from_features` makes labels from those, laid out as ``(*leading, *spatial)``, and
the probability functions compute the features of every spatial block with
:func:`~napari_unet.core.inference.features.features_from_probabilities` and then run the very same code.
The only difference to flooding the float boundary probability is therefore the quantisation
of the landscape to 256 levels.

The work is done one *spatial block* (one 2D image or 3D volume, i.e. one index into the
leading axes) at a time, so the only whole-stack array ever allocated is the output itself.
This also means the input may be a lazy array (dask, zarr): only one block is materialised at
a time. A block with more than ``band_pixels`` pixels (a huge plane) is further processed in
bands of rows (Z slices in 3D) by :mod:`~napari_unet.core.labels.banded`, so no temporary is larger
than a band of a few megapixels (plus the watershed's context margin).

Connectivity
------------
Connected components and watershed use *1-connectivity* everywhere: pixels (voxels) are
neighbours only when they share a face (4-neighbourhood in 2D, 6-neighbourhood in 3D).
Diagonal contacts do not join objects, which keeps thin separations between touching nuclei
effective.

Algorithms come from :mod:`scipy.ndimage` (connected components) and :mod:`skimage`
(seeded watershed). Size filtering and consecutive relabelling use ``np.bincount`` counts and a
lookup table, which does both in a single pass and behaves identically on every supported
scikit-image version (``remove_small_objects`` changed its keyword in 0.26).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from numbers import Integral, Real
from typing import Any

import numpy as np

from ..inference.features import CLASS_MASK, MAX_CLASSES, features_from_probabilities
from .banded import DEFAULT_BAND_PIXELS
from .making import instance_stack, semantic_stack, smallest_label_dtype

__all__ = [
    "MODES",
    "instance_labels",
    "labels_from_features",
    "labels_from_probabilities",
    "semantic_labels",
    "smallest_label_dtype",
]

logger = logging.getLogger(__name__)

#: The label modes accepted by :func:`labels_from_probabilities`.
MODES: tuple[str, ...] = ("semantic", "instances")

_SPATIAL_NDIMS = (2, 3)


# --------------------------------------------------------------------------------------
# dtype helpers
# --------------------------------------------------------------------------------------
# --------------------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------------------
def _as_array_like(probabilities: Any) -> Any:
    """Keep array-likes with ``shape``/``ndim``/indexing (numpy, dask, zarr); convert the rest."""
    if hasattr(probabilities, "shape") and hasattr(probabilities, "ndim") and hasattr(
        probabilities, "__getitem__"
    ):
        return probabilities
    return np.asarray(probabilities)


def _validate(
    probabilities: Any,
    *,
    spatial_ndim: int,
    min_size: int,
    threshold: float,
) -> Any:
    """Validate the common arguments and return ``probabilities`` as an indexable array."""
    if (
        isinstance(spatial_ndim, bool)
        or not isinstance(spatial_ndim, Integral)
        or spatial_ndim not in _SPATIAL_NDIMS
    ):
        raise ValueError(f"spatial_ndim must be 2 (YX) or 3 (ZYX), got {spatial_ndim!r}")
    spatial_ndim = int(spatial_ndim)
    if isinstance(min_size, bool) or not isinstance(min_size, Integral) or min_size < 0:
        raise ValueError(f"min_size must be an integer >= 0 (pixels), got {min_size!r}")
    if isinstance(threshold, bool) or not isinstance(threshold, Real) or not math.isfinite(threshold):
        raise ValueError(f"threshold must be a finite number, got {threshold!r}")

    probabilities = _as_array_like(probabilities)
    ndim = probabilities.ndim
    if ndim < 1 + spatial_ndim:
        raise ValueError(
            f"probabilities must have at least {1 + spatial_ndim} dimensions "
            f"(class axis + {spatial_ndim} spatial axes, i.e. (n_classes, *leading, "
            f"{'Z, ' if spatial_ndim == 3 else ''}Y, X)) for spatial_ndim={spatial_ndim}, "
            f"got {ndim} dimensions with shape {tuple(probabilities.shape)}"
        )
    if probabilities.shape[0] < 1:
        raise ValueError(
            f"probabilities must have at least one class on axis 0, got shape {tuple(probabilities.shape)}"
        )
    dtype = np.dtype(probabilities.dtype)
    if not (np.issubdtype(dtype, np.floating) or np.issubdtype(dtype, np.integer) or dtype == np.bool_):
        raise TypeError(f"probabilities must be a real numeric array, got dtype {dtype}")
    return probabilities


def _iter_blocks(
    probabilities: Any, spatial_ndim: int
) -> Iterator[tuple[tuple[int, ...], np.ndarray]]:
    """Yield ``(leading_index, block)`` for every spatial block.

    ``block`` has shape ``(n_classes, *spatial)`` and is a materialised numpy array.
    ``leading_index`` indexes the output (``shape[1:]``) and is ``()`` when there are no
    leading axes.
    """
    leading_shape = tuple(probabilities.shape[1 : probabilities.ndim - spatial_ndim])
    for index in np.ndindex(*leading_shape):
        yield index, np.asarray(probabilities[(slice(None), *index)])


def _class_map(block: np.ndarray, threshold: float) -> np.ndarray:
    """Per-pixel class index of one block.

    Parameters
    ----------
    block : numpy.ndarray
        Shape ``(n_classes, *spatial)``.
    threshold : float
        Used only when ``n_classes == 1``: foreground is ``block[0] >= threshold``.

    Returns
    -------
    numpy.ndarray
        Shape ``spatial``, integer class indices (``0`` = background).
    """
    if block.shape[0] == 1:
        return (block[0] >= threshold).astype(np.uint8)
    return np.argmax(block, axis=0)


def _check_count(name: str, value: Any, minimum: int, unit: str) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum} ({unit}), got {value!r}")
    return int(value)


def _block_features(
    block: np.ndarray, *, boundary_class: int | None, threshold: float, seed_threshold: float | None,
    distance_channel: int | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Label features of one probability block ``(n_classes, *spatial)``.

    Beyond :data:`~napari_unet.core.inference.features.MAX_CLASSES` classes (no boundary class) the
    foreground is coded as class 1, which is all instance labelling needs.
    """
    if block.shape[0] > MAX_CLASSES and boundary_class is None:
        return (_class_map(block, threshold) != 0).astype(np.uint8), None
    return features_from_probabilities(
        block, boundary_class=boundary_class, threshold=threshold, seed_threshold=seed_threshold,
        distance_channel=distance_channel,
    )


# --------------------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------------------
def semantic_labels(
    probabilities: np.ndarray,
    *,
    min_size: int = 0,
    spatial_ndim: int = 2,
    threshold: float = 0.5,
) -> np.ndarray:
    """Semantic labels: the most probable class of every pixel.

    Parameters
    ----------
    probabilities : numpy.ndarray
        Shape ``(n_classes, *leading, *spatial)``; see the module docstring. With
        ``n_classes == 1`` the single channel is a foreground probability.
    min_size : int, optional
        When > 0, connected regions (1-connectivity) of a non-background class with fewer
        than ``min_size`` pixels are set to background (0). Computed per spatial block.
    spatial_ndim : int, optional
        Number of trailing spatial axes: 2 (``YX``) or 3 (``ZYX``).
    threshold : float, optional
        Foreground threshold, used only when ``n_classes == 1`` (``p >= threshold``).

    Returns
    -------
    numpy.ndarray
        Shape ``probabilities.shape[1:]``. Values are class indices (``0 .. n_classes - 1``;
        ``0``/``1`` for a single class). dtype ``uint8`` when ``n_classes <= 256``, else
        ``uint16`` (wider only for absurd class counts).

    Raises
    ------
    ValueError
        If ``spatial_ndim`` is not 2 or 3, ``probabilities`` has too few dimensions,
        ``min_size`` is negative or ``threshold`` is not finite.
    """
    probabilities = _validate(
        probabilities, spatial_ndim=spatial_ndim, min_size=min_size, threshold=threshold
    )
    blocks = (
        (index, lambda view, block=block: _fill_classes(block, threshold, view))
        for index, block in _iter_blocks(probabilities, int(spatial_ndim))
    )
    return semantic_stack(
        tuple(probabilities.shape[1:]), int(probabilities.shape[0]), blocks, min_size=int(min_size),
        spatial_ndim=int(spatial_ndim), band_pixels=DEFAULT_BAND_PIXELS,
    )


def _fill_classes(block: np.ndarray, threshold: float, view: np.ndarray) -> None:
    """Write the class map of one probability block ``(n_classes, *spatial)`` into ``view``."""
    if block.shape[0] <= MAX_CLASSES:
        codes, _ = features_from_probabilities(block, threshold=threshold)
        np.bitwise_and(codes, CLASS_MASK, out=view)
    else:  # more classes than features can code: the class map itself
        view[...] = _class_map(block, threshold)


def _validate_boundary_class(boundary_class: int | None, n_classes: int) -> int | None:
    if boundary_class is None:
        return None
    if isinstance(boundary_class, bool) or not isinstance(boundary_class, Integral):
        raise ValueError(f"boundary_class must be an integer class index or None, got {boundary_class!r}")
    boundary_class = int(boundary_class)
    if n_classes < 3:
        raise ValueError(
            f"boundary_class={boundary_class} needs at least 3 classes (background=0, interior, "
            f"boundary), but there are {n_classes} class(es)"
        )
    if not 1 <= boundary_class < n_classes:
        raise ValueError(
            f"boundary_class must be a foreground class index in 1..{n_classes - 1} "
            f"(class 0 is background), got {boundary_class}"
        )
    return boundary_class




def instance_labels(
    probabilities: np.ndarray,
    *,
    spatial_ndim: int = 2,
    boundary_class: int | None = None,
    min_size: int = 0,
    threshold: float = 0.5,
    seed_threshold: float | None = None,
    min_seed_size: int = 0,
    keep_seedless: bool = True,
    distance_channel: int | None = None,
    fill_holes: bool = False,
) -> np.ndarray:
    """Instance labels: one unique integer per object across the whole output.

    Each spatial block (one index into the leading axes: a 2D image, or a 3D volume when
    ``spatial_ndim == 3``) is segmented independently:

    * without ``boundary_class``: foreground (``argmax != 0``, or ``p >= threshold`` for a
      single class) is split into connected components with 1-connectivity (face
      neighbours only);
    * with ``boundary_class`` (e.g. a model with classes background=0, interior=1,
      boundary=2 and ``boundary_class=2``): seeds are the connected components of pixels
      whose most probable class is an interior class (neither background nor boundary);
      a seeded watershed (:func:`skimage.segmentation.watershed`, 1-connectivity) of the
      landscape ``p[boundary_class]`` restricted to the foreground mask (``argmax != 0``)
      grows them, so touching objects separated by a thin boundary stay separate and boundary
      pixels join their neighbouring object. Foreground regions containing no interior pixel
      become objects of their own. The landscape is flooded quantised to 256 levels (the
      label features of :func:`labels_from_features`).

    Objects with fewer than ``min_size`` pixels are then removed and the rest relabelled
    consecutively. Labels of each block are offset by the number of objects found in the
    blocks before it (C order over the leading axes), so IDs are unique across e.g. all
    frames of a time-lapse and run from 1 to the total count without gaps.

    Parameters
    ----------
    probabilities : numpy.ndarray
        Shape ``(n_classes, *leading, *spatial)``; see the module docstring.
    spatial_ndim : int, optional
        Number of trailing spatial axes: 2 (``YX``) or 3 (``ZYX``).
    boundary_class : int or None, optional
        Index of the boundary class (``1 .. n_classes - 1``; needs ``n_classes >= 3``), or
        None for plain connected components.
    min_size : int, optional
        Minimum object size in pixels (voxels); smaller objects are set to 0.
    threshold : float, optional
        Foreground threshold, used only when ``n_classes == 1`` (``p >= threshold``).
    seed_threshold : float or None, optional
        With ``boundary_class``: seeds are where the summed interior probability is at least
        this (stricter seeds split touching objects better); None uses the argmax.
    min_seed_size : int, optional
        With ``boundary_class``: seeds smaller than this many pixels are dropped (their pixels
        join a neighbouring object, or form their own if none touches).
    keep_seedless : bool, optional
        With ``boundary_class``: foreground regions no seed reaches become objects of their
        own (True) or background (False).
    distance_channel : int or None, optional
        With ``boundary_class``: index on axis 0 of a distance head (the normalised distance
        to the object's rim; the classes are the channels before it). Seeds are where it is at
        least ``seed_threshold`` (0.5 when None) and the watershed floods ``1 - distance``.
    fill_holes : bool, optional
        With ``boundary_class``: background regions enclosed by a single object join it
        (blocks of up to 8 Mpx; larger blocks, worked in bands, keep their holes).

    Returns
    -------
    numpy.ndarray
        Shape ``probabilities.shape[1:]``, labels ``0`` (background) and ``1 .. N``.
        dtype :func:`smallest_label_dtype` ``(N)``: ``uint16`` normally, ``uint32`` when
        there are more than 65535 objects in total.

    Raises
    ------
    ValueError
        If ``spatial_ndim`` is not 2 or 3, ``probabilities`` has too few dimensions,
        ``boundary_class`` is not a valid foreground class, ``min_size`` or
        ``min_seed_size`` is negative or ``threshold`` is not finite.
    """
    probabilities = _validate(
        probabilities, spatial_ndim=spatial_ndim, min_size=min_size, threshold=threshold
    )
    n_classes = int(probabilities.shape[0])
    if distance_channel is not None:
        if isinstance(distance_channel, bool) or not isinstance(distance_channel, Integral) or not (
            1 <= distance_channel < n_classes
        ):
            raise ValueError(
                f"distance_channel must be a channel index in 1..{n_classes - 1} after the classes, "
                f"got {distance_channel!r}"
            )
        if boundary_class is None:
            raise ValueError("distance_channel needs boundary_class (an instance model's boundary class)")
        n_classes = int(distance_channel)
    boundary_class = _validate_boundary_class(boundary_class, n_classes)
    min_seed_size = _check_count("min_seed_size", min_seed_size, 0, "pixels")
    blocks = (
        (index, *_block_features(
            block, boundary_class=boundary_class, threshold=threshold, seed_threshold=seed_threshold,
            distance_channel=distance_channel,
        ))
        for index, block in _iter_blocks(probabilities, int(spatial_ndim))
    )
    return instance_stack(
        tuple(probabilities.shape[1:]), blocks, boundary_class=boundary_class, spatial_ndim=int(spatial_ndim),
        min_size=int(min_size), min_seed_size=min_seed_size, keep_seedless=bool(keep_seedless),
        band_pixels=DEFAULT_BAND_PIXELS, fill_holes=bool(fill_holes),
    )


def labels_from_probabilities(
    probabilities: np.ndarray,
    *,
    mode: str = "instances",
    boundary_class: int | None = None,
    spatial_ndim: int = 2,
    min_size: int = 0,
    threshold: float = 0.5,
    seed_threshold: float | None = None,
    min_seed_size: int = 0,
    keep_seedless: bool = True,
    distance_channel: int | None = None,
    fill_holes: bool = False,
) -> np.ndarray:
    """Labels from class probabilities, semantic or instance.

    Parameters
    ----------
    probabilities : numpy.ndarray
        Shape ``(n_classes, *leading, *spatial)``; see the module docstring.
    mode : {"instances", "semantic"}, optional
        ``"instances"`` calls :func:`instance_labels`, ``"semantic"`` calls
        :func:`semantic_labels` (``boundary_class`` is then ignored: the boundary is just
        one more class).
    boundary_class : int or None, optional
        Boundary class index for instance mode; see :func:`instance_labels`.
    spatial_ndim : int, optional
        Number of trailing spatial axes: 2 (``YX``) or 3 (``ZYX``).
    min_size : int, optional
        Minimum object / region size in pixels.
    threshold : float, optional
        Foreground threshold, used only when ``n_classes == 1``.
    seed_threshold, min_seed_size, keep_seedless, distance_channel, fill_holes : optional
        Instance mode with a boundary class: see :func:`instance_labels`. In semantic mode the
        channels from ``distance_channel`` on are dropped.

    Returns
    -------
    numpy.ndarray
        Labels of shape ``probabilities.shape[1:]``.

    Raises
    ------
    ValueError
        If ``mode`` is not one of :data:`MODES`, or for any error of the called function.
    """
    if mode == "semantic":
        if boundary_class is not None:
            logger.debug("semantic mode: boundary_class=%r ignored", boundary_class)
        if distance_channel is not None:
            probabilities = _as_array_like(probabilities)[: int(distance_channel)]
        return semantic_labels(
            probabilities, min_size=min_size, spatial_ndim=spatial_ndim, threshold=threshold
        )
    if mode == "instances":
        return instance_labels(
            probabilities,
            spatial_ndim=spatial_ndim,
            boundary_class=boundary_class,
            min_size=min_size,
            threshold=threshold,
            seed_threshold=seed_threshold,
            min_seed_size=min_seed_size,
            keep_seedless=keep_seedless,
            distance_channel=distance_channel,
            fill_holes=fill_holes,
        )
    raise ValueError(
        f"mode must be one of {', '.join(repr(m) for m in MODES)}, got {mode!r}"
    )


def labels_from_features(
    codes: np.ndarray,
    landscape: np.ndarray | None = None,
    *,
    mode: str = "instances",
    n_classes: int,
    boundary_class: int | None = None,
    spatial_ndim: int = 2,
    min_size: int = 0,
    min_seed_size: int = 0,
    keep_seedless: bool = True,
    band_pixels: int | None = None,
    fill_holes: bool = False,
) -> np.ndarray:
    """Labels from the ``uint8`` label features of :mod:`~napari_unet.core.inference.features`.

    Gives the labels :func:`labels_from_probabilities` gives for the probabilities the
    features were made from (with the same ``boundary_class``, ``threshold`` and
    ``seed_threshold``), up to the quantisation of the landscape to 256 levels.

    Parameters
    ----------
    codes : numpy.ndarray
        ``uint8``, shape ``(*leading, *spatial)``: class index in the low 7 bits
        (:data:`~napari_unet.core.inference.features.CLASS_MASK`), watershed seed bit
        (:data:`~napari_unet.core.inference.features.SEED_BIT`) for instance models with a boundary class.
        May be a lazy array (dask, zarr); one spatial block is materialised at a time.
    landscape : numpy.ndarray or None, optional
        ``uint8``, same shape as ``codes``: ``round(255 * p[boundary_class])``. Needed for
        instance mode with ``boundary_class``, refused in instance mode without it, ignored in
        semantic mode.
    mode : {"instances", "semantic"}, optional
        ``"semantic"``: the class map (``codes & 0x7F``) with connected regions of a class
        smaller than ``min_size`` set to background. ``"instances"``: see
        :func:`instance_labels`; seeds are the connected components of the seed bit.
    n_classes : int
        Number of classes of the model (1..128); sets the semantic dtype and checks
        ``boundary_class``.
    boundary_class : int or None, optional
        Boundary class index for instance mode (needs ``n_classes >= 3``); ignored in
        semantic mode.
    spatial_ndim : int, optional
        Number of trailing spatial axes: 2 (``YX``) or 3 (``ZYX``).
    min_size : int, optional
        Minimum object / region size in pixels.
    min_seed_size, keep_seedless, fill_holes : optional
        Instance mode with a boundary class: see :func:`instance_labels`.
    band_pixels : int or None, optional
        Spatial blocks with more pixels than this are processed in bands of about this many
        pixels along the first spatial axis (Y, or Z in 3D), which bounds the temporary memory
        (see :mod:`~napari_unet.core.labels.banded`). None: 8 Mpx. The result does not depend on it,
        except that the watershed of objects crossing a band seam only sees 64 rows (at most
        one band) of context on either side.

    Returns
    -------
    numpy.ndarray
        Labels of shape ``codes.shape``: semantic (``uint8`` class indices) or instance
        (``0`` background, ``1 .. N`` unique across the leading axes; ``uint16``, or ``uint32``
        beyond 65535 objects).

    Raises
    ------
    ValueError
        For a bad ``mode``, ``n_classes``, ``spatial_ndim``, ``boundary_class``, size or
        ``band_pixels``, for ``codes`` / ``landscape`` of the wrong dtype or shape, or for a
        landscape missing (or given without ``boundary_class``) in instance mode.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(repr(m) for m in MODES)}, got {mode!r}")
    if isinstance(n_classes, bool) or not isinstance(n_classes, Integral) or not 1 <= n_classes <= MAX_CLASSES:
        raise ValueError(f"n_classes must be an integer in 1..{MAX_CLASSES} (label features), got {n_classes!r}")
    n_classes = int(n_classes)
    if isinstance(spatial_ndim, bool) or not isinstance(spatial_ndim, Integral) or spatial_ndim not in _SPATIAL_NDIMS:
        raise ValueError(f"spatial_ndim must be 2 (YX) or 3 (ZYX), got {spatial_ndim!r}")
    spatial_ndim = int(spatial_ndim)
    min_size = _check_count("min_size", min_size, 0, "pixels")
    min_seed_size = _check_count("min_seed_size", min_seed_size, 0, "pixels")
    band_pixels = DEFAULT_BAND_PIXELS if band_pixels is None else _check_count("band_pixels", band_pixels, 1, "pixels")

    codes = _as_array_like(codes)
    if np.dtype(codes.dtype) != np.uint8:
        raise ValueError(f"codes must be a uint8 array (label features), got dtype {np.dtype(codes.dtype)}")
    if codes.ndim < spatial_ndim:
        raise ValueError(
            f"codes must have at least {spatial_ndim} dimensions ((*leading, "
            f"{'Z, ' if spatial_ndim == 3 else ''}Y, X)) for spatial_ndim={spatial_ndim}, "
            f"got shape {tuple(codes.shape)}"
        )
    shape = tuple(int(n) for n in codes.shape)
    leading = shape[: len(shape) - spatial_ndim]

    if mode == "semantic":
        blocks = (
            (index, lambda view, index=index: np.bitwise_and(np.asarray(codes[index]), CLASS_MASK, out=view))
            for index in np.ndindex(*leading)
        )
        return semantic_stack(
            shape, n_classes, blocks, min_size=min_size, spatial_ndim=spatial_ndim, band_pixels=band_pixels
        )

    boundary_class = _validate_boundary_class(boundary_class, n_classes)
    if landscape is not None:
        landscape = _as_array_like(landscape)
        if boundary_class is None:
            raise ValueError(
                "landscape is only used for instances with a boundary class, but boundary_class is None; "
                "pass landscape=None"
            )
        if np.dtype(landscape.dtype) != np.uint8:
            raise ValueError(f"landscape must be a uint8 array (label features), got dtype {np.dtype(landscape.dtype)}")
        if tuple(landscape.shape) != shape:
            raise ValueError(
                f"landscape must have the shape of codes {shape}, got {tuple(landscape.shape)}"
            )
    elif boundary_class is not None:
        raise ValueError(f"boundary_class={boundary_class} needs the landscape (uint8, shape {shape}), got None")
    blocks = (
        (index, np.asarray(codes[index]), None if landscape is None else landscape[index])
        for index in np.ndindex(*leading)
    )
    return instance_stack(
        shape, blocks, boundary_class=boundary_class, spatial_ndim=spatial_ndim, min_size=min_size,
        min_seed_size=min_seed_size, keep_seedless=bool(keep_seedless), band_pixels=band_pixels,
        fill_holes=bool(fill_holes) and boundary_class is not None,
    )
