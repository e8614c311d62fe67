"""A network made ready for fast inference: BatchNorm folded, channels-last, optionally compiled.

The user's :class:`~napari_unet.core.model.UNet` is never changed: :func:`inference_network`
returns a copy whose convolutions absorb their BatchNorm (``w' = w * g / sqrt(var + eps)``,
``b' = (b - mean) * g / sqrt(var + eps) + beta``; exact in eval mode up to rounding), laid out
channels-last where that is faster (2D everywhere, 3D on CUDA), and wrapped in
``torch.compile`` when asked. Copies are cached per model, device, dtype and weight version,
so a widget that segments image after image with the same model folds (and compiles) once.
"""

from __future__ import annotations

import copy
import logging
import weakref
from typing import Any

import torch
from torch import nn

from .model import UNet, weights_version

log = logging.getLogger(__name__)

_CONVS = (nn.Conv2d, nn.Conv3d)
_NORMS = (nn.BatchNorm2d, nn.BatchNorm3d)
_cache: "weakref.WeakKeyDictionary[UNet, dict[tuple, nn.Module]]" = weakref.WeakKeyDictionary()


def fold_batchnorm(module: nn.Module) -> int:
    """Fold every BatchNorm that directly follows a convolution inside an ``nn.Sequential`` of
    ``module`` into that convolution (in place); return how many were folded."""
    folded = 0
    for seq in module.modules():
        if not isinstance(seq, nn.Sequential):
            continue
        names = list(seq._modules)
        for prev, name in zip(names, names[1:]):
            conv, norm = seq._modules[prev], seq._modules[name]
            if not (isinstance(conv, _CONVS) and isinstance(norm, _NORMS)) or not norm.track_running_stats:
                continue
            with torch.no_grad():
                scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)
                shape = (-1,) + (1,) * (conv.weight.ndim - 1)
                conv.weight.mul_(scale.reshape(shape))
                bias = conv.bias if conv.bias is not None else torch.zeros_like(norm.running_mean)
                new_bias = (bias - norm.running_mean) * scale + norm.bias
            conv.bias = nn.Parameter(new_bias)
            seq._modules[name] = nn.Identity()
            folded += 1
    return folded


def memory_format(model: UNet, device: torch.device) -> torch.memory_format | None:
    """channels-last for 2D networks on every device and for 3D on CUDA; None: keep contiguous."""
    if model.ndim == 2:
        return torch.channels_last
    return torch.channels_last_3d if device.type == "cuda" else None



def inference_network(model: UNet, device: torch.device, *, compile: bool = False) -> nn.Module:
    """The folded, channels-last (and, with ``compile``, compiled) copy of ``model`` on ``device``.

    ``model`` must be in eval mode semantics (its BatchNorm running statistics are used).
    Falls back to the uncompiled copy, with a warning in the log, when ``torch.compile`` is
    not available. Compilation itself happens on the first call: see :func:`call_compiled`.
    """
    dtype = next(model.parameters()).dtype
    key = (str(device), dtype, bool(compile), weights_version(model))
    per_model = _cache.setdefault(model, {})
    if key in per_model:
        return per_model[key]
    net = copy.deepcopy(model).eval()
    n = fold_batchnorm(net)
    net.to(device)
    fmt = memory_format(model, device)
    if fmt is not None:
        net = net.to(memory_format=fmt)
    log.debug("inference copy: %d BatchNorm folded, %s on %s", n, fmt, device)
    if compile:
        if hasattr(torch, "compile"):
            net = _Compiled(net)
        else:
            log.warning("torch.compile is not available in torch %s: running uncompiled", torch.__version__)
    per_model.clear()  # older weight versions are stale
    per_model[key] = net
    return net


class _Compiled(nn.Module):
    """``torch.compile`` of a network with a silent fallback to the network itself when the
    first compiled call fails (no compiler, unsupported backend...)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net
        self.compiled: Any = torch.compile(net, dynamic=False)
        self.failed = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.failed:
            try:
                return self.compiled(x)
            except Exception as err:  # noqa: BLE001 - any compiler failure → eager
                if "out of memory" in str(err).lower():
                    raise
                self.failed = True
                log.warning("torch.compile failed (%s); running uncompiled", str(err).splitlines()[0][:200])
        return self.net(x)
