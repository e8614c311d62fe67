"""Turn per-class probabilities into label images (semantic or instance).

Every function here takes a probability array laid out as ``(n_classes, *leading, *spatial)``:

* axis 0 is the class axis; class 0 is background. With several classes the values are
  per-class probabilities (softmax output) that sum to 1 over the class axis. With a single
  class the value is the foreground probability and ``threshold`` decides foreground.
* then any number of *leading* axes (time, channels of a batch, Z when a 2D model ran slice by
  slice, ...), each index of which is processed independently;
* then ``spatial_ndim`` spatial axes: 2 (``YX``) or 3 (``ZYX``).

Output labels have shape ``probabilities.shape[1:]``.

The work is done one *spatial block* (one 2D image or 3D volume, i.e. one index into the
leading axes) at a time, so the only whole-stack array ever allocated is the output itself.
This also means ``probabilities`` may be a lazy array (dask, zarr): only one block is
materialised at a time.

Connectivity
------------
Connected components and watershed use *1-connectivity* everywhere: pixels (voxels) are
neighbours only when they share a face (4-neighbourhood in 2D, 6-neighbourhood in 3D).
Diagonal contacts do not join objects, which keeps thin separations between touching nuclei
effective.

Algorithms come from :mod:`scipy.ndimage` (connected components) and :mod:`skimage`
(seeded watershed). Size filtering and consecutive relabelling use one ``np.bincount`` and a
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
from scipy import ndimage
from skimage.segmentation import watershed

__all__ = [
    "MODES",
    "instance_labels",
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
def smallest_label_dtype(max_label: int) -> np.dtype:
    """Return the smallest unsigned integer dtype used for instance labels up to ``max_label``.

    Instance labels are at least ``uint16`` (what napari and most tools expect for label
    images), ``uint32`` when more than 65535 labels are needed, and ``uint64`` beyond
    ``2**32 - 1``.

    Parameters
    ----------
    max_label : int
        The largest label value that must be representable (e.g. the number of objects).

    Returns
    -------
    numpy.dtype
        ``uint16`` if ``max_label <= 65535``, ``uint32`` if ``max_label <= 2**32 - 1``,
        else ``uint64``.

    Raises
    ------
    ValueError
        If ``max_label`` is negative or larger than ``2**64 - 1``.
    TypeError
        If ``max_label`` is not an integer.
    """
    if isinstance(max_label, bool) or not isinstance(max_label, Integral):
        raise TypeError(f"max_label must be an integer, got {max_label!r} ({type(max_label).__name__})")
    max_label = int(max_label)
    if max_label < 0:
        raise ValueError(f"max_label must be >= 0, got {max_label}")
    if max_label <= np.iinfo(np.uint16).max:
        return np.dtype(np.uint16)
    if max_label <= np.iinfo(np.uint32).max:
        return np.dtype(np.uint32)
    if max_label <= np.iinfo(np.uint64).max:
        return np.dtype(np.uint64)
    raise ValueError(f"max_label {max_label} does not fit in uint64 (max {np.iinfo(np.uint64).max})")


def _semantic_dtype(n_classes: int) -> np.dtype:
    """Dtype for semantic labels whose values are class indices ``0 .. n_classes - 1``.

    ``uint8`` while the largest class index fits (``n_classes <= 256``), then ``uint16``
    (or wider for absurd class counts).
    """
    if n_classes - 1 <= np.iinfo(np.uint8).max:
        return np.dtype(np.uint8)
    return smallest_label_dtype(n_classes - 1)


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


def _structure(spatial_ndim: int) -> np.ndarray:
    """Face-only (1-connectivity) structuring element for ``spatial_ndim`` dimensions."""
    return ndimage.generate_binary_structure(spatial_ndim, 1)


def _filter_and_relabel(labels: np.ndarray, min_size: int) -> tuple[np.ndarray, int]:
    """Remove labels with fewer than ``min_size`` pixels and relabel the rest ``1..N``.

    Parameters
    ----------
    labels : numpy.ndarray
        Non-negative integer labels of one spatial block, any shape; 0 is background.
    min_size : int
        Objects with fewer pixels than this are set to 0.

    Returns
    -------
    relabelled : numpy.ndarray
        Same shape as ``labels``, labels consecutive from 1. ``labels`` itself when it was
        already consecutive with nothing removed, else a new ``int64`` array.
    count : int
        Number of objects kept.
    """
    counts = np.bincount(labels.ravel())
    keep = counts >= max(min_size, 1)
    if keep.size:
        keep[0] = False
    n_keep = int(np.count_nonzero(keep))
    # Every label 1..max is present and large enough: already consecutive, nothing to do.
    if n_keep == max(counts.size - 1, 0):
        return labels, n_keep
    lut = np.zeros(counts.size, dtype=np.int64)
    lut[keep] = np.arange(1, n_keep + 1, dtype=np.int64)
    return lut[labels], n_keep


def _remove_small_regions(class_map: np.ndarray, min_size: int, spatial_ndim: int) -> np.ndarray:
    """Set connected regions of each non-background class smaller than ``min_size`` to 0 (in place)."""
    structure = _structure(spatial_ndim)
    for cls in np.unique(class_map):
        if cls == 0:
            continue
        components, n = ndimage.label(class_map == cls, structure=structure)
        if n == 0:
            continue
        counts = np.bincount(components.ravel())
        small = counts < min_size
        small[0] = False
        if small.any():
            class_map[small[components]] = 0
    return class_map


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
    n_classes = int(probabilities.shape[0])
    out = np.zeros(tuple(probabilities.shape[1:]), dtype=_semantic_dtype(n_classes))
    for index, block in _iter_blocks(probabilities, spatial_ndim):
        class_map = _class_map(block, threshold)
        if min_size > 0:
            class_map = _remove_small_regions(class_map, min_size, spatial_ndim)
        out[index] = class_map
    logger.debug(
        "semantic labels: %d classes, shape %s, min_size=%d", n_classes, out.shape, min_size
    )
    return out


def _validate_boundary_class(boundary_class: int | None, n_classes: int) -> int | None:
    if boundary_class is None:
        return None
    if isinstance(boundary_class, bool) or not isinstance(boundary_class, Integral):
        raise ValueError(f"boundary_class must be an integer class index or None, got {boundary_class!r}")
    boundary_class = int(boundary_class)
    if n_classes < 3:
        raise ValueError(
            f"boundary_class={boundary_class} needs at least 3 classes (background=0, interior, "
            f"boundary), but probabilities have {n_classes} class(es) on axis 0"
        )
    if not 1 <= boundary_class < n_classes:
        raise ValueError(
            f"boundary_class must be a foreground class index in 1..{n_classes - 1} "
            f"(class 0 is background), got {boundary_class}"
        )
    return boundary_class


def _block_instances(
    block: np.ndarray,
    *,
    boundary_class: int | None,
    threshold: float,
    structure: np.ndarray,
    seed_threshold: float | None = None,
    min_seed_size: int = 0,
    keep_seedless: bool = True,
) -> np.ndarray:
    """Instance labels of one spatial block, before size filtering.

    Parameters
    ----------
    block : numpy.ndarray
        Shape ``(n_classes, *spatial)``.

    Returns
    -------
    numpy.ndarray
        Shape ``spatial``, integer labels (0 = background), not necessarily consecutive.
    """
    class_map = _class_map(block, threshold)
    foreground = class_map != 0
    if boundary_class is None:
        labels, _ = ndimage.label(foreground, structure=structure)
        return labels

    if seed_threshold is None:
        interior = foreground & (class_map != boundary_class)
    else:
        inner = [c for c in range(1, block.shape[0]) if c != boundary_class]
        interior = np.asarray(block[inner], dtype=np.float32).sum(axis=0) >= seed_threshold
    seeds, n_seeds = ndimage.label(interior, structure=structure)
    if min_seed_size > 1 and n_seeds:
        seeds, n_seeds = _filter_and_relabel(seeds, min_seed_size)
    # Flood from the interior seeds over the boundary-probability landscape: boundary pixels
    # are high ground, so the basins of two touching nuclei meet on the boundary line and
    # each boundary pixel goes to its neighbouring object.
    landscape = np.asarray(block[boundary_class], dtype=np.float32)
    labels = watershed(landscape, markers=seeds, mask=foreground | (seeds > 0), connectivity=1)
    # Foreground regions that hold no interior pixel at all (typically very small objects the
    # model sees as all-boundary) are unreachable by the flood; keep them as their own objects
    # rather than silently losing them. ``min_size`` removes them when they are noise.
    orphans = foreground & (labels == 0)
    if keep_seedless and orphans.any():
        extra, n_extra = ndimage.label(orphans, structure=structure)
        labels = labels.astype(np.int64, copy=False)
        labels[extra > 0] = extra[extra > 0] + n_seeds
        logger.debug("%d foreground region(s) without interior seed kept as objects", n_extra)
    return labels


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
      become objects of their own.

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
        ``boundary_class`` is not a valid foreground class, ``min_size`` is negative or
        ``threshold`` is not finite.
    """
    probabilities = _validate(
        probabilities, spatial_ndim=spatial_ndim, min_size=min_size, threshold=threshold
    )
    n_classes = int(probabilities.shape[0])
    boundary_class = _validate_boundary_class(boundary_class, n_classes)
    structure = _structure(int(spatial_ndim))

    # Start with the smallest dtype and widen only when the running total needs it, so the
    # one whole-stack array (the output) is never wider than necessary.
    out = np.zeros(tuple(probabilities.shape[1:]), dtype=smallest_label_dtype(0))
    total = 0
    n_blocks = 0
    for index, block in _iter_blocks(probabilities, int(spatial_ndim)):
        n_blocks += 1
        labels = _block_instances(
            block, boundary_class=boundary_class, threshold=threshold, structure=structure,
            seed_threshold=seed_threshold, min_seed_size=min_seed_size, keep_seedless=keep_seedless,
        )
        labels, count = _filter_and_relabel(labels, min_size)
        if count:
            new_total = total + count
            needed = smallest_label_dtype(new_total)
            if needed.itemsize > out.dtype.itemsize:
                logger.debug("instance labels: widening output from %s to %s", out.dtype, needed)
                out = out.astype(needed)
            labels = labels.astype(out.dtype, copy=False)
            if total:
                labels[labels > 0] += out.dtype.type(total)
            out[index] = labels
            total = new_total
        logger.debug("instance labels: block %s -> %d object(s)", index, count)
    logger.info(
        "instance labels: %d object(s) in %d block(s), shape %s, dtype %s",
        total,
        n_blocks,
        out.shape,
        out.dtype,
    )
    return out


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
    seed_threshold, min_seed_size, keep_seedless : optional
        Instance mode with a boundary class: see :func:`instance_labels`.

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
        )
    raise ValueError(
        f"mode must be one of {', '.join(repr(m) for m in MODES)}, got {mode!r}"
    )
