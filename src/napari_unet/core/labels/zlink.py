"""Linking 2D instance labels plane to plane into 3D objects (the ``"stitch"`` Z mode).

A 2D model segments a z-stack one plane at a time, so a nucleus spanning 20 planes comes out as
20 unrelated labels. :func:`link_planes` walks the stack along Z and gives each object of a plane
the label of the object of the plane before it that it overlaps best, when their IoU (intersection
over union of the two 2D masks) is at least ``threshold``. The matching is one to one (an object
continues at most one object and is continued by at most one): within each group of objects
linked by candidate pairs, :func:`scipy.optimize.linear_sum_assignment` picks the pairs with the
largest summed IoU. Objects left unmatched start new 3D objects; a 3D object ends at the first
plane where nothing continues it (a gap of one plane splits it).

Only the previous plane is held besides the stack itself (which is relabelled in place), and the
overlaps come from sparse counts of the label pairs that actually touch, so the extra memory is
O(plane) and the time is linear in the stack's size (plus the assignment of small groups).
"""

from __future__ import annotations

import logging
from numbers import Real

import numpy as np

from .making import smallest_label_dtype
from .matching import one_to_one, overlap_iou

logger = logging.getLogger(__name__)

#: Default IoU needed to link an object to one in the plane before (see ``benchmarks/zstack.py``).
DEFAULT_LINK_IOU = 0.1


def check_link_iou(value: object) -> float:
    """``value`` as an IoU threshold in (0, 1]; anything else raises a ValueError naming it."""
    if isinstance(value, bool) or not isinstance(value, Real) or not 0 < float(value) <= 1:
        raise ValueError(f"link_iou must be a number in (0, 1] (an IoU), got {value!r} ({type(value).__name__})")
    return float(value)


def match_planes(previous: np.ndarray, current: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """One-to-one matches between the objects of two planes with IoU >= ``threshold``.

    Parameters
    ----------
    previous, current : numpy.ndarray
        Integer labels of two planes of the same shape (0 = background).
    threshold : float
        Smallest IoU of a match.

    Returns
    -------
    prev_ids, cur_ids : numpy.ndarray
        ``int64`` label pairs: ``cur_ids[i]`` continues ``prev_ids[i]``.
    """
    prev_ids, cur_ids, iou = overlap_iou(previous, current)
    keep = iou >= threshold
    matched = one_to_one(prev_ids[keep].astype(np.int64), cur_ids[keep].astype(np.int64), iou[keep])
    return matched[0].astype(np.int64), matched[1].astype(np.int64)


def link_plane(
    previous: np.ndarray | None, plane: np.ndarray, total: int, threshold: float = DEFAULT_LINK_IOU
) -> tuple[np.ndarray, int]:
    """One step of :func:`link_planes`, for streaming over a stack plane by plane.

    ``previous``: the plane before, already linked (None for a stack's first plane); ``plane``:
    this plane's 2D objects; ``total``: ids used so far. Returns the plane's linked ids (int64:
    an object continuing one of ``previous`` takes its id, the others ``total + 1, ...`` in order
    of their ids) and the new total.
    """
    ids = np.unique(plane)
    ids = ids[ids != 0]
    new = np.zeros(ids.size, np.int64)
    if previous is not None and ids.size:
        p_match, c_match = match_planes(previous, plane, threshold)
        new[np.searchsorted(ids, c_match)] = p_match
    fresh = new == 0
    new[fresh] = np.arange(total + 1, total + 1 + int(fresh.sum()))
    total += int(fresh.sum())
    values = np.r_[0, new]
    return values[np.searchsorted(np.r_[0, ids], plane)], total


def link_planes(labels: np.ndarray, *, threshold: float = DEFAULT_LINK_IOU) -> np.ndarray:
    """Link the 2D objects of a ``(..., Z, Y, X)`` label stack into 3D objects.

    Parameters
    ----------
    labels : numpy.ndarray
        Integer labels, shape ``(*leading, Z, Y, X)``; each plane's objects are independent 2D
        objects (their ids need not be unique over the stack). Each index into the leading
        axes (e.g. a time point) is linked on its own. Relabelled in place when it is a writable
        numpy array of a dtype that holds the result.
    threshold : float
        IoU (0..1] an object needs with an object of the plane before to continue it.

    Returns
    -------
    numpy.ndarray
        Labels of the same shape: ``1 .. N`` over the whole array (unique across the leading
        axes too), ``uint16`` (``uint32`` beyond 65535 objects).
    """
    threshold = check_link_iou(threshold)
    labels = np.asarray(labels)
    if labels.ndim < 3:
        raise ValueError(f"link_planes needs labels with (..., Z, Y, X) axes, got shape {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be an integer array, got dtype {labels.dtype}")
    total = 0
    for index in np.ndindex(*labels.shape[:-3]):
        stack = labels[index]
        previous: np.ndarray | None = None
        for z in range(stack.shape[0]):
            plane = stack[z]
            linked, total = link_plane(previous, plane, total, threshold)
            if total > np.iinfo(labels.dtype).max:
                labels = labels.astype(smallest_label_dtype(total))
                stack, plane = labels[index], labels[index][z]
            plane[...] = linked
            previous = plane
    out_dtype = smallest_label_dtype(total)
    logger.info("z-linking: %d 3D object(s), IoU >= %.2f", total, threshold)
    return labels if labels.dtype == out_dtype else labels.astype(out_dtype)
