"""Label images from per-class probabilities: :func:`semantic_labels` and :func:`instance_labels`.

Layout of the probabilities, connectivity and the block-by-block processing are described in
:mod:`~napari_unet.core.labels.postprocess`; the labels are made from the label features of each
block (:func:`~napari_unet.core.inference.features.features_from_probabilities`) by
:mod:`~napari_unet.core.labels.making`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from numbers import Integral, Real
from typing import Any

import numpy as np

from ..inference.features import CLASS_MASK, MAX_CLASSES, features_from_probabilities
from ..options import check_number
from .banded import DEFAULT_BAND_PIXELS
from .making import instance_stack, semantic_stack

SPATIAL_NDIMS = (2, 3)


# --------------------------------------------------------------------------------------
# dtype helpers
# --------------------------------------------------------------------------------------
# --------------------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------------------
def _as_array_like(probabilities: Any) -> Any:
    """Keep array-likes with ``shape``/``ndim``/indexing (numpy, dask, zarr); convert the rest."""
    if hasattr(probabilities, "shape") and hasattr(probabilities, "ndim") and hasattr(probabilities, "__getitem__"):
        return probabilities
    return np.asarray(probabilities)


def _validate(probabilities: Any, *, spatial_ndim: int, min_size: int, threshold: float) -> Any:
    """Validate the common arguments and return ``probabilities`` as an indexable array."""
    if isinstance(spatial_ndim, bool) or not isinstance(spatial_ndim, Integral) or spatial_ndim not in SPATIAL_NDIMS:
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


def _iter_blocks(probabilities: Any, spatial_ndim: int) -> Iterator[tuple[tuple[int, ...], np.ndarray]]:
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
    block: np.ndarray,
    *,
    boundary_class: int | None,
    threshold: float,
    seed_threshold: float | None,
    distance_channel: int | None = None,
    foreground_threshold: float | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Label features of one probability block ``(n_classes, *spatial)``.

    Beyond :data:`~napari_unet.core.inference.features.MAX_CLASSES` classes (no boundary class) the
    foreground is coded as class 1, which is all instance labelling needs.
    """
    if block.shape[0] > MAX_CLASSES and boundary_class is None:
        return (_class_map(block, threshold) != 0).astype(np.uint8), None
    return features_from_probabilities(
        block,
        boundary_class=boundary_class,
        threshold=threshold,
        seed_threshold=seed_threshold,
        distance_channel=distance_channel,
        foreground_threshold=foreground_threshold,
    )


# --------------------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------------------
def semantic_labels(
    probabilities: np.ndarray, *, min_size: int = 0, spatial_ndim: int = 2, threshold: float = 0.5
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
    probabilities = _validate(probabilities, spatial_ndim=spatial_ndim, min_size=min_size, threshold=threshold)
    blocks = (
        (index, lambda view, block=block: _fill_classes(block, threshold, view))
        for index, block in _iter_blocks(probabilities, int(spatial_ndim))
    )
    return semantic_stack(
        tuple(probabilities.shape[1:]),
        int(probabilities.shape[0]),
        blocks,
        min_size=int(min_size),
        spatial_ndim=int(spatial_ndim),
        band_pixels=DEFAULT_BAND_PIXELS,
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
    foreground_threshold: float | None = None,
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
    foreground_threshold : float or None, optional
        With ``boundary_class``: foreground is where ``1 - p[0]`` is at least this (None: where
        background is not the most probable class); see
        :func:`~napari_unet.core.inference.features.label_features`.

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
    probabilities = _validate(probabilities, spatial_ndim=spatial_ndim, min_size=min_size, threshold=threshold)
    n_classes = int(probabilities.shape[0])
    if distance_channel is not None:
        if (
            isinstance(distance_channel, bool)
            or not isinstance(distance_channel, Integral)
            or not (1 <= distance_channel < n_classes)
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
    foreground_threshold = check_number(
        "foreground_threshold", foreground_threshold, minimum=0.0, maximum=1.0, optional=True
    )
    blocks = (
        (
            index,
            *_block_features(
                block,
                boundary_class=boundary_class,
                threshold=threshold,
                seed_threshold=seed_threshold,
                distance_channel=distance_channel,
                foreground_threshold=foreground_threshold,
            ),
        )
        for index, block in _iter_blocks(probabilities, int(spatial_ndim))
    )
    return instance_stack(
        tuple(probabilities.shape[1:]),
        blocks,
        boundary_class=boundary_class,
        spatial_ndim=int(spatial_ndim),
        min_size=int(min_size),
        min_seed_size=min_seed_size,
        keep_seedless=bool(keep_seedless),
        band_pixels=DEFAULT_BAND_PIXELS,
        fill_holes=bool(fill_holes),
    )
