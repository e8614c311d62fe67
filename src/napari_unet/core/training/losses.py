"""Cross-entropy + soft Dice, with class weights."""

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
