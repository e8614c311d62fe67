"""Instances across block faces: one object per nucleus, wherever the block borders fall.

Every block labels its objects on its extended region (core + halo, the halo at least the
largest object), so an object that reaches into a block's core is whole in that block's view.
Each block gives its core's objects temporary ids unique over the run (``block id * stride +
1..count``) and records, at each face with a neighbour, two strips one pixel thick: its own last
(first) core layer, and the neighbour's first (last) core layer *as it saw it*. On a face, the
ids of one block's own strip and the other block's view of the same pixels are paired; a pair
whose pixels overlap with an IoU of at least :data:`MATCH_IOU` within the strip is one object (a
merge edge). The edges of all faces form a graph over every block's objects; its connected
components (``scipy.sparse.csgraph``) are the final objects, numbered 1..N in block order, and
one pass over the output blocks writes them (:func:`final_ids`).

When both blocks label the object alike (they see the same pixels with the same context), the
strips agree exactly and the IoU is 1; the threshold only keeps a sliver where they disagree
from joining two different nuclei.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..labels.matching import overlap_iou
from .plan import BlockPlan

#: Two ids facing each other across a face are one object when their pixels in the strip overlap this much.
MATCH_IOU = 0.5


def strip_pairs(own: np.ndarray, seen: np.ndarray) -> np.ndarray:
    """Matched ``(own id, seen id)`` pairs (E, 2) of two views of the same strip of pixels."""
    own_ids, seen_ids, iou = overlap_iou(own.astype(np.uint64), seen.astype(np.uint64))
    keep = iou >= MATCH_IOU
    return np.stack([own_ids[keep], seen_ids[keep]], 1)


def face_edges(plan: BlockPlan, record: Callable[[int], dict[str, np.ndarray]]) -> np.ndarray:
    """Merge edges (E, 2) of temporary ids over every face of the grid; ``record(id)`` reads a
    block's completion record."""
    edges = [np.zeros((0, 2), np.uint64)]
    for block in plan.blocks():
        mine = record(block.id)
        for axis in range(len(plan.shape)):
            other = None if plan.is_loop(axis) else plan.neighbour(block, axis)
            if other is None:
                continue
            theirs = record(other.id)
            edges.append(strip_pairs(mine[f"own_next_{axis}"], theirs[f"seen_prev_{axis}"]))
            edges.append(strip_pairs(theirs[f"own_prev_{axis}"], mine[f"seen_next_{axis}"]))
    return np.concatenate(edges)


def merge(counts: np.ndarray, edges: np.ndarray, stride: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Final ids of every block's objects.

    Parameters
    ----------
    counts : numpy.ndarray
        Objects per block (block id order).
    edges : numpy.ndarray
        (E, 2) temporary ids that are one object.
    stride : int
        The id stride of the plan.

    Returns
    -------
    bases : numpy.ndarray
        Index of each block's first object among all objects.
    final : numpy.ndarray
        uint64 final id (1..N) of every object, in that order.
    n : int
        Number of objects after merging.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    counts = np.asarray(counts, np.int64)
    bases = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    total = int(counts.sum())
    if total == 0:
        return bases, np.zeros(0, np.uint64), 0
    nodes = _nodes(edges.astype(np.int64).ravel(), stride, bases).reshape(-1, 2) if len(edges) else np.zeros((0, 2))
    graph = coo_matrix((np.ones(len(nodes)), (nodes[:, 0], nodes[:, 1])), shape=(total, total))
    n, comp = connected_components(graph, directed=False)
    _, first = np.unique(comp, return_index=True)  # number components in order of their first object
    order = np.empty(n, np.uint64)
    order[np.argsort(first)] = np.arange(1, n + 1, dtype=np.uint64)
    return bases, order[comp], int(n)


def _nodes(temp: np.ndarray, stride: int, bases: np.ndarray) -> np.ndarray:
    t = temp.astype(np.int64) - 1
    return bases[t // stride] + t % stride


def final_ids(temp: np.ndarray, stride: int, bases: np.ndarray, final: np.ndarray) -> np.ndarray:
    """Temporary ids (0 = background) → final ids, same shape, uint64."""
    out = np.zeros(temp.shape, np.uint64)
    mask = temp > 0
    out[mask] = final[_nodes(temp[mask], stride, bases)]
    return out


def check_fits(n: int, dtype: Any) -> None:
    """ValueError when ``n`` objects do not fit the output's dtype."""
    dtype = np.dtype(dtype)
    if dtype.kind not in "ui" or n > np.iinfo(dtype).max:
        raise ValueError(f"{n} objects do not fit the output's dtype {dtype}; give an output of uint32 (or uint64)")
