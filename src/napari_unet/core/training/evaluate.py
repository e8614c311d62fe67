"""Evaluate a model on image/label pairs: AP at IoU 0.5…0.95 and mean IoU."""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from typing import Any

import numpy as np

from ..model.unet import UNet
from ..progress import Progress, drain
from .metrics import DEFAULT_THRESHOLDS, ap_counts, mean_iou, summarize_ap


def iter_evaluate(
    model: UNet,
    pairs: Sequence[tuple[Any, Any]],
    *,
    axes: str | None = None,
    channels: Any = None,
    min_size: int = 0,
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
    **predict_options: Any,
) -> Generator[Progress, None, dict[str, Any]]:
    """Segment every image and compare with its ground truth, yielding one event per image.

    Returns
    -------
    dict
        ``AP50`` … ``AP95`` and ``mAP`` pooled over all images (TP/FP/FN summed, as StarDist
        reports), the same averaged per image under ``per_image``, ``mIoU`` of foreground vs
        background (instances) or of the classes (semantic), and ``n_images``.
    """
    from ..segment import iter_segment
    from .data import _as_array
    from .guards import check_label_ids

    counts: list[dict[float, tuple[int, int, int]]] = []
    ious: list[float] = []
    instance = model.spec.target == "instances"
    for i, (image, truth) in enumerate(pairs):
        img, img_axes, names, name = _as_array(image, f"image {i}")
        truth_arr = np.asarray(_as_array(truth, f"labels {i}")[0])
        check_label_ids(truth_arr, f"ground truth labels of {name}")  # before segmenting: fail fast
        labels = drain(
            iter_segment(
                img,
                model,
                axes=axes or img_axes,
                channels=channels,
                channel_names=names,
                image_name=name,
                mode="instances" if instance else "semantic",
                min_size=min_size,
                **predict_options,
            )
        )
        if labels.shape != truth_arr.shape:
            raise ValueError(f"ground truth of {name} has shape {truth_arr.shape}, the labels {labels.shape}")
        if instance:
            counts.append(ap_counts(truth_arr, labels, thresholds))
            ious.append(mean_iou(truth_arr > 0, labels > 0, 2))
        else:
            ious.append(mean_iou(truth_arr, labels, max(int(truth_arr.max()), int(labels.max())) + 1))
        yield Progress(i + 1, len(pairs), "evaluate", f"{name}")
    result: dict[str, Any] = {"n_images": len(pairs), "mIoU": float(np.mean(ious)) if ious else float("nan")}
    if instance:
        result.update(summarize_ap(counts, pooled=True))
        result["per_image"] = summarize_ap(counts, pooled=False)
    return result


def evaluate(
    model: UNet, pairs: Sequence[tuple[Any, Any]], *, progress: Callable[[Progress], Any] | None = None, **options: Any
) -> dict[str, Any]:
    """Run :func:`iter_evaluate` to the end."""
    return drain(iter_evaluate(model, pairs, **options), progress)
