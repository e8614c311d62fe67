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
from numbers import Integral

import numpy as np

from ..inference.features import CLASS_MASK, MAX_CLASSES
from .banded import DEFAULT_BAND_PIXELS
from .making import instance_stack, semantic_stack
from .probabilities import (
    SPATIAL_NDIMS,
    _as_array_like,
    _check_count,
    _validate_boundary_class,
    instance_labels,
    semantic_labels,
)

logger = logging.getLogger(__name__)

#: The label modes accepted by :func:`labels_from_probabilities`.
MODES: tuple[str, ...] = ("semantic", "instances")


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
    foreground_threshold: float | None = None,
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
    seed_threshold, min_seed_size, keep_seedless, distance_channel, fill_holes, foreground_threshold : optional
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
        return semantic_labels(probabilities, min_size=min_size, spatial_ndim=spatial_ndim, threshold=threshold)
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
            foreground_threshold=foreground_threshold,
        )
    raise ValueError(f"mode must be one of {', '.join(repr(m) for m in MODES)}, got {mode!r}")


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
    if isinstance(spatial_ndim, bool) or not isinstance(spatial_ndim, Integral) or spatial_ndim not in SPATIAL_NDIMS:
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
            raise ValueError(f"landscape must have the shape of codes {shape}, got {tuple(landscape.shape)}")
    elif boundary_class is not None:
        raise ValueError(f"boundary_class={boundary_class} needs the landscape (uint8, shape {shape}), got None")
    blocks = (
        (index, np.asarray(codes[index]), None if landscape is None else landscape[index])
        for index in np.ndindex(*leading)
    )
    return instance_stack(
        shape,
        blocks,
        boundary_class=boundary_class,
        spatial_ndim=spatial_ndim,
        min_size=min_size,
        min_seed_size=min_seed_size,
        keep_seedless=bool(keep_seedless),
        band_pixels=band_pixels,
        fill_holes=bool(fill_holes) and boundary_class is not None,
    )
