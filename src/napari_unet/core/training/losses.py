"""Cross-entropy + soft Dice, with class weights; a regression loss for the distance head."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def ce_dice_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    class_weights: torch.Tensor | None = None,
    dice_weight: float = 1.0,
    eps: float = 1.0,
) -> torch.Tensor:
    """Weighted cross-entropy plus ``dice_weight`` × (1 − weighted mean soft Dice).

    Parameters
    ----------
    logits : Tensor (N, K, *spatial)
    target : Tensor (N, *spatial), int64 class indices
    class_weights : Tensor (K,), optional
    """
    logits = logits.float()
    ce = F.cross_entropy(logits, target, weight=class_weights)
    if dice_weight == 0:
        return ce
    k = logits.shape[1]
    probs = logits.softmax(1)
    onehot = F.one_hot(target, k).movedim(-1, 1).to(probs.dtype)
    dims = (0,) + tuple(range(2, logits.ndim))
    inter = (probs * onehot).sum(dims)
    denom = probs.sum(dims) + onehot.sum(dims)
    dice = (2 * inter + eps) / (denom + eps)
    w = class_weights if class_weights is not None else torch.ones(k, device=logits.device)
    dice_loss = 1 - (dice * w).sum() / w.sum().clamp_min(1e-6)
    return ce + dice_weight * dice_loss


def distance_loss(logit: torch.Tensor, target: torch.Tensor, foreground: torch.Tensor) -> torch.Tensor:
    """Loss of the distance head: binary cross-entropy of ``sigmoid(logit)`` against the
    normalised distance, with foreground pixels weighted 1 and background 0.2 (background is
    easy and plentiful; the seeds live inside objects).

    Parameters
    ----------
    logit : Tensor (N, *spatial)
    target : Tensor (N, *spatial), float in [0, 1]
    foreground : Tensor (N, *spatial), bool
    """
    weight = torch.where(foreground, 1.0, 0.2).to(torch.float32)
    loss = F.binary_cross_entropy_with_logits(logit.float(), target.float(), weight=weight, reduction="sum")
    return loss / weight.sum().clamp_min(1.0)
