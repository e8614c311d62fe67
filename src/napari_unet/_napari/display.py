"""How a read image is shown in napari: units napari understands and robust contrast limits."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

#: Largest number of pixels per channel read to compute contrast limits.
CONTRAST_SAMPLES = 1_000_000
#: Percentiles used for the contrast limits (robust to hot pixels and empty background).
CONTRAST_PERCENTILES = (0.1, 99.9)
_UNIT_NAMES = {"micron": "micrometer", "sec": "second"}


def napari_units(units: Sequence[str | None]) -> tuple[str | None, ...]:
    """Map ``core.image.io`` unit names to pint names napari accepts; None where unknown or invalid.

    Parameters
    ----------
    units : sequence of str or None
        One entry per axis, e.g. ``("micron", "micron")``.

    Returns
    -------
    tuple of str or None
        e.g. ``("micrometer", "micrometer")``; ``"sec"`` becomes ``"second"``, other names
        (``"nm"``, ``"min"``) are kept when pint understands them.
    """
    import pint  # a napari dependency; only needed once a file is read

    registry = pint.get_application_registry()
    out: list[str | None] = []
    for unit in units:
        name = _UNIT_NAMES.get(unit, unit) if isinstance(unit, str) else None
        if name is not None:
            try:
                registry.parse_expression(name)
            except Exception:  # pint raises several kinds for unparsable strings
                logger.debug("unit %r is not a unit napari understands; using pixels", unit)
                name = None
        out.append(name)
    return tuple(out)


def _sample_steps(shape: Sequence[int], max_samples: int) -> tuple[int, ...]:
    """Per-axis strides so that the strided array has at most ``max_samples`` elements."""
    steps = [1] * len(shape)
    counts = list(shape)
    while math.prod(counts) > max_samples:
        i = int(np.argmax(counts))
        steps[i] *= 2
        counts[i] = -(-shape[i] // steps[i])
    return tuple(steps)


def robust_contrast_limits(
    data: Any, *, max_samples: int = CONTRAST_SAMPLES, percentiles: tuple[float, float] = CONTRAST_PERCENTILES
) -> tuple[float, float]:
    """Contrast limits from percentiles of a strided subsample of ``data``.

    Only every k-th element along each axis is read (at most ``max_samples`` elements), so a
    memory-mapped stack is not loaded.

    Parameters
    ----------
    data : array-like
        One channel, any number of dimensions.
    max_samples : int
        Upper bound on the number of elements read.
    percentiles : (float, float)
        Lower and upper percentile (default 0.1 and 99.9).

    Returns
    -------
    (float, float)
        ``(low, high)`` with ``high > low``; non-finite values are ignored.
    """
    if data.size == 0:
        return 0.0, 1.0
    steps = _sample_steps(tuple(data.shape), max_samples)
    sub = np.asarray(data[tuple(slice(None, None, s) for s in steps)])
    if sub.dtype.kind == "b":
        return 0.0, 1.0
    if sub.dtype.kind == "f":
        sub = sub[np.isfinite(sub)]
        if sub.size == 0:
            return 0.0, 1.0
    low, high = (float(v) for v in np.percentile(sub, percentiles))
    if not high > low:
        low, high = float(sub.min()), float(sub.max())
    if not high > low:
        high = low + 1.0
    return low, high
