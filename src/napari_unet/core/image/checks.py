"""Checks every entry point makes on an image's content: no empty axis, and a count of the
pixel values that are not finite.

Numpy only (no torch, no napari), so the console API, the CLI, the napari panel and the reader
share them.

* :func:`check_not_empty` (called by :func:`~napari_unet.core.image.layout.plan_layout`, by
  :func:`~napari_unet.core.inference.planning.plan_for` before any axes guess, by
  :func:`napari_unet._sources.image_source` and, through :func:`empty_problem`, by the TIFF header
  check :func:`~napari_unet.core.image.tiffcheck.series_problem`): an axis of length 0 is one
  ``ValueError`` naming the shape.
* :func:`warn_nonfinite`: NaN and ±inf pixels are counted (exactly, over the channels fed to the
  network) and reported with one :class:`NonFiniteWarning`. What happens to them is decided in
  :mod:`~napari_unet.core.image.normalize`: percentiles come from the finite values only, and after
  normalisation NaN and -inf are 0 (the low percentile), +inf is 1 (the high percentile).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from .layout import Layout

__all__ = ["NonFinite", "NonFiniteWarning", "check_not_empty", "count_nonfinite", "empty_problem", "warn_nonfinite"]

#: Elements read at a time when counting non-finite values.
COUNT_CHUNK = 1 << 24


class NonFiniteWarning(UserWarning):
    """An image holds NaN or infinite pixel values (they were given a defined value)."""


def empty_problem(shape: Sequence[int]) -> str | None:
    """``"has shape (0, 64): every axis must have at least one pixel"`` when an axis of
    ``shape`` has length 0, else None."""
    shape = tuple(int(s) for s in shape)
    if any(s < 1 for s in shape):
        return f"has shape {shape}: every axis must have at least one pixel"
    return None


def check_not_empty(shape: Sequence[int], image_name: str = "image") -> None:
    """Raise ``ValueError("<image_name> has shape (0, 64): every axis must have at least one
    pixel")`` when an axis of ``shape`` has length 0."""
    problem = empty_problem(shape)
    if problem:
        raise ValueError(f"{image_name} {problem}")


@dataclass(frozen=True)
class NonFinite:
    """How many pixel values of an image are NaN, +inf and -inf, out of ``total``."""

    nan: int = 0
    posinf: int = 0
    neginf: int = 0
    total: int = 0

    @property
    def count(self) -> int:
        return self.nan + self.posinf + self.neginf

    def message(self, image_name: str) -> str:
        kinds = ", ".join(
            f"{n} {name}" for n, name in ((self.nan, "NaN"), (self.posinf, "+inf"), (self.neginf, "-inf")) if n
        )
        return (
            f"{image_name}: {self.count} of {self.total} pixel values are not finite ({kinds}); "
            "normalised with the finite values only, NaN and -inf set to the low percentile, "
            "+inf to the high percentile"
        )


def count_nonfinite(view: Any, layout: Layout) -> NonFinite:
    """NaN, +inf and -inf among the values of the channels ``layout`` feeds to the network.

    ``view`` is ``layout.arrange(image)`` (axes ``layout.work_axes``). Integer and boolean images
    hold none and are not read; float images are read once, in chunks of about
    :data:`COUNT_CHUNK` values (memory-mapped and dask arrays stay lazy).
    """
    n_loop = len(layout.loop_axes)
    spatial = tuple(int(s) for s in view.shape[n_loop + 1 :])
    total = math.prod(view.shape[:n_loop]) * layout.n_channels * math.prod(spatial)
    if np.dtype(view.dtype).kind != "f":
        return NonFinite(total=total)
    per_row = max(1, math.prod(spatial[1:]) * int(view.shape[n_loop]))
    step = max(1, COUNT_CHUNK // per_row)
    nan = posinf = neginf = 0
    for loop in np.ndindex(*view.shape[:n_loop]):
        plane = view[loop]
        for start in range(0, spatial[0], step):
            block = layout.select(np.asarray(plane[:, start : start + step]), raw=True)
            bad = ~np.isfinite(block)
            if bad.any():
                values = block[bad]
                n_nan = int(np.count_nonzero(np.isnan(values)))
                n_pos = int(np.count_nonzero(values > 0))
                nan, posinf, neginf = nan + n_nan, posinf + n_pos, neginf + values.size - n_nan - n_pos
    return NonFinite(nan, posinf, neginf, total)


def warn_nonfinite(view: Any, layout: Layout, image_name: str = "image") -> NonFinite:
    """:func:`count_nonfinite`, and one :class:`NonFiniteWarning` saying how many when there are any."""
    found = count_nonfinite(view, layout)
    if found.count:
        warnings.warn(NonFiniteWarning(found.message(image_name)), stacklevel=2)
    return found
