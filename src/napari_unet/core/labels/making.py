"""Label images from per-pixel label features: the label logic behind :mod:`.postprocess`.

:func:`~napari_unet.core.labels.postprocess.labels_from_features` and the probability functions of
:mod:`~napari_unet.core.labels.postprocess` validate their arguments and then run the code here, one
spatial block at a time: class maps with small regions removed (semantic), connected
components or seeded watershed from the seed bit (instances), size filtering and consecutive
numbering through lookup tables, and the whole-stack output that widens from ``uint16`` only
when the object count needs it. Large blocks are worked in bands (:mod:`.banded`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from numbers import Integral
from typing import Any

import numpy as np
from scipy import ndimage

from ..inference.features import CLASS_MASK, SEED_BIT
from .banded import BandedComponents, band_slices, banded_watershed

logger = logging.getLogger(__name__)


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


def _structure(spatial_ndim: int) -> np.ndarray:
    """Face-only (1-connectivity) structuring element for ``spatial_ndim`` dimensions."""
    return ndimage.generate_binary_structure(spatial_ndim, 1)


def _size_lut(sizes: np.ndarray, min_size: int, offset: int) -> tuple[np.ndarray, int]:
    """Lookup table removing objects smaller than ``min_size`` and numbering the rest.

    Parameters
    ----------
    sizes : numpy.ndarray
        Pixels per label (index 0 is background).
    min_size : int
        Labels with fewer pixels than this map to 0.
    offset : int
        Kept labels map to ``offset + 1 .. offset + count`` in label order.

    Returns
    -------
    lut : numpy.ndarray
        ``int64``, same length as ``sizes``.
    count : int
        Number of labels kept.
    """
    keep = sizes >= max(min_size, 1)
    if keep.size:
        keep[0] = False
    count = int(np.count_nonzero(keep))
    lut = np.zeros(sizes.size, dtype=np.int64)
    lut[keep] = np.arange(offset + 1, offset + count + 1, dtype=np.int64)
    return lut, count


def _remove_small_regions(class_map: np.ndarray, min_size: int, structure: np.ndarray, band_pixels: int) -> None:
    """Set connected regions of each non-background class smaller than ``min_size`` to 0 (in place)."""
    if min_size <= 1:
        return
    bands = band_slices(class_map.shape, band_pixels)
    present: set[int] = set()
    for start, stop in bands:
        present.update(np.flatnonzero(np.bincount(class_map[start:stop].ravel())).tolist())
    for cls in sorted(present - {0}):
        regions = BandedComponents(lambda start, stop, cls=cls: class_map[start:stop] == cls, bands, structure)
        small = regions.sizes < min_size
        small[0] = False
        if not small.any():
            continue
        for (start, stop), flags in regions.relabel(small):
            class_map[start:stop][flags] = 0


def semantic_stack(
    shape: tuple[int, ...],
    n_classes: int,
    blocks: Iterable[tuple[tuple[int, ...], Callable[[np.ndarray], Any]]],
    *,
    min_size: int,
    spatial_ndim: int,
    band_pixels: int,
) -> np.ndarray:
    """Semantic labels of a stack; ``blocks`` yields ``(index, fill)`` and ``fill(view)`` writes the class map."""
    out = np.zeros(shape, dtype=_semantic_dtype(n_classes))
    structure = _structure(spatial_ndim)
    for index, fill in blocks:
        view = out[index]
        fill(view)
        _remove_small_regions(view, min_size, structure, band_pixels)
    logger.debug("semantic labels: %d classes, shape %s, min_size=%d", n_classes, out.shape, min_size)
    return out


class _InstanceOutput:
    """The whole-stack instance label array: ``uint16`` at first, widened only when needed."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.array = np.zeros(shape, dtype=smallest_label_dtype(0))
        self.total = 0  # objects in the blocks finished so far
        self._written = False

    def block(self, index: tuple[int, ...], max_label: int) -> np.ndarray:
        """Writable view of block ``index``, with a dtype that holds ``max_label``."""
        needed = smallest_label_dtype(max_label)
        if needed.itemsize > self.array.dtype.itemsize:
            logger.debug("instance labels: widening output from %s to %s", self.array.dtype, needed)
            if self._written:
                self.array = self.array.astype(needed)
            else:  # still all zeros: no copy (and no pages touched)
                self.array = np.zeros(self.array.shape, dtype=needed)
        self._written = True
        return self.array[index]

    def result(self) -> np.ndarray:
        final = smallest_label_dtype(self.total)
        if final != self.array.dtype:  # seeds needed more room than the final objects
            self.array = self.array.astype(final)
        return self.array


