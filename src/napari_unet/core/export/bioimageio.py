"""A napari-unet model as a bioimage.io model package (.zip), described with ``bioimageio.spec``.

The description uses the newest model format the installed ``bioimageio.spec`` implements
(``bioimageio.spec.model.ModelDescr``: 0.5.x). Inside the zip: ``rdf.yaml``, ``README.md``, ``cover.png``,
``test_input.npy`` / ``test_output.npy``, ``unet_arch.py`` + ``weights.pt`` (pytorch_state_dict),
``weights_torchscript.pt`` and ``weights.onnx``. See docs/export.md.
"""

from __future__ import annotations

import logging
import pathlib
import re
import tempfile
from typing import Any

import numpy as np

from ..image.files import atomic_write
from ..model.unet import UNet
from . import package_files as pf
from .network import ONNX_OPSET, architecture_kwargs, exported_network, write_onnx, write_torchscript

log = logging.getLogger(__name__)

#: The weights licence of the built-in models (data/README.md: "Licence of the weights: BSD-3-Clause").
BUILTIN_LICENSE = "BSD-3-Clause"
#: The licence of other models' packages unless one is given (bioimage.io's recommended licence).
DEFAULT_LICENSE = "CC-BY-4.0"
OUTPUT_ID = "probabilities"


def model_description_class() -> Any:
    """The newest model description class of the installed bioimageio.spec (its ``implemented_format_version``
    is the format written)."""
    from bioimageio.spec.model import ModelDescr

    return ModelDescr


def package_name(model: UNet, builtin: str | None, name: str | None) -> str:
    """A bioimage.io name: 5-128 characters of letters, digits, ``_+- ()``."""
    if name is None:
        base = f"napari-unet {builtin}" if builtin else (model.spec.description.splitlines() or [""])[0]
        name = base or f"napari-unet {model.ndim}D U-Net"
    clean = re.sub(r"[^A-Za-z0-9_+\- ()]", " ", str(name))
    clean = " ".join(clean.split())[:128]
    if len(clean) < 5:
        raise ValueError(f"package name {name!r} is too short: bioimage.io needs 5-128 letters, digits, '_+- ()'")
    return clean


def _axes(v: Any, model: UNet, *, output: bool) -> list[Any]:
    low, step = pf.size_rule(model)
    names = list(model.spec.class_names) + model.heads if output else list(model.spec.channel_names)
    axes: list[Any] = [v.BatchAxis(), v.ChannelAxis(channel_names=[_identifier(n, i) for i, n in enumerate(names)])]
    halo = pf.halo_of(model)
    for axis in model.spec.axes.lower():
        if output:
            size = v.SizeReference(tensor_id="input", axis_id=axis)
            if halo > 0:
                axes.append(v.SpaceOutputAxisWithHalo(id=axis, size=size, halo=halo))
            else:  # bioimage.io halos are >= 1
                axes.append(v.SpaceOutputAxis(id=axis, size=size))
        else:
            axes.append(v.SpaceInputAxis(id=axis, size=v.ParameterizedSize(min=low, step=step)))
    return axes


def _identifier(text: str, index: int) -> str:
    """A channel name bioimage.io accepts (an identifier-like string)."""
    clean = re.sub(r"\W+", "_", str(text)).strip("_")
    return clean or f"channel_{index}"


