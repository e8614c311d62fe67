"""Per-channel percentile normalisation, computed once over the whole image.

The percentiles come from a strided subsample of the *whole* image (every plane, every
frame), never from a tile, so all tiles are scaled alike and agree at their borders.

Two kinds of pixel values that a plain cast to float32 gets wrong are handled here, for every
path (tiles on the device, the size-estimate and halo probes, training patches):

* **Non-finite values.** Percentiles come from the finite values only; after normalisation NaN
  and -inf are 0 (the low percentile) and +inf is 1 (the high percentile), see
  :data:`NONFINITE_TO`. (:func:`~napari_unet.core.image.checks.warn_nonfinite` says how many.)
* **Wide values.** Integers wider than 16 bits and float64 (:func:`exact_in_float32` is False)
  get their low percentile subtracted in float64 *before* they become float32, so a uint32
  image around 4e9 spanning a few hundred levels keeps its contrast (:func:`shift_to_float`).
  Percentiles are taken in float64 (exact up to 2**53).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

DEFAULT_MAX_SAMPLES = 1 << 22  # ~4 M values per channel are plenty for a 1/99.8 percentile
#: Normalised values of non-finite pixels (keyword arguments of numpy's and torch's ``nan_to_num``).
NONFINITE_TO = {"nan": 0.0, "posinf": 1.0, "neginf": 0.0}


def exact_in_float32(dtype: Any) -> bool:
    """Whether every value of ``dtype`` converts to float32 exactly (bool, 8/16-bit integers,
    float16/float32); uint32, int32, 64-bit integers and float64 do not."""
    dtype = np.dtype(dtype)
    return (
        dtype.kind == "b" or (dtype.kind in "iu" and dtype.itemsize <= 2) or (dtype.kind == "f" and dtype.itemsize <= 4)
    )


def shift_to_float(block: np.ndarray, lo: Any, dtype: Any = np.float32, channel_axis: int = 0) -> np.ndarray:
    """``block - lo`` (``lo`` per entry of ``channel_axis``) computed in float64, as ``dtype``."""
    shape = [1] * block.ndim
    shape[channel_axis] = -1
    out = block.astype(np.float64)
    out -= np.asarray(lo, dtype=np.float64).reshape(shape)
    return out.astype(dtype, copy=False)


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
        float64 arrays of shape (n_channels,), from the finite values only; ``hi > lo`` is
        guaranteed (a flat channel gets ``hi = lo + 1`` so it maps to 0 instead of dividing by
        zero; a channel without finite values gets 0 and 1).
    """
    if not 0 <= low < high <= 100:
        raise ValueError(f"percentiles must satisfy 0 <= low < high <= 100, got low={low}, high={high}")
    data = np.moveaxis(np.asarray(sample), channel_axis, 0)
    data = data.reshape(data.shape[0], -1).astype(np.float64, copy=False)
    finite = np.isfinite(data)
    if finite.all():
        lo, hi = np.percentile(data, [low, high], axis=1)
    else:  # percentiles of the finite values; a channel without any maps to 0
        lo, hi = np.zeros(len(data)), np.zeros(len(data))
        for i, (row, ok) in enumerate(zip(data, finite)):
            if ok.any():
                lo[i], hi[i] = np.percentile(row[ok], [low, high])
    flat = hi <= lo
    hi = np.where(flat, lo + 1.0, hi)
    return lo, hi


def apply_range(block: np.ndarray, lo: np.ndarray, hi: np.ndarray, dtype: Any = np.float32) -> np.ndarray:
    """Map ``block`` (C, ...) linearly so that ``lo`` → 0 and ``hi`` → 1, per channel (no clipping).

    Wide values (:func:`exact_in_float32` False) are shifted in float64 first; non-finite values
    become :data:`NONFINITE_TO` (NaN and -inf 0, +inf 1).
    """
    shape = (-1,) + (1,) * (block.ndim - 1)
    scale = (1.0 / (np.asarray(hi, dtype=np.float64) - np.asarray(lo, dtype=np.float64))).astype(dtype).reshape(shape)
    if exact_in_float32(block.dtype):
        out = block.astype(dtype, copy=True)
        out -= np.asarray(lo, dtype=dtype).reshape(shape)
    else:
        out = shift_to_float(block, lo, dtype)
    out *= scale
    if block.dtype.kind == "f":
        np.nan_to_num(out, copy=False, **NONFINITE_TO)
    return out


def compute_percentiles(view: Any, layout: Any, low: float, high: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-model-channel percentiles over the whole arranged image ``view`` (work axes)."""
    c_axis = len(layout.loop_axes)
    sample = strided_sample(view, keep=(c_axis,))
    sample = np.moveaxis(sample, c_axis, 0)
    sample = layout.select(sample, raw=True)  # not float32 yet: uint32 around 4e9 keeps its levels
    return percentile_range(sample, low, high, channel_axis=0)
