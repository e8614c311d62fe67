"""Segmentation metrics: instance matching, average precision, mean IoU (numpy only).

Average precision at an IoU threshold *t* follows the 2018 Data Science Bowl:
``AP(t) = TP / (TP + FP + FN)`` where a predicted object is a true positive when its IoU with
a ground-truth object exceeds *t* (at *t* >= 0.5 matches are unique).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

DEFAULT_THRESHOLDS = tuple(np.round(np.arange(0.5, 1.0, 0.05), 2))


def iou_matrix(truth: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """IoU between every ground-truth object (rows) and predicted object (columns).

    Labels are relabelled compactly first; returns shape (n_truth, n_pred).
    """
    truth = np.asarray(truth).ravel()
    pred = np.asarray(pred).ravel()
    if truth.shape != pred.shape:
        raise ValueError(f"label images differ in size: {truth.size} vs {pred.size} pixels")
    t_ids, t_inv = np.unique(truth, return_inverse=True)
    p_ids, p_inv = np.unique(pred, return_inverse=True)
    nt, npred = len(t_ids), len(p_ids)
    inter = np.bincount(t_inv * npred + p_inv, minlength=nt * npred).reshape(nt, npred)
    # drop background rows/columns (value 0) if present
    t_keep = t_ids != 0
    p_keep = p_ids != 0
    area_t = inter.sum(1)
    area_p = inter.sum(0)
    inter = inter[t_keep][:, p_keep]
    union = area_t[t_keep][:, None] + area_p[p_keep][None, :] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(union > 0, inter / np.maximum(union, 1), 0.0)
    return iou


def match_counts(iou: np.ndarray, threshold: float) -> tuple[int, int, int]:
    """(TP, FP, FN) at ``threshold`` from an IoU matrix (greedy by IoU; exact for t >= 0.5)."""
    n_t, n_p = iou.shape
    if n_t == 0 or n_p == 0:
        return 0, n_p, n_t
    cand = np.argwhere(iou > threshold)
    if len(cand) == 0:
        return 0, n_p, n_t
    order = np.argsort(-iou[cand[:, 0], cand[:, 1]], kind="stable")
    used_t, used_p = set(), set()
    for i, j in cand[order]:
        if i not in used_t and j not in used_p:
            used_t.add(i)
            used_p.add(j)
    tp = len(used_t)
    return tp, n_p - tp, n_t - tp


def ap_counts(
    truth: np.ndarray, pred: np.ndarray, thresholds: Sequence[float] = DEFAULT_THRESHOLDS
) -> dict[float, tuple[int, int, int]]:
    """(TP, FP, FN) per IoU threshold for one image."""
    iou = iou_matrix(truth, pred)
    return {float(t): match_counts(iou, float(t)) for t in thresholds}


def average_precision(
    truth: np.ndarray, pred: np.ndarray, thresholds: Sequence[float] = DEFAULT_THRESHOLDS
) -> dict[float, float]:
    """AP = TP / (TP + FP + FN) per IoU threshold for one image (1.0 when both are empty)."""
    return {t: _ap(*c) for t, c in ap_counts(truth, pred, thresholds).items()}


def _ap(tp: int, fp: int, fn: int) -> float:
    denom = tp + fp + fn
    return 1.0 if denom == 0 else tp / denom


def mean_iou(truth: np.ndarray, pred: np.ndarray, n_classes: int) -> float:
    """Mean over classes (present in truth or prediction) of the per-class IoU of class maps."""
    truth = np.asarray(truth).ravel().astype(np.int64)
    pred = np.asarray(pred).ravel().astype(np.int64)
    if truth.shape != pred.shape:
        raise ValueError(f"class maps differ in size: {truth.size} vs {pred.size} pixels")
    conf = np.bincount(truth * n_classes + pred, minlength=n_classes**2).reshape(n_classes, n_classes)
    inter = np.diag(conf).astype(np.float64)
    union = conf.sum(0) + conf.sum(1) - inter
    present = union > 0
    return float((inter[present] / union[present]).mean()) if present.any() else 1.0


def summarize_ap(per_image: list[dict[float, tuple[int, int, int]]], pooled: bool = True) -> dict[str, float]:
    """AP over a data set from per-image :func:`ap_counts`.

    ``pooled=True`` sums TP/FP/FN over all images before dividing (as StarDist reports);
    ``pooled=False`` averages the per-image APs (as the 2018 Data Science Bowl scored).
    Returns ``{"AP50": ..., "AP55": ..., ..., "mAP": mean over thresholds}``.
    """
    if not per_image:
        return {}
    thresholds = sorted(per_image[0])
    means = {}
    for t in thresholds:
        if pooled:
            tp, fp, fn = (sum(d[t][k] for d in per_image) for k in range(3))
            means[t] = _ap(tp, fp, fn)
        else:
            means[t] = float(np.mean([_ap(*d[t]) for d in per_image]))
    out = {f"AP{int(round(t * 100))}": v for t, v in means.items()}
    out["mAP"] = float(np.mean(list(means.values())))
    return out