def write_package(
    model: UNet,
    path: pathlib.Path,
    *,
    builtin: str | None = None,
    name: str | None = None,
    authors: list[str] | None = None,
    license: str | None = None,
) -> pathlib.Path:
    """Write ``model`` as a bioimage.io package at ``path`` (a .zip), atomically.

    The network outputs probabilities (softmax over the classes, sigmoid for each head, inside the weights):
    bioimage.io's ``softmax`` / ``sigmoid`` postprocessing apply to a whole tensor, but ours mixes class
    probabilities and a sigmoid distance channel, and not every consumer implements the newer ops.
    """
    import torch
    from bioimageio.spec import save_bioimageio_package
    from bioimageio.spec.model import v0_5 as v

    descr_class = model_description_class()
    spec = model.spec
    title = package_name(model, builtin, name)  # a bad name fails before any work
    net = exported_network(model)
    with tempfile.TemporaryDirectory(prefix="napari-unet-export-") as tmp_name:
        tmp = pathlib.Path(tmp_name)
        x = pf.test_input(model)
        low, high = spec.percentiles
        y = pf.run_network(net, pf.scale_range(x, low, high))
        np.save(tmp / "test_input.npy", x)
        np.save(tmp / "test_output.npy", y)
        pf.cover_png(tmp / "cover.png", model, x, y)
        torch.save(net.state_dict(), tmp / "weights.pt")
        example = torch.from_numpy(pf.scale_range(x, low, high))
        write_torchscript(net, tmp / "weights_torchscript.pt", example)
        write_onnx(net, tmp / "weights.onnx", example, model.ndim)
        arch_file = tmp / "unet_arch.py"
        arch_file.write_text((pathlib.Path(__file__).parent / "unet_arch.py").read_text(encoding="utf-8"), "utf-8")
        formats = ["pytorch_state_dict", "torchscript", "onnx"]
        (tmp / "README.md").write_text(pf.readme(model, name=title, builtin=builtin, formats=formats), "utf-8")

        spatial = list(spec.axes.lower())
        inputs = v.InputTensorDescr(
            id="input",
            axes=_axes(v, model, output=False),
            test_tensor=v.FileDescr(source=tmp / "test_input.npy"),
            data=v.IntervalOrRatioDataDescr(type="float32"),
            preprocessing=[
                v.EnsureDtypeDescr(kwargs=v.EnsureDtypeKwargs(dtype="float32")),
                v.ScaleRangeDescr(
                    kwargs=v.ScaleRangeKwargs(axes=spatial, min_percentile=low, max_percentile=high, eps=pf.EPS)
                ),
            ],
        )
        outputs = v.OutputTensorDescr(
            id=OUTPUT_ID,
            axes=_axes(v, model, output=True),
            test_tensor=v.FileDescr(source=tmp / "test_output.npy"),
            data=v.IntervalOrRatioDataDescr(type="float32", range=(0.0, 1.0)),
            description="probabilities: softmax over the classes, sigmoid for each extra head (inside the network)",
        )
        torch_version = v.Version(torch.__version__.split("+")[0])
        weights = v.WeightsDescr(
            pytorch_state_dict=v.PytorchStateDictWeightsDescr(
                source=tmp / "weights.pt",
                architecture=v.ArchitectureFromFileDescr(
                    source=arch_file, callable="UNet", kwargs=architecture_kwargs(model.config)
                ),
                pytorch_version=torch_version,
            ),
            torchscript=v.TorchscriptWeightsDescr(
                source=tmp / "weights_torchscript.pt", pytorch_version=torch_version, parent="pytorch_state_dict"
            ),
            onnx=v.OnnxWeightsDescr(source=tmp / "weights.onnx", opset_version=ONNX_OPSET, parent="pytorch_state_dict"),
        )
        cite = [v.CiteEntry(text=pf.CITE_UNET[0], doi=pf.CITE_UNET[1])]
        if builtin:
            cite.append(v.CiteEntry(text=pf.CITE_DSB2018[0], doi=pf.CITE_DSB2018[1]))
        people = authors or (["napari-unet developers"] if builtin else ["unknown"])
        descr = descr_class(
            name=title,
            description=(spec.description or f"napari-unet {model.ndim}D U-Net ({spec.target})")[:1024],
            authors=[v.Author(name=str(a)) for a in people],
            cite=cite,
            license=license or (BUILTIN_LICENSE if builtin else DEFAULT_LICENSE),
            documentation=v.FileDescr(source=tmp / "README.md"),
            covers=[v.FileDescr(source=tmp / "cover.png")],
            tags=["napari-unet", "unet", "segmentation", f"{model.ndim}d", spec.target, "pytorch"],
            inputs=[inputs],
            outputs=[outputs],
            weights=weights,
            config=v.Config(napari_unet=pf.napari_unet_config(model)),
        )
        with atomic_write(path) as out:
            save_bioimageio_package(descr, output_path=out)
    log.info("bioimage.io package (model format %s) written to %s", descr_class.implemented_format_version, path)
    return path
