"""Image → labels: tiled prediction followed by post-processing, as one generator.

:func:`iter_segment` yields the :class:`~napari_unet.core.progress.Progress` events of the
prediction plus one for post-processing, and returns the labels array (the input's shape
without its channel axis, input axis order).
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import numpy as np

from .image.rescale import zoom_factor
from .inference.planning import plan_for
from .inference.run import iter_features, iter_predict
from .inference.sizing import auto_zoom_size, can_estimate_size, iter_object_size
from .labels.postprocess import MODES, labels_from_features, labels_from_probabilities
from .labels.tracking import iter_track_labels, tracking_applies
from .labels.zlink import DEFAULT_LINK_IOU
from .labels.zstack import DEFAULT_Z_MODE, iter_ortho_probabilities, plan_z
from .model.unet import UNet
from .options import check_inference_options
from .progress import Progress


def iter_segment(
    image: Any,
    model: UNet,
    *,
    mode: str = "instances",
    min_size: int = 0,
    axes: str | None = None,
    channels: Any = None,
    channel_names: Any = None,
    image_name: str = "image",
    track: bool = True,
    z_mode: str = DEFAULT_Z_MODE,
    anisotropy: float | None = None,
    link_iou: float = DEFAULT_LINK_IOU,
    **predict_options: Any,
) -> Generator[Progress, None, np.ndarray]:
    """Segment ``image`` with ``model``, yielding progress; returns labels.

    Parameters
    ----------
    image : array-like
        numpy, memory-mapped or dask array with axes ``axes``.
    model : UNet
        The network.
    mode : {"instances", "semantic"}
        ``"instances"``: one label per object (seeded watershed on interior/boundary for
        instance models, connected components of the foreground otherwise).
        ``"semantic"``: the class index per pixel.
    min_size : int
        Objects (instances) or regions (semantic) smaller than this many pixels are removed.
    track : bool
        Instances of a time-lapse (a ``T`` axis): the same object keeps the same id in every
        frame (:func:`~napari_unet.core.labels.tracking.track_labels`, default settings).
        False: each frame's objects get their own ids. Ignored without a ``T`` axis.
    z_mode : {"3d", "stitch", "planes", "3d-ortho"}
        Z-stacks segmented by a 2D instance model: 3D objects from a 3D watershed of the planes'
        features (``"3d"``), planes' 2D objects linked by IoU (``"stitch"``), independent 2D labels
        per plane (``"planes"``), or XY, XZ and YZ predictions averaged (``"3d-ortho"``); see
        :mod:`~napari_unet.core.labels.zstack`. Ignored for 3D models, semantic labels and images without Z.
    anisotropy : float, optional
        Z spacing / XY spacing of the stack (``"3d-ortho"`` resamples Z by it); recorded by the
        front ends from the file's or layer's scale.
    link_iou : float
        IoU (0..1] that links objects of neighbouring planes (``"stitch"``).
    axes, channels, channel_names, image_name, **predict_options
        As for :func:`~napari_unet.core.inference.run.iter_predict`.

    Returns
    -------
    numpy.ndarray
        Labels (uint16, or uint32 beyond 65535 objects; uint8 class indices for semantic),
        shape = input shape without the channel axis, axes = input axes without ``C``/``S``.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if isinstance(min_size, bool) or not isinstance(min_size, (int, np.integer)) or min_size < 0:
        raise ValueError(f"min_size must be a non-negative integer (pixels), got {min_size!r}")
    predict_options = check_inference_options(channels=channels, track=track, **predict_options)
    track = predict_options.pop("track")
    channels = predict_options.pop("channels")
    layout = plan_for(image, model, axes=axes, channels=channels, channel_names=channel_names, image_name=image_name)
    # -- z-stacks with a 2D instance model (core/labels/zstack.py): Z joins the spatial axes at label time
    zplan = plan_z(
        layout, model, mode=mode, z_mode=z_mode, anisotropy=anisotropy, link_iou=link_iou, image_name=image_name
    )
    volumes = zplan is not None and zplan.volumes
    spatial_ndim = 3 if volumes else model.ndim
    instance_model = model.spec.target == "instances"
    settings = dict(model.spec.postprocess) if instance_model and mode == "instances" else {}
    boundary = model.spec.boundary_class if instance_model and mode == "instances" else None
    distance = model.head_channel("distance") if boundary is not None else None
    estimate = predict_options.pop("estimate_size", True)
    if predict_options.get("object_size") is None and estimate and can_estimate_size(model):
        size = yield from iter_object_size(
            image,
            model,
            layout,
            percentiles=predict_options.get("percentiles"),
            normalized=bool(predict_options.get("normalized", False)),
        )
        predict_options["object_size"] = auto_zoom_size(size, model)
    ortho = zplan is not None and zplan.mode == "3d-ortho"
    if ortho or abs(zoom_factor(model.spec.object_size, predict_options.get("object_size")) - 1.0) > 0.02:
        if ortho:  # probabilities already in volume order (Z beside Y, X)
            probs = yield from iter_ortho_probabilities(
                image, model, layout, zplan, image_name=image_name, **predict_options
            )
        else:
            probs = yield from iter_predict(
                image,
                model,
                axes=layout.axes,
                channels=channels,
                channel_names=channel_names,
                image_name=image_name,
                layout_order=True,
                heads=True,
                estimate_size=False,
                **predict_options,
            )
            if volumes:
                probs = zplan.to_volumes(probs, lead=1)
        yield Progress(0, 1, "postprocess", f"making {mode} labels")
        if distance is None and model.n_outputs != model.n_classes:
            probs = probs[: model.n_classes]
        labels = labels_from_probabilities(
            probs,
            mode=mode,
            boundary_class=boundary,
            spatial_ndim=spatial_ndim,
            min_size=int(min_size),
            distance_channel=distance,
            **settings,
        )
        del probs
    else:
        predict_options.pop("object_size", None)
        codes, landscape = yield from iter_features(
            image,
            model,
            boundary_class=boundary,
            seed_threshold=settings.pop("seed_threshold", None),
            foreground_threshold=settings.pop("foreground_threshold", None),
            distance_channel=distance,
            axes=layout.axes,
            channels=channels,
            channel_names=channel_names,
            image_name=image_name,
            **predict_options,
        )
        if volumes:
            codes = zplan.to_volumes(codes)
            landscape = None if landscape is None else zplan.to_volumes(landscape)
        yield Progress(0, 1, "postprocess", f"making {mode} labels")
        labels = labels_from_features(
            codes,
            landscape,
            mode=mode,
            n_classes=model.n_classes,
            boundary_class=boundary,
            spatial_ndim=spatial_ndim,
            min_size=int(min_size),
            **settings,
        )
        del codes, landscape
    if volumes:
        labels = zplan.from_volumes(labels)
    elif zplan is not None and zplan.mode == "stitch":
        yield Progress(0, 1, "postprocess", "linking the planes' objects along Z")
        labels = zplan.link(labels)
    yield Progress(1, 1, "postprocess", "labels ready")
    labels = np.ascontiguousarray(layout.to_output_order(labels))
    if tracking_applies(track, mode, layout.out_axes):  # a time-lapse: ids matched across frames
        yield from iter_track_labels(labels, layout.out_axes.index("T"))
    return labels
