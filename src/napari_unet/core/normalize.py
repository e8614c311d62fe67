"""Per-channel percentile normalisation, computed once over the whole image.

The percentiles come from a strided subsample of the *whole* image (every plane, every
frame), never from a tile, so all tiles are scaled alike and agree at their borders.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

DEFAULT_MAX_SAMPLES = 1 << 22  # ~4 M values per channel are plenty for a 1/99.8 percentile


def strided_sample(array: Any, max_samples: int = DEFAULT_MAX_SAMPLES, keep: tuple[int, ...] = ()) -> np.ndarray:
    """Read a regular subsample of ``array`` with at most about ``max_samples`` elements
    per entry of the axes in ``keep``.

    Every axis not in ``keep`` is strided by the same step (or by the largest step that axis
    allows), so each plane and frame contributes. Only the sampled elements are read from
    memory-mapped or dask arrays.
    """
    shape = tuple(int(s) for s in array.shape)
    other = [i for i in range(len(shape)) if i not in keep]
    total = math.prod(shape[i] for i in other)
    index: list[slice] = [slice(None)] * len(shape)
    if total > max_samples and other:
        # choose one step for all strided axes: prod(ceil(n_i / step)) <= max_samples
        step = max(1, int((total / max_samples) ** (1 / len(other))))
        while math.prod(-(-shape[i] // step) for i in other) > max_samples:
            step += 1
        for i in other:
            index[i] = slice(None, None, step)
    return np.asarray(array[tuple(index)])


def percentile_range(
    sample: np.ndarray, low: float = 1.0, high: float = 99.8, channel_axis: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel low/high percentiles of ``sample``.

    Returns
    -------
    lo, hi : ndarray
        float64 arrays of shape (n_channels,); ``hi > lo`` is guaranteed (a flat channel gets
        ``hi = lo + 1`` so it maps to 0 instead of dividing by zero).
    """
    if not 0 <= low < high <= 100:
        raise ValueError(f"percentiles must satisfy 0 <= low < high <= 100, got low={low}, high={high}")
    data = np.moveaxis(np.asarray(sample), channel_axis, 0)
    data = data.reshape(data.shape[0], -1).astype(np.float64, copy=False)
    lo, hi = np.percentile(data, [low, high], axis=1)
    flat = hi <= lo
    hi = np.where(flat, lo + 1.0, hi)
    return lo, hi


def apply_range(block: np.ndarray, lo: np.ndarray, hi: np.ndarray, dtype: Any = np.float32) -> np.ndarray:
    """Map ``block`` (C, ...) linearly so that ``lo`` → 0 and ``hi`` → 1, per channel (no clipping)."""
    shape = (-1,) + (1,) * (block.ndim - 1)
    lo_ = np.asarray(lo, dtype=dtype).reshape(shape)
    scale = (1.0 / (np.asarray(hi, dtype=np.float64) - np.asarray(lo, dtype=np.float64))).astype(dtype).reshape(shape)
    out = block.astype(dtype, copy=True)
    out -= lo_
    out *= scale
    return out
