"""A self-contained U-Net for exported models: probabilities out, any input size of at least ``2**depth``.

This file is copied as is into every bioimage.io package napari-unet writes (the architecture of its
``pytorch_state_dict`` weights) and is the network that is traced for the TorchScript and ONNX weights,
so the three weight formats are one network. It needs only ``torch``: no napari-unet import.

It holds the same layers, under the same names, as ``napari_unet.core.model.unet.UNet``, so that
network's ``state_dict`` loads into it unchanged. Two differences, both for the programs that run
exported models (deepImageJ, ilastik, QuPath, bioimage.io):

- the output is **probabilities**, not logits: softmax over the ``n_classes`` class channels (a sigmoid
  for a one-class model), then a sigmoid for each extra head channel (e.g. a distance map);
- the far-end padding to a multiple of ``2**depth`` is always reflection (written without branches, so
  that traced graphs keep dynamic spatial sizes); inputs need at least ``2**depth`` pixels per axis.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _layers(ndim: int) -> tuple[type[nn.Module], type[nn.Module], type[nn.Module]]:
    if ndim == 2:
        return nn.Conv2d, nn.BatchNorm2d, nn.MaxPool2d
    return nn.Conv3d, nn.BatchNorm3d, nn.MaxPool3d


def _double_conv(in_ch: int, out_ch: int, ndim: int, norm: bool) -> nn.Sequential:
    conv, bn, _ = _layers(ndim)
    layers: list[nn.Module] = []
    for c_in in (in_ch, out_ch):
        layers.append(conv(c_in, out_ch, kernel_size=3, padding=1, bias=not norm))
        if norm:
            layers.append(bn(out_ch))
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class _Up(nn.Module):
    def __init__(self, in_ch: int, skip_ch: int, out_ch: int, ndim: int, norm: bool, upsampling: str) -> None:
        super().__init__()
        self.mode = "bilinear" if ndim == 2 else "trilinear"
        if upsampling == "transpose":
            tconv = nn.ConvTranspose2d if ndim == 2 else nn.ConvTranspose3d
            self.up: nn.Module = tconv(in_ch, in_ch // 2, kernel_size=2, stride=2)
            cat_ch = in_ch // 2 + skip_ch
        else:
            self.up = nn.Identity()
            cat_ch = in_ch + skip_ch
        self.interpolate = upsampling != "transpose"
        self.conv = _double_conv(cat_ch, out_ch, ndim, norm)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        if self.interpolate:
            x = F.interpolate(x, scale_factor=2.0, mode=self.mode, align_corners=False)
        else:
            x = self.up(x)
        return self.conv(torch.cat([skip, x], dim=1))


class UNet(nn.Module):
    """U-Net (2D: N, C, Y, X; 3D: N, C, Z, Y, X) returning probabilities of the same spatial size.

    Parameters
    ----------
    in_channels, n_classes, depth, base_features, ndim, upsampling, norm
        As in napari-unet's model file (``architecture``).
    n_heads : int
        Extra output channels after the classes (sigmoid each).
    """

    def __init__(
        self,
        in_channels: int = 1,
        n_classes: int = 2,
        depth: int = 4,
        base_features: int = 32,
        ndim: int = 2,
        upsampling: str = "interpolate",
        norm: bool = True,
        n_heads: int = 0,
    ) -> None:
        super().__init__()
        self.n_classes = n_classes
        self.n_heads = n_heads
        self.ndim = ndim
        self.multiple = 2**depth
        features = [base_features * 2**i for i in range(depth + 1)]
        _, _, pool = _layers(ndim)
        self.inc = _double_conv(in_channels, features[0], ndim, norm)
        self.downs = nn.ModuleList(
            nn.Sequential(pool(2), _double_conv(features[i], features[i + 1], ndim, norm)) for i in range(depth)
        )
        self.ups = nn.ModuleList(
            _Up(features[i + 1], features[i], features[i], ndim, norm, upsampling) for i in reversed(range(depth))
        )
        conv, _, _ = _layers(ndim)
        self.outc = conv(features[0], n_classes + n_heads, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Probabilities (N, n_classes + n_heads, *spatial) for input (N, in_channels, *spatial)."""
        sizes = x.shape[2:]
        pad: list[int] = []
        for s in reversed(sizes):
            pad += [0, (self.multiple - s % self.multiple) % self.multiple]
        y = F.pad(x, pad, mode="reflect")
        skips = [self.inc(y)]
        for down in self.downs:
            skips.append(down(skips[-1]))
        y = skips.pop()
        for up in self.ups:
            y = up(y, skips.pop())
        y = self.outc(y)
        if self.ndim == 2:
            y = y[:, :, : sizes[0], : sizes[1]]
        else:
            y = y[:, :, : sizes[0], : sizes[1], : sizes[2]]
        classes = y[:, : self.n_classes]
        probs = torch.sigmoid(classes) if self.n_classes == 1 else torch.softmax(classes, dim=1)
        if self.n_heads == 0:
            return probs
        return torch.cat([probs, torch.sigmoid(y[:, self.n_classes :])], dim=1)
