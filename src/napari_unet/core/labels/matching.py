"""Objects of two label images matched by overlap: one home for z-linking, tracking and block stitching.

:func:`overlap_iou` gives the intersection over union of every pair of objects that share pixels
(counted from the shared pixels alone, never object by object); :func:`one_to_one` keeps the
one-to-one matches that maximise the summed IoU, solving
:func:`scipy.optimize.linear_sum_assignment` only inside groups of objects that compete (most
groups are a single pair). Used by :mod:`.zlink` (planes of a stack), :mod:`.tracking` (frames of a
time-lapse) and :mod:`~napari_unet.core.blocks.stitch` (the two sides of a block face).
"""

from __future__ import annotations

from typing import Any

import numpy as np


def overlap_iou(a: Any, b: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(ids in a, ids in b, IoU)`` of every pair of objects (non-zero labels) of ``a`` and ``b``
    (same shape) that share pixels, sorted by the id in ``a``, then in ``b``."""
    a, b = np.asarray(a).ravel(), np.asarray(b).ravel()
    both = (a != 0) & (b != 0)
    if not both.any():
        return np.zeros(0, a.dtype), np.zeros(0, b.dtype), np.zeros(0)
    a_ids, a_area = np.unique(a[a != 0], return_counts=True)
    b_ids, b_area = np.unique(b[b != 0], return_counts=True)
    ai = np.searchsorted(a_ids, a[both])
    bi = np.searchsorted(b_ids, b[both])
    pairs, inter = np.unique(ai.astype(np.int64) * len(b_ids) + bi, return_counts=True)
    ai, bi = np.divmod(pairs, len(b_ids))
    return a_ids[ai], b_ids[bi], inter / (a_area[ai] + b_area[bi] - inter)


def one_to_one(a: np.ndarray, b: np.ndarray, iou: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The one-to-one matches among candidate pairs ``(a[i], b[i])`` that maximise the summed ``iou``
    (all > 0), solved per group of objects joined by candidate pairs. Returns the matched ``(a, b)``."""
    from scipy.optimize import linear_sum_assignment
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    if not a.size:
        return a, b
    au, a_inv = np.unique(a, return_inverse=True)
    bu, b_inv = np.unique(b, return_inverse=True)
    n = len(au) + len(bu)
    graph = coo_matrix((np.ones(len(a)), (a_inv, len(au) + b_inv)), shape=(n, n))
    _, group = connected_components(graph, directed=False)
    edge_group = group[a_inv]
    per_group = np.bincount(edge_group, minlength=group.max() + 1)
    simple = per_group[edge_group] == 1  # one object overlapping one other, and nothing else
    out_a, out_b = [a[simple]], [b[simple]]
    hard = np.flatnonzero(~simple)
    if hard.size:
        order = hard[np.argsort(edge_group[hard], kind="stable")]
        bounds = np.flatnonzero(np.diff(edge_group[order])) + 1
        for edges in np.split(order, bounds):
            rows, r_inv = np.unique(a[edges], return_inverse=True)
            cols, c_inv = np.unique(b[edges], return_inverse=True)
            matrix = np.zeros((len(rows), len(cols)))
            matrix[r_inv, c_inv] = iou[edges]
            r, c = linear_sum_assignment(matrix, maximize=True)
            ok = matrix[r, c] > 0  # an assignment where no pair was is no match
            out_a.append(rows[r[ok]])
            out_b.append(cols[c[ok]])
    return np.concatenate(out_a), np.concatenate(out_b)
