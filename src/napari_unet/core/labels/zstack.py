"""Z-stacks segmented by a 2D instance model: how the planes' predictions become 3D objects.

A 2D model sees a z-stack one XY plane at a time (Z is a loop axis of the
:class:`~napari_unet.core.image.layout.Layout`). ``z_mode`` (:data:`~napari_unet.core.options.Z_MODES`)
says what :func:`~napari_unet.core.segment.iter_segment` makes of the planes:

``"3d"`` (default)
    The per-plane label features (class, seed bit, watershed ground; uint8) of the whole stack are
    read as one volume: Z becomes a spatial axis at label-making time, seeds are the 3D connected
    components of the planes' seeds and a 3D seeded watershed grows them (face connectivity).
    Memory: the uint8 features the planes mode keeps anyway.
``"stitch"``
    Each plane is labelled in 2D, then objects are linked plane to plane by IoU
    (:func:`~napari_unet.core.labels.zlink.link_planes`; one-to-one, IoU >= ``link_iou``),
    streaming with one plane of extra memory.
``"planes"``
    Independent 2D labels per plane (ids unique over the stack): what napari-unet did before.
``"3d-ortho"``
    Also predicts on the XZ and YZ planes of the stack, with Z resampled to the XY spacing by the
    ``anisotropy`` (Z spacing / XY spacing), and averages the three views' probabilities before
    the 3D watershed. About 1 + 2 x anisotropy times the network time of ``"3d"``; it holds the
    float32 image, normalised, and three float32 probability stacks (4 bytes x (classes + heads)
    per voxel each): about 50 bytes per voxel for the built-in model instead of the 2 bytes of
    ``"3d"``'s features.

With a ``T`` axis, each time point gets its own 3D labels. Only instance labels from 2D models on
images with a Z axis are affected: 3D models and semantic labels are unchanged.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..image.layout import Layout
from ..model.unet import UNet
from ..options import Z_MODES, check_anisotropy, check_choice
from ..progress import Progress
from .zlink import DEFAULT_LINK_IOU, check_link_iou, link_planes

__all__ = ["DEFAULT_Z_MODE", "AnisotropyWarning", "ZPlan", "iter_ortho_probabilities", "plan_z"]

log = logging.getLogger(__name__)

#: What a z-stack gives by default (measured in ``benchmarks/zstack.py``; see docs/stacks.md).
DEFAULT_Z_MODE = Z_MODES[0]
#: How to give the anisotropy, for messages.
ANISOTROPY_HINT = "give it with anisotropy= (Python), --anisotropy (napari-unet segment) or the layer's scale (napari)"


class AnisotropyWarning(UserWarning):
    """A z-stack mode needs the Z / XY spacing ratio but none is known; 1 (isotropic) is used."""


@dataclass(frozen=True)
class ZPlan:
    """How one z-stack's planes become labels.

    Attributes
    ----------
    mode : str
        One of :data:`~napari_unet.core.options.Z_MODES`.
    z : int
        Position of ``Z`` among the layout's loop axes.
    anisotropy : float or None
        Z spacing / XY spacing, when known or given.
    link_iou : float
        IoU needed to link objects of neighbouring planes (``"stitch"``).
    """

    mode: str
    z: int
    anisotropy: float | None = None
    link_iou: float = DEFAULT_LINK_IOU

    @property
    def volumes(self) -> bool:
        """Labels are made in 3D volumes (Z moved beside the spatial axes)."""
        return self.mode in ("3d", "3d-ortho")

    def to_volumes(self, array: np.ndarray, lead: int = 0) -> np.ndarray:
        """View of ``array`` (``lead`` axes, *loop, Y, X) with Z moved just before Y."""
        return np.moveaxis(array, lead + self.z, -3)

    def from_volumes(self, array: np.ndarray, lead: int = 0) -> np.ndarray:
        """Inverse of :meth:`to_volumes`."""
        return np.moveaxis(array, -3, lead + self.z)

    def link(self, labels: np.ndarray) -> np.ndarray:
        """2D labels in layout order (*loop, Y, X) linked along Z (``"stitch"``)."""
        return self.from_volumes(link_planes(self.to_volumes(labels), threshold=self.link_iou))

    def describe(self) -> str:
        text = {"3d": "3D watershed", "stitch": f"planes linked (IoU >= {self.link_iou:g})", "planes": "per plane"}
        extra = "" if self.anisotropy is None else f", anisotropy {self.anisotropy:.3g}"
        return f"z-stack: {text.get(self.mode, 'XY + XZ + YZ views, 3D watershed')}{extra}"


def plan_z(
    layout: Layout,
    model: UNet,
    *,
    mode: str,
    z_mode: str = DEFAULT_Z_MODE,
    anisotropy: float | None = None,
    link_iou: float = DEFAULT_LINK_IOU,
    image_name: str = "image",
) -> ZPlan | None:
    """The :class:`ZPlan` for segmenting ``layout``'s image with ``model``, or None when Z modes do
    not apply (no Z axis, a 3D model, or semantic labels). Checks the options in every case.

    Warns (:class:`AnisotropyWarning`) when ``"3d-ortho"`` has no ``anisotropy`` and uses 1.
    """
    z_mode = check_choice("z_mode", z_mode, Z_MODES)
    anisotropy = check_anisotropy(anisotropy)
    link_iou = check_link_iou(link_iou)
    if mode != "instances" or model.ndim != 2 or "Z" not in layout.loop_axes:
        return None
    if z_mode == "3d-ortho" and anisotropy is None:
        warnings.warn(
            f"z_mode='3d-ortho' resamples Z to the XY pixel size, but the Z / XY spacing of {image_name} is "
            f"unknown (no calibration); assuming 1 (isotropic): {ANISOTROPY_HINT}",
            AnisotropyWarning,
            stacklevel=3,
        )
    plan = ZPlan(z_mode, layout.loop_axes.index("Z"), anisotropy, link_iou)
    log.info("%s: %s", image_name, plan.describe())
    return plan


def iter_ortho_probabilities(
    image: Any,
    model: UNet,
    layout: Layout,
    plan: ZPlan,
    *,
    image_name: str = "image",
    channels: Any = None,
    channel_names: Any = None,
    **predict_options: Any,
) -> Generator[Progress, None, np.ndarray]:
    """Probabilities (classes + heads) averaged over the XY, XZ and YZ planes of a z-stack.

    Returns
    -------
    numpy.ndarray
        float32, shape ``(n_outputs, *loop shape without Z, Z, Y, X)`` (:meth:`ZPlan.to_volumes` order).
    """
    from scipy import ndimage

    from ..image.normalize import apply_range, compute_percentiles
    from ..inference.run import iter_predict

    view = layout.arrange(image)  # (*loop, C, Y, X)
    normalized = bool(predict_options.pop("normalized", False))
    percentiles = predict_options.pop("percentiles", None)
    yield Progress(0, 3, "predict", "z-stack: normalising the image (3 views)")
    data = layout.select(np.moveaxis(np.asarray(view), len(layout.loop_shape), 0), raw=True)  # (C, *loop, Y, X)
    if normalized:
        data = np.asarray(data, np.float32)
    else:
        lo, hi = compute_percentiles(view, layout, *(percentiles or model.spec.percentiles))
        data = apply_range(data, lo, hi)
    data = np.moveaxis(plan.to_volumes(data, lead=1), 0, -4)  # (*other, C, Z, Y, X)
    lead = data.ndim - 4
    other = "".join(a for a in layout.loop_axes if a != "Z")
    factor = 1.0 if plan.anisotropy is None else float(plan.anisotropy)
    n_z = data.shape[-3]
    options = dict(predict_options, normalized=True, layout_order=True, heads=True, estimate_size=False)
    total = None
    for step, (name, order) in enumerate((("XY", (-3, -2, -1)), ("XZ", (-2, -3, -1)), ("YZ", (-1, -3, -2)))):
        yield Progress(step, 3, "predict", f"z-stack: predicting on the {name} planes ({step + 1} of 3)")
        block = data
        if step and abs(factor - 1.0) > 0.02:
            zoom = [1.0] * data.ndim
            zoom[-3] = max(1, round(n_z * factor)) / n_z
            block = ndimage.zoom(data, zoom, order=1, prefilter=False, grid_mode=True, mode="nearest")
        # the plane's two axes last, the third looped over as "Z"
        axes_order = list(range(lead)) + [data.ndim + order[0], lead] + [data.ndim + a for a in order[1:]]
        probs = yield from iter_predict(
            np.transpose(block, axes_order),
            model,
            axes=other + "ZCYX",
            image_name=f"{image_name} ({name} planes)",
            **options,
        )  # (n_out, *other, a, b, c) in the order of axes_order
        back = np.argsort([0] + [1 + i for i in range(lead)] + [1 + lead + (o + 3) for o in order])
        probs = np.transpose(probs, back)
        if probs.shape[-3] != n_z:
            zoom = [1.0] * probs.ndim
            zoom[-3] = n_z / probs.shape[-3]
            probs = ndimage.zoom(probs, zoom, order=1, prefilter=False, grid_mode=True, mode="nearest")
        total = probs if total is None else total + probs
        del probs, block
    yield Progress(3, 3, "predict", "z-stack: 3 views averaged")
    return (total / 3).astype(np.float32, copy=False)
