"""The exported network: napari-unet's U-Net as :mod:`.unet_arch` (probabilities out), traced to
TorchScript or ONNX.

``exported_network(model)`` builds :class:`.unet_arch.UNet` with the model's architecture and loads
its weights; every weight format of an export is that one network.
"""

from __future__ import annotations

import logging
import os
import pathlib
import warnings
from typing import TYPE_CHECKING, Any

from ..image.files import atomic_write

if TYPE_CHECKING:
    import torch

    from ..model.unet import UNet

log = logging.getLogger(__name__)

#: ONNX operator set of exported models (opset 17: ONNX Runtime >= 1.13, ilastik, QuPath's DJL, deepImageJ).
ONNX_OPSET = 17


def architecture_kwargs(config: dict[str, Any]) -> dict[str, Any]:
    """Keyword arguments of :class:`.unet_arch.UNet` for a napari-unet architecture ``config``."""
    keys = ("in_channels", "n_classes", "depth", "base_features", "ndim", "upsampling", "norm")
    return {**{k: config[k] for k in keys}, "n_heads": len(config.get("heads", []))}


def exported_network(model: UNet) -> torch.nn.Module:
    """``model``'s weights in :class:`.unet_arch.UNet` (CPU, float32, eval mode): probabilities out."""
    import torch

    from .unet_arch import UNet as ArchUNet

    net = ArchUNet(**architecture_kwargs(model.config))
    state = {
        k: v.detach().to("cpu", torch.float32) if v.is_floating_point() else v.detach().cpu()
        for k, v in model.state_dict().items()
    }
    net.load_state_dict(state, strict=True)
    return net.eval()


def example_input(model: UNet, size: int | None = None, *, batch: int = 1, seed: int = 0) -> torch.Tensor:
    """A random input (batch, in_channels, *spatial) with ``size`` pixels per axis (default ``2**depth * 4``)."""
    import torch

    size = size or model.size_multiple * 4
    gen = torch.Generator().manual_seed(seed)
    return torch.rand((batch, model.in_channels, *([size] * model.ndim)), generator=gen)


def write_torchscript(net: torch.nn.Module, path: str | os.PathLike, example: torch.Tensor) -> pathlib.Path:
    """Trace ``net`` on ``example`` and save it as TorchScript (spatial sizes stay dynamic), atomically."""
    import torch

    path = pathlib.Path(path)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # traced shape arithmetic (on purpose), torch.jit's deprecation notice
        traced = torch.jit.trace(net, example, check_trace=False)
    with atomic_write(path) as tmp:
        traced.save(str(tmp))
    return path


def write_onnx(net: torch.nn.Module, path: str | os.PathLike, example: torch.Tensor, ndim: int) -> pathlib.Path:
    """Export ``net`` to ONNX (opset :data:`ONNX_OPSET`) with dynamic batch and spatial axes, atomically.

    Uses torch's TorchScript-based exporter (``dynamo=False``), which needs no extra package.
    """
    import torch

    path = pathlib.Path(path)
    names = ["z", "y", "x"][-ndim:]
    axes = {0: "batch", **{2 + i: n for i, n in enumerate(names)}}
    with atomic_write(path) as tmp, torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy-exporter notice and traced shape arithmetic
        torch.onnx.export(
            net,
            (example,),
            str(tmp),
            dynamo=False,
            input_names=["input"],
            output_names=["output"],
            dynamic_axes={"input": axes, "output": axes},
            opset_version=ONNX_OPSET,
            do_constant_folding=True,
        )
    return path
