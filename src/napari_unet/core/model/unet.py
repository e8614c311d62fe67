"""The seed U-Net, in 2D or 3D.

Blocks: a *double conv* (3x3 conv -> BatchNorm -> ReLU, twice), an input double conv,
``depth`` down steps (max-pool, then double conv), ``depth`` up steps (upsample, concatenate
the skip connection, double conv) and a 1x1 output conv.

Any input size works: :meth:`UNet.forward` pads the spatial axes at their far end up to a
multiple of ``2**depth`` (reflection, or edge replication for tiny inputs) and crops the
output back, so odd shapes never raise.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .check import check_architecture
from .spec import ModelSpec


def _layers(ndim: int) -> tuple[type[nn.Module], type[nn.Module], type[nn.Module]]:
    if ndim == 2:
        return nn.Conv2d, nn.BatchNorm2d, nn.MaxPool2d
    return nn.Conv3d, nn.BatchNorm3d, nn.MaxPool3d


class DoubleConv(nn.Sequential):
    """(3x3 conv -> BatchNorm -> ReLU) twice; BatchNorm is left out when ``norm`` is False."""

    def __init__(self, in_ch: int, out_ch: int, *, ndim: int = 2, norm: bool = True) -> None:
        conv, bn, _ = _layers(ndim)
        layers: list[nn.Module] = []
        for c_in in (in_ch, out_ch):
            layers.append(conv(c_in, out_ch, kernel_size=3, padding=1, bias=not norm))
            if norm:
                layers.append(bn(out_ch))
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class Down(nn.Sequential):
    """Max-pool by 2, then a double conv."""

    def __init__(self, in_ch: int, out_ch: int, *, ndim: int = 2, norm: bool = True) -> None:
        _, _, pool = _layers(ndim)
        super().__init__(pool(2), DoubleConv(in_ch, out_ch, ndim=ndim, norm=norm))


class Up(nn.Module):
    """Upsample by 2, concatenate the skip connection, double conv."""

    def __init__(
        self,
        in_ch: int,
        skip_ch: int,
        out_ch: int,
        *,
        ndim: int = 2,
        norm: bool = True,
        upsampling: str = "interpolate",
    ) -> None:
        super().__init__()
        self.ndim = ndim
        self.upsampling = upsampling
        if upsampling == "transpose":
            tconv = nn.ConvTranspose2d if ndim == 2 else nn.ConvTranspose3d
            self.up: nn.Module | None = tconv(in_ch, in_ch // 2, kernel_size=2, stride=2)
            cat_ch = in_ch // 2 + skip_ch
        else:
            self.up = None
            cat_ch = in_ch + skip_ch
        self.conv = DoubleConv(cat_ch, out_ch, ndim=ndim, norm=norm)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        if self.up is not None:
            x = self.up(x)
        else:
            mode = "bilinear" if self.ndim == 2 else "trilinear"
            x = F.interpolate(x, scale_factor=2, mode=mode, align_corners=False)
        return self.conv(torch.cat([skip, x], dim=1))


class UNet(nn.Module):
    """The classic U-Net, 2D or 3D.

    Parameters
    ----------
    in_channels : int
        Number of input channels.
    n_classes : int
        Number of output classes (logits). With ``n_classes == 1`` the output is one
        foreground logit (sigmoid), otherwise class logits (softmax).
    depth : int
        Number of down (and up) steps. The input is padded to a multiple of ``2**depth``.
    base_features : int
        Feature maps of the first double conv; doubled at every down step.
    ndim : int
        2 for images (N, C, Y, X), 3 for volumes (N, C, Z, Y, X).
    upsampling : {"interpolate", "transpose"}
        Bilinear/trilinear interpolation or a transposed convolution in the up steps.
    norm : bool
        BatchNorm after every convolution.
    heads : sequence of str
        Extra outputs after the class logits (see :data:`~napari_unet.core.model.check.HEADS`), e.g. ``("distance",)``.
        The output then has ``n_classes + len(heads)`` channels.
    spec : ModelSpec, optional
        What the model expects and produces (channel and class names, normalisation,
        axes, ...). A default one matching the architecture is made when omitted.
    """

    def __init__(
        self,
        in_channels: int = 1,
        n_classes: int = 2,
        *,
        depth: int = 4,
        base_features: int = 64,
        ndim: int = 2,
        upsampling: str = "interpolate",
        norm: bool = True,
        heads: Any = (),
        spec: ModelSpec | None = None,
    ) -> None:
        super().__init__()
        heads = list(heads) if isinstance(heads, (list, tuple, set, frozenset)) else heads
        # types, sane limits (depth 1..8, ...) and the parameter count, before allocating anything
        check_architecture(
            dict(
                in_channels=in_channels,
                n_classes=n_classes,
                depth=depth,
                base_features=base_features,
                ndim=ndim,
                upsampling=upsampling,
                norm=bool(norm),
                heads=heads,
            )
        )
        self.config: dict[str, Any] = dict(
            in_channels=in_channels,
            n_classes=n_classes,
            depth=depth,
            base_features=base_features,
            ndim=ndim,
            upsampling=upsampling,
            norm=bool(norm),
        )
        if heads:  # only written when present, so plain models stay readable by older versions
            self.config["heads"] = heads
        features = [base_features * 2**i for i in range(depth + 1)]
        self.inc = DoubleConv(in_channels, features[0], ndim=ndim, norm=norm)
        self.downs = nn.ModuleList(Down(features[i], features[i + 1], ndim=ndim, norm=norm) for i in range(depth))
        self.ups = nn.ModuleList(
            Up(features[i + 1], features[i], features[i], ndim=ndim, norm=norm, upsampling=upsampling)
            for i in reversed(range(depth))
        )
        conv, _, _ = _layers(ndim)
        self.outc = conv(features[0], n_classes + len(heads), kernel_size=1)
        self.spec = spec if spec is not None else ModelSpec.default(in_channels, n_classes, ndim)
        self.spec.check_against(self.config)
        self.reset_parameters()

    # ------------------------------------------------------------------ properties
    @property
    def in_channels(self) -> int:
        return self.config["in_channels"]

    @property
    def n_classes(self) -> int:
        return self.config["n_classes"]

    @property
    def heads(self) -> list[str]:
        """Extra output heads after the class logits (e.g. ``["distance"]``)."""
        return list(self.config.get("heads", []))

    @property
    def n_outputs(self) -> int:
        """Output channels: ``n_classes`` class logits, then one per head."""
        return self.n_classes + len(self.heads)

    def head_channel(self, name: str) -> int | None:
        """Output channel of head ``name``, or None when the network has no such head."""
        heads = self.heads
        return self.n_classes + heads.index(name) if name in heads else None

    @property
    def ndim(self) -> int:
        return self.config["ndim"]

    @property
    def size_multiple(self) -> int:
        """Spatial sizes the network runs on without padding are multiples of this."""
        return 2 ** self.config["depth"]

    def receptive_radius(self) -> int:
        """Upper bound, in input pixels, of how far an output pixel looks in each direction.

        Sums what each layer adds at its own scale: 1 px per 3x3 conv, the pooling window,
        and one coarse pixel for each interpolating (or transposed-conv) upsampling.
        """
        depth = self.config["depth"]
        radius = 2  # input double conv
        for level in range(1, depth + 1):
            radius += 2 ** (level - 1)  # max-pool window
            radius += 2 * 2**level  # double conv at this scale
        for level in range(depth - 1, -1, -1):
            radius += 2 ** (level + 1)  # upsampling from level+1
            radius += 2 * 2**level  # double conv after concatenation
        return radius

    # ------------------------------------------------------------------ init / forward
    def reset_parameters(self) -> None:
        """Kaiming-normal init for convolutions (ReLU gain), BatchNorm at identity, zero biases."""
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.ConvTranspose3d)):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm3d)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits for a batch.

        Parameters
        ----------
        x : torch.Tensor
            Shape (N, C, Y, X) for a 2D model or (N, C, Z, Y, X) for a 3D model, any sizes.

        Returns
        -------
        torch.Tensor
            Logits of shape (N, n_outputs, *spatial) with the input's spatial sizes: the
            ``n_classes`` class logits, then one channel per head.
        """
        if x.ndim != self.ndim + 2:
            raise ValueError(
                f"a {self.ndim}D U-Net expects input of {self.ndim + 2} dims "
                f"(N, C, {'Z, ' if self.ndim == 3 else ''}Y, X), got shape {tuple(x.shape)}"
            )
        if x.shape[1] != self.in_channels:
            raise ValueError(f"model expects {self.in_channels} input channels, got {x.shape[1]}")
        spatial = tuple(x.shape[2:])
        x = pad_to_multiple(x, self.size_multiple)
        skips = [self.inc(x)]
        for down in self.downs:
            skips.append(down(skips[-1]))
        y = skips.pop()
        for up in self.ups:
            y = up(y, skips.pop())
        y = self.outc(y)
        return y[(..., *(slice(0, s) for s in spatial))]

    def style(self, x: torch.Tensor) -> torch.Tensor:
        """Image-level features: mean and standard deviation of the deepest feature maps.

        Parameters
        ----------
        x : torch.Tensor
            Normalised input, shape (N, C, *spatial).

        Returns
        -------
        torch.Tensor
            Shape (N, 2 * base_features * 2**depth): what the object-size regression
            (:mod:`~napari_unet.core.inference.sizing`) reads, like cellpose's style vector.
        """
        x = pad_to_multiple(x, self.size_multiple)
        y = self.inc(x)
        for down in self.downs:
            y = down(y)
        flat = y.flatten(2).float()
        return torch.cat([flat.mean(-1), flat.std(-1)], dim=1)


def weights_version(model: nn.Module) -> tuple[int, ...]:
    """Changes whenever any parameter or buffer of ``model`` is modified in place (training)."""
    return tuple(int(t._version) for t in list(model.parameters()) + list(model.buffers()))


def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Pad the spatial axes of ``x`` (N, C, *spatial) at their far end to a multiple of ``multiple``.

    Reflection padding where the axis is long enough, edge replication otherwise. The tiler
    pads tiles at the image border with the same rule so tiled and untiled results agree.
    """
    spatial = x.shape[2:]
    extra = [(-s) % multiple for s in spatial]
    if not any(extra):
        return x
    pad: list[int] = []
    for _s, e in zip(reversed(spatial), reversed(extra)):
        pad += [0, e]
    mode = "reflect" if all(e < s for s, e in zip(spatial, extra)) else "replicate"
    return F.pad(x, pad, mode=mode)
