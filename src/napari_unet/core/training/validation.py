"""Validation during training: the loss and task metric on held-out samples, and fitting the
object-size regression on the prepared training samples once training ends.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..inference.run import iter_predict
from ..labels.postprocess import labels_from_probabilities
from ..model.unet import UNet
from ..progress import drain
from .data import Sample
from .losses import ce_dice_loss
from .metrics import ap_counts, mean_iou, summarize_ap
from .targets import BOUNDARY_CLASS


def evaluate_samples(
    net: UNet, samples: list[Sample], mode: str, device: torch.device, precision: str = "auto"
) -> tuple[float, dict[str, float]]:
    """Validation loss (cross-entropy + Dice on whole images) and the task metric.

    Instances: ``AP50`` and ``mAP`` (pooled over images, IoU 0.5…0.95) of the watershed labels;
    semantic: ``mIoU`` of the argmax classes.
    """
    losses, counts, ious = [], [], []
    axes = "CZYX" if net.ndim == 3 else "CYX"
    distance = net.head_channel("distance")
    for s in samples:
        probs = drain(
            iter_predict(
                s.image,
                net,
                axes=axes,
                device=device,
                precision=precision,
                normalized=True,
                layout_order=True,
                heads=True,
                estimate_size=False,
            )
        )
        t = torch.from_numpy(s.target.astype(np.int64))[None]
        logp = torch.from_numpy(np.log(np.clip(probs[: net.n_classes], 1e-7, 1.0)))[None]
        losses.append(float(ce_dice_loss(logp, t)))  # log-probabilities act as logits
        if mode == "instances":
            labels = labels_from_probabilities(
                probs,
                mode="instances",
                boundary_class=BOUNDARY_CLASS,
                spatial_ndim=net.ndim,
                distance_channel=distance,
                **net.spec.postprocess,
            )
            counts.append(ap_counts(s.labels, labels))
        else:
            ious.append(mean_iou(s.target, probs.argmax(0), probs.shape[0]))
    metrics = summarize_ap(counts) if mode == "instances" else {"mIoU": float(np.mean(ious))}
    return float(np.mean(losses)), metrics


def fit_size_model_on(net: UNet, samples: list[Sample], *, seed: int = 0, crops: int = 1200) -> dict[str, Any]:
    """:func:`~napari_unet.core.inference.sizing.fit_size_model` on prepared (zoomed) training samples."""
    from ..inference.sizing import fit_size_model
    from .targets import object_diameter

    images, sizes = [], []
    for s in samples:
        d = object_diameter(s.labels) if s.labels is not None else None
        if d is not None and s.image.ndim == 3:
            images.append(s.image)
            sizes.append(d)
    if not images:
        raise ValueError("no labelled 2D images to fit the object-size estimate on")
    return fit_size_model(net, images, sizes, samples=crops, seed=seed)
