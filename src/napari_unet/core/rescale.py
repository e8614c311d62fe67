"""Rescaling images so their objects match the size a model was trained on.

Like cellpose's *diameter*: a model records the typical object diameter of its training data
(``spec.object_size``, pixels); given the typical diameter of the objects in an image, the
image is zoomed by ``model size / image size`` before prediction and the probabilities are
zoomed back, so labels always have the input's shape.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from skimage.transform import resize

from .axes import Layout

#: Zoom limits: objects from 1/10 to 25 times the model's object size (e.g. 2-450 px for 18-px models).
MIN_FACTOR, MAX_FACTOR = 0.04, 10.0


def zoom_factor(model_object_size: float | None, object_size: float | None) -> float:
    """``model_object_size / object_size``, validated; 1.0 when ``object_size`` is None."""
    if object_size is None:
        return 1.0
    if isinstance(object_size, bool) or not np.isfinite(object_size) or object_size <= 0:
        raise ValueError(f"object_size must be a positive number of pixels, got {object_size!r}")
    if not model_object_size:
        raise ValueError(
            "this model does not record the object size it was trained on, so object_size= cannot be used"
        )
    factor = float(model_object_size) / float(object_size)
    if not MIN_FACTOR <= factor <= MAX_FACTOR:
        raise ValueError(
            f"object_size {object_size:g} px would zoom the image by {factor:.3g} "
            f"(model objects are {model_object_size:g} px); supported zoom is {MIN_FACTOR}..{MAX_FACTOR}"
        )
    return factor


def zoom_image(view: Any, layout: Layout, factor: float) -> np.ndarray:
    """Zoom the spatial axes of ``view`` (axes ``layout.work_axes``) by ``factor``, linear
    interpolation, float32; loop and channel axes unchanged."""
    n_lead = len(layout.loop_axes) + 1
    spatial = view.shape[n_lead:]
    new = tuple(max(1, int(round(s * factor))) for s in spatial)
    out = np.empty(tuple(view.shape[:n_lead]) + new, np.float32)
    for idx in np.ndindex(*view.shape[:n_lead]):
        plane = np.asarray(view[idx], dtype=np.float32)
        out[idx] = resize(plane, new, order=1, mode="reflect", anti_aliasing=factor < 1, preserve_range=True)
    return out


def zoom_back(probs: np.ndarray, spatial_ndim: int, shape: tuple[int, ...]) -> np.ndarray:
    """Resize (classes, *loop, *spatial) probabilities back to spatial ``shape`` (linear)."""
    n_lead = probs.ndim - spatial_ndim
    out = np.empty(probs.shape[:n_lead] + tuple(shape), probs.dtype)
    for idx in np.ndindex(*probs.shape[:n_lead]):
        out[idx] = resize(probs[idx], shape, order=1, mode="edge", anti_aliasing=False, preserve_range=True)
    return out