def _instance_block(
    codes: np.ndarray,
    landscape: Any,
    output: _InstanceOutput,
    index: tuple[int, ...],
    *,
    boundary_class: int | None,
    structure: np.ndarray,
    min_size: int,
    min_seed_size: int,
    keep_seedless: bool,
    band_pixels: int,
    fill_holes: bool = False,
) -> int:
    """Label one spatial block from its features into ``output``; return its object count.

    Without ``boundary_class``: connected components of the foreground (class != 0). With it:
    seeds are the connected components of the seed bit (``min_seed_size`` filter), flooded by a
    seeded watershed of ``landscape`` over foreground | seeds; foreground no seed reaches forms
    objects of its own when ``keep_seedless``. Then the ``min_size`` filter and consecutive
    numbering after ``output.total``. Large blocks run band by band (:mod:`.banded`).
    """
    bands = band_slices(codes.shape, band_pixels)

    def foreground(start: int, stop: int) -> np.ndarray:
        return (codes[start:stop] & CLASS_MASK) != 0

    if boundary_class is None:
        objects = BandedComponents(foreground, bands, structure)
        lut, count = _size_lut(objects.sizes, min_size, output.total)
        labels = output.block(index, output.total + count)
        for (start, stop), values in objects.relabel(lut.astype(labels.dtype)):
            labels[start:stop] = values
        return count

    seeds = BandedComponents(lambda start, stop: (codes[start:stop] & SEED_BIT) != 0, bands, structure)
    seed_lut, n_seeds = _size_lut(seeds.sizes, min_seed_size, 0)
    labels = output.block(index, n_seeds)
    for (start, stop), values in seeds.relabel(seed_lut.astype(labels.dtype)):
        labels[start:stop] = values
    # Flood from the seeds over the boundary-probability landscape: boundary pixels are high
    # ground, so the basins of two touching nuclei meet on the boundary line and each boundary
    # pixel goes to its neighbouring object.
    if n_seeds:
        banded_watershed(landscape, labels, foreground, bands)
    sizes = np.zeros(n_seeds + 1, dtype=np.int64)
    for start, stop in bands:
        sizes += np.bincount(labels[start:stop].ravel(), minlength=n_seeds + 1)
    # Foreground regions that hold no seed at all (typically very small objects the model sees
    # as all-boundary) are unreachable by the flood; keep them as their own objects rather than
    # silently losing them. ``min_size`` removes them when they are noise. (``labels`` is read
    # when the mask is asked for, i.e. always the current output view.)
    orphans = None
    if keep_seedless:
        orphans = BandedComponents(
            lambda start, stop: foreground(start, stop) & (labels[start:stop] == 0), bands, structure
        )
        sizes = np.concatenate([sizes, orphans.sizes[1:]])
        if orphans.count:
            logger.debug("%d foreground region(s) without seed kept as objects", orphans.count)
    lut, count = _size_lut(sizes, min_size, output.total)
    labels = output.block(index, max(output.total + count, n_seeds))
    lut = lut.astype(labels.dtype)
    basin_lut = lut[: n_seeds + 1]
    orphan_values: Iterator[tuple[tuple[int, int], np.ndarray]] | None = None
    if orphans is not None:
        orphan_values = orphans.relabel(np.concatenate([lut[:1], lut[n_seeds + 1 :]]))
    for start, stop in bands:
        values = basin_lut[labels[start:stop]]
        if orphan_values is not None:
            _, extra = next(orphan_values)  # reads this band's mask before it is overwritten
            values += extra  # orphans are where the basins are 0
        labels[start:stop] = values
    if fill_holes and count:
        if len(bands) == 1:
            fill_enclosed_holes(labels)
        else:
            logger.debug("holes not filled in a block of %d bands", len(bands))
    return count


def fill_enclosed_holes(labels: np.ndarray) -> int:
    """Give every background region enclosed by one object that object's label (in place).

    A background region (fully connected: diagonal neighbours count, the complement of the
    objects' face connectivity) is a hole when it does not touch the block's border and every
    object pixel beside it belongs to the same object. Regions between several objects stay
    background. Returns the number of holes filled.
    """
    background = labels == 0
    if not background.any():
        return 0
    full = ndimage.generate_binary_structure(labels.ndim, labels.ndim)
    regions, n = ndimage.label(background, structure=full)
    if n == 0:
        return 0
    on_border = np.zeros(n + 1, bool)
    for axis in range(labels.ndim):
        for index in (0, -1):
            on_border[np.take(regions, index, axis=axis)] = True
    # for each region: the object labels beside it (face neighbours)
    owner = np.zeros(n + 1, np.int64)  # 0: none seen yet, -1: several objects
    for axis in range(labels.ndim):
        for shift in (1, -1):
            a = [slice(None)] * labels.ndim
            b = [slice(None)] * labels.ndim
            a[axis] = slice(1, None) if shift == 1 else slice(None, -1)
            b[axis] = slice(None, -1) if shift == 1 else slice(1, None)
            reg, lab = regions[tuple(a)], labels[tuple(b)]
            touch = (reg > 0) & (lab > 0)
            r, v = reg[touch], lab[touch].astype(np.int64)
            if r.size == 0:
                continue
            pairs = np.unique(np.stack([r, v]), axis=1)
            for region, value in pairs.T:
                seen = owner[region]
                owner[region] = value if seen in (0, value) else -1
    fill = (~on_border) & (owner > 0)
    fill[0] = False
    if not fill.any():
        return 0
    lut = np.where(fill, owner, 0).astype(labels.dtype)
    holes = fill[regions]
    labels[holes] = lut[regions[holes]]
    return int(fill.sum())


def instance_stack(
    shape: tuple[int, ...],
    blocks: Iterable[tuple[tuple[int, ...], np.ndarray, Any]],
    *,
    boundary_class: int | None,
    spatial_ndim: int,
    min_size: int,
    min_seed_size: int,
    keep_seedless: bool,
    band_pixels: int,
    fill_holes: bool = False,
) -> np.ndarray:
    """Instance labels of a stack; ``blocks`` yields ``(index, codes, landscape)`` per spatial block."""
    output = _InstanceOutput(shape)
    structure = _structure(spatial_ndim)
    n_blocks = 0
    for index, codes, landscape in blocks:
        n_blocks += 1
        count = _instance_block(
            codes,
            landscape,
            output,
            index,
            boundary_class=boundary_class,
            structure=structure,
            min_size=min_size,
            min_seed_size=min_seed_size,
            keep_seedless=keep_seedless,
            band_pixels=band_pixels,
            fill_holes=fill_holes,
        )
        output.total += count
        logger.debug("instance labels: block %s -> %d object(s)", index, count)
    out = output.result()
    logger.info(
        "instance labels: %d object(s) in %d block(s), shape %s, dtype %s", output.total, n_blocks, out.shape, out.dtype
    )
    return out
