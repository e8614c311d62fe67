"""A network made ready for fast inference: BatchNorm folded, channels-last, optionally compiled.

The user's :class:`~napari_unet.core.model.unet.UNet` is never changed: :func:`inference_network`
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
import torch.nn.functional as F
from torch import nn

from ..model.unet import UNet, pad_to_multiple, weights_version

log = logging.getLogger(__name__)

_CONVS = (nn.Conv2d, nn.Conv3d)
_NORMS = (nn.BatchNorm2d, nn.BatchNorm3d)
_cache: weakref.WeakKeyDictionary[UNet, dict[tuple, nn.Module]] = weakref.WeakKeyDictionary()


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
    """channels-last for 2D networks on the CPU and CUDA and for 3D on CUDA; None: keep contiguous."""
    if device.type not in ("cpu", "cuda"):
        return None
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
    folded = copy.deepcopy(model).eval()
    n = fold_batchnorm(folded)
    folded.to(device)
    fmt = memory_format(model, device)
    if fmt is not None:
        folded = folded.to(memory_format=fmt)
    net: nn.Module = LeanUNet(folded, fmt) if isinstance(model, UNet) else folded
    log.debug("inference copy: %d BatchNorm folded, %s on %s", n, fmt, device)
    if compile:
        if hasattr(torch, "compile"):
            net = _Compiled(net)
        else:
            log.warning("torch.compile is not available in torch %s: running uncompiled", torch.__version__)
    for stale in [k for k in per_model if k[3] != key[3]]:  # copies of older weights
        del per_model[stale]
    per_model[key] = net
    return net


def prepare(model: UNet, device: torch.device) -> nn.Module:
    """:func:`inference_network` of ``model`` on ``device``, with one small forward pass already
    run (first-call costs: kernel selection, allocator), for a warm start."""
    net = inference_network(model, device)
    shape = (1, model.in_channels) + (2 * model.size_multiple,) * model.ndim
    x = torch.zeros(shape, dtype=next(model.parameters()).dtype, device=device)
    fmt = memory_format(model, device)
    with torch.inference_mode():
        net(x if fmt is None else x.contiguous(memory_format=fmt))
    return net


def has_compiled(model: UNet, device: torch.device) -> bool:
    """Whether a compiled inference copy of ``model``'s current weights on ``device`` is cached."""
    dtype = next(model.parameters()).dtype
    return (str(device), dtype, True, weights_version(model)) in _cache.get(model, {})


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


def _run(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Apply a (nested) ``nn.Sequential`` layer by layer, dropping each input as soon as it is used."""
    if isinstance(module, nn.Sequential):
        for layer in module:
            x = _run(layer, x)
        return x
    return module(x)


class LeanUNet(nn.Module):
    """The same function as a folded :class:`UNet`, computed with less memory at its peak.

    The plain forward keeps, at the last up step, the skip connection, the upsampled tensor,
    their concatenation and the first convolution's output alive at once (about 7 feature
    maps of the base width per pixel). Here the first convolution after each concatenation is
    split by input channels, ``conv(cat[s, u]) = conv_s(s) + conv_u(u)``, so no concatenation
    is made and the skip is freed after its half; every other intermediate is dropped as soon
    as the next layer has used it. Peak activation memory falls by about 40 %, so tiles can be
    larger for the same memory, which means less recomputed overlap.
    """

    def __init__(self, net: UNet, fmt: torch.memory_format | None) -> None:
        super().__init__()
        self.net = net
        self._conv = F.conv2d if net.ndim == 2 else F.conv3d
        self._split: list[tuple[torch.Tensor, torch.Tensor]] = []
        for up in net.ups:
            first = up.conv[0]
            c_skip = first.out_channels  # the skip of level i has the width this step outputs
            w_skip, w_up = first.weight[:, :c_skip], first.weight[:, c_skip:]
            if fmt is not None:
                w_skip, w_up = w_skip.contiguous(memory_format=fmt), w_up.contiguous(memory_format=fmt)
            else:
                w_skip, w_up = w_skip.contiguous(), w_up.contiguous()
            self._split.append((w_skip, w_up))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        net = self.net
        if x.ndim != net.ndim + 2 or x.shape[1] != net.in_channels:
            return net(x)  # let the network raise its own error
        spatial = tuple(x.shape[2:])
        skips = [_run(net.inc, pad_to_multiple(x, net.size_multiple))]
        del x
        for down in net.downs:
            skips.append(_run(down, skips[-1]))
        y = skips.pop()
        for up, (w_skip, w_up) in zip(net.ups, self._split):
            skip = skips.pop()
            if up.up is not None:
                y = up.up(y)
            else:
                y = F.interpolate(
                    y, scale_factor=2, mode="bilinear" if net.ndim == 2 else "trilinear", align_corners=False
                )
            first = up.conv[0]
            h = self._conv(skip, w_skip, first.bias, padding=1)  # autocast casts like conv layers
            del skip
            h.add_(self._conv(y, w_up, None, padding=1))
            del y
            y = h
            del h
            for layer in list(up.conv)[1:]:
                y = layer(y)
        y = net.outc(y)
        return y[(..., *(slice(0, s) for s in spatial))]
