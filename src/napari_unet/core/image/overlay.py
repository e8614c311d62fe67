"""A PNG picture of labels drawn over their image, for reports and the demo."""

from __future__ import annotations

import os
import pathlib

import numpy as np
from skimage.segmentation import find_boundaries

from .files import atomic_write


def overlay_rgb(image: np.ndarray, labels: np.ndarray, color: tuple[int, int, int] = (255, 200, 0)) -> np.ndarray:
    """uint8 RGB (Y, X, 3): the 2D ``image`` scaled to its 1–99.8 percentiles, object outlines in ``color``."""
    img = np.asarray(image, dtype=np.float32)
    if img.ndim != 2 or labels.shape != img.shape:
        raise ValueError(f"overlay needs a 2D image and labels of the same shape, got {img.shape} and {labels.shape}")
    lo, hi = np.percentile(img, [1, 99.8])
    gray = np.clip((img - lo) / max(hi - lo, 1e-6), 0, 1)
    rgb = np.repeat((gray * 255).astype(np.uint8)[..., None], 3, axis=2)
    rgb[find_boundaries(labels, mode="inner")] = color
    return rgb


def write_overlay_png(path: str | os.PathLike, image: np.ndarray, labels: np.ndarray) -> pathlib.Path:
    """Write :func:`overlay_rgb` as a PNG, atomically."""
    import imageio.v3 as iio  # a dependency of scikit-image

    path = pathlib.Path(path)
    with atomic_write(path) as tmp:
        iio.imwrite(tmp, overlay_rgb(image, labels), extension=".png")
    return path
