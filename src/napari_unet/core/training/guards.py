"""Checks that keep training from producing a silent wrong result: bad inputs, divergence, no model.

* :func:`check_finite_image`: training images with NaN or infinite pixels are refused up front
  (a single NaN pixel makes every loss NaN, so no epoch would ever improve and no model would be
  written). They are refused rather than skipped: leaving data out silently changes the model.
* :func:`check_label_ids`: negative label ids are refused, naming the value.
* :func:`check_loss`: a loss that becomes NaN or infinite stops training at once (the weights
  are garbage from then on) with :class:`TrainingError`, the checkpoints written so far untouched.
* :func:`check_written`: a run that ends without its model file on disk says so instead of
  reporting a file that does not exist.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["TrainingError", "check_finite_image", "check_label_ids", "check_loss", "check_written"]


class TrainingError(ValueError):
    """Training cannot go on or produced no model; the message says why and what to try."""


def check_finite_image(view: Any, layout: Any, name: str) -> None:
    """Raise ValueError when the channels of ``view`` (the image in work order) used for training
    hold NaN or infinite values; integer images are not read."""
    if not np.issubdtype(np.dtype(view.dtype), np.inexact):
        return
    for loop in np.ndindex(*layout.loop_shape):
        block = np.asarray(view[loop])  # (C, *spatial): the channels trained on, in their own dtype
        if layout.channel_axis is not None:
            block = block[:3] if layout.to_gray else block[list(layout.channels)]
        finite = np.isfinite(block)
        if finite.all():
            continue
        where = " ".join(f"{a.lower()}={i}" for a, i in zip(layout.loop_axes, loop))
        first = np.argwhere(~finite)[0][1:]
        at = ", ".join(f"{a.lower()}={i}" for a, i in zip(layout.spatial_axes, first))
        raise ValueError(
            f"{name}{f' ({where})' if where else ''} holds {int(finite.size - finite.sum())} NaN or infinite "
            f"pixel value(s), the first at {at}; training needs finite values: replace them "
            "(e.g. numpy.nan_to_num) or leave this image out"
        )


def check_label_ids(labels: np.ndarray, what: str) -> None:
    """Raise ValueError naming the smallest value when integer ``labels`` hold negative ids."""
    if labels.size and np.issubdtype(labels.dtype, np.signedinteger) and labels.min() < 0:
        low = int(labels.min())
        n = int(np.count_nonzero(labels < 0))
        raise ValueError(
            f"{what} hold negative values (smallest {low}, {n} pixel(s)); labels must be 0 (background) or positive ids"
        )


def check_loss(value: float, *, epoch: int, step: int, lr: float) -> None:
    """Raise TrainingError when a training loss is NaN or infinite."""
    if not math.isfinite(value):
        raise TrainingError(
            f"training diverged: the loss became {value} at epoch {epoch}, step {step} (peak learning rate "
            f"{lr:g}); the checkpoints written before stay as they are; try a lower learning rate (lr), "
            "and check the images and labels"
        )


def check_written(output: Path | None, best: float, metric: str) -> None:
    """Raise TrainingError when ``output`` was given but no model file is there at the end of training."""
    if output is not None and not Path(output).is_file():
        raise TrainingError(
            f"training ended without writing a model to {output}: no epoch improved on the best {metric} "
            f"({best:.4g}) recorded for this run; nothing is saved there"
        )
