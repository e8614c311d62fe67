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

from .checks import warn_nonfinite
from .layout import Layout
from .normalize import exact_in_float32, percentile_range, shift_to_float, strided_sample

#: Zoom limits: objects from 1/10 to 25 times the model's object size (e.g. 2-450 px for 18-px models).
MIN_FACTOR, MAX_FACTOR = 0.04, 10.0


def zoom_factor(model_object_size: float | None, object_size: float | None) -> float:
    """``model_object_size / object_size``, validated; 1.0 when ``object_size`` is None."""
    if object_size is None:
        return 1.0
    if isinstance(object_size, bool) or not np.isfinite(object_size) or object_size <= 0:
        raise ValueError(f"object_size must be a positive number of pixels, got {object_size!r}")
    if not model_object_size:
        raise ValueError("this model does not record the object size it was trained on, so object_size= cannot be used")
    factor = float(model_object_size) / float(object_size)
    if not MIN_FACTOR <= factor <= MAX_FACTOR:
        raise ValueError(
            f"object_size {object_size:g} px would zoom the image by {factor:.3g} "
            f"(model objects are {model_object_size:g} px); supported zoom is {MIN_FACTOR}..{MAX_FACTOR}"
        )
    return factor


def zoom_ranges(view: Any, layout: Layout, percentiles: Any, image_name: str = "image") -> dict[str, np.ndarray]:
    """What :func:`zoom_image` needs so that the zoom keeps wide and non-finite values right.

    ``{}`` for an image float32 holds exactly and whose values are all finite. Otherwise
    (uint32, 64-bit integers, float64, or NaN/±inf, which are reported with a
    :class:`~napari_unet.core.image.checks.NonFiniteWarning`): ``{"lo": ..., "hi": ...}``, the
    ``percentiles`` of every channel of ``view`` (finite values only, raw units).
    """
    found = warn_nonfinite(view, layout, image_name)
    if exact_in_float32(view.dtype) and not found.count:
        return {}
    c_axis = len(layout.loop_axes)
    lo, hi = percentile_range(strided_sample(view, keep=(c_axis,)), *percentiles, channel_axis=c_axis)
    return {"lo": lo, "hi": hi}


def zoom_image(view: Any, layout: Layout, factor: float, *, lo: Any = None, hi: Any = None) -> np.ndarray:
    """Zoom the spatial axes of ``view`` (axes ``layout.work_axes``) by ``factor``, linear
    interpolation, float32; loop and channel axes unchanged.

    With ``lo`` and ``hi`` (per channel of ``view``, from :func:`zoom_ranges`) each channel is
    shifted by ``lo`` in float64 before it becomes float32 (the later normalisation does not
    change), and NaN and -inf become its ``lo``, +inf its ``hi``, so they do not spread.
    """
    n_lead = len(layout.loop_axes) + 1
    spatial = view.shape[n_lead:]
    new = tuple(max(1, int(round(s * factor))) for s in spatial)
    out = np.empty(tuple(view.shape[:n_lead]) + new, np.float32)
    for idx in np.ndindex(*view.shape[:n_lead]):
        if lo is None:
            plane = np.asarray(view[idx], dtype=np.float32)
        else:
            c = idx[-1]
            plane = shift_to_float(np.asarray(view[idx])[None], lo[c : c + 1])[0]
            np.nan_to_num(plane, copy=False, nan=0.0, posinf=float(hi[c] - lo[c]), neginf=0.0)
        out[idx] = resize(plane, new, order=1, mode="reflect", anti_aliasing=factor < 1, preserve_range=True)
    return out


def zoom_back(probs: np.ndarray, spatial_ndim: int, shape: tuple[int, ...]) -> np.ndarray:
    """Resize (classes, *loop, *spatial) probabilities back to spatial ``shape`` (linear)."""
    n_lead = probs.ndim - spatial_ndim
    out = np.empty(probs.shape[:n_lead] + tuple(shape), probs.dtype)
    for idx in np.ndindex(*probs.shape[:n_lead]):
        out[idx] = resize(probs[idx], shape, order=1, mode="edge", anti_aliasing=False, preserve_range=True)
    return out
