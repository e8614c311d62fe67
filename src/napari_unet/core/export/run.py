"""``export_model``: a napari-unet model as a bioimage.io package, a TorchScript file or an ONNX file.

torch, onnx and bioimageio are imported when an export starts; every file is written atomically
(nothing half-written is left behind on an error).
"""

from __future__ import annotations

import logging
import os
import pathlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..model.unet import UNet

log = logging.getLogger(__name__)

#: Export formats and the file each writes.
FORMATS = {"bioimageio": ".zip", "torchscript": ".pt", "onnx": ".onnx"}


def require(module: str, what: str) -> Any:
    """Import ``module``, or raise ``MissingExtraError`` naming the ``export`` extra."""
    import importlib

    from ..image.zarr_read import MissingExtraError

    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise MissingExtraError(
            f"{what} needs the package {module.split('.')[0]!r} ({err}); install it with: "
            'pip install "napari-unet[export]"'
        ) from None


def check_format(format: str) -> str:
    """``format`` lower-cased, or ValueError naming it and the formats there are."""
    name = str(format).strip().lower().replace(".", "").replace("_", "")
    name = {"bioimage": "bioimageio", "ts": "torchscript", "jit": "torchscript"}.get(name, name)
    if name not in FORMATS:
        raise ValueError(f"unknown export format {format!r}; choose one of: {', '.join(FORMATS)}")
    return name


def check_output(output: str | os.PathLike, format: str, *, overwrite: bool = False) -> pathlib.Path:
    """The file to write, checked: not a folder, not an existing file unless ``overwrite``, a ``.zip`` for
    bioimage.io. Its folder is created."""
    if output is None or str(output) == "":
        raise ValueError(f"give the file to write (e.g. model{FORMATS[format]})")
    path = pathlib.Path(output).expanduser()
    if path.is_dir():
        raise ValueError(
            f"output {str(path)!r} is a folder; give a file name such as {path / ('model' + FORMATS[format])}"
        )
    if format == "bioimageio" and path.suffix.lower() != ".zip":
        raise ValueError(f"a bioimage.io package is a .zip file, got output {str(path)!r}")
    if path.exists() and not overwrite:
        raise FileExistsError(f"output {str(path)!r} exists; pass overwrite=True to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def load_for_export(model: Any) -> tuple[UNet, str | None]:
    """A UNet and its built-in name (None for other models) from a UNet, a model file or a built-in name."""
    from ..model.bundled import builtin_name, resolve_model_file
    from ..model.file import load_model
    from ..model.unet import UNet

    if isinstance(model, UNet):
        return model, None
    if isinstance(model, (str, os.PathLike)):
        path = resolve_model_file(model)  # a bare unknown name: ValueError naming the built-in models
        if not path.exists():
            raise FileNotFoundError(f"no model file {str(path)!r} (and no built-in model of that name)")
        return load_model(path), builtin_name(path)
    raise TypeError(f"model must be a UNet, a model file path or a built-in model name, got {type(model).__name__}")


def export_model(
    model: Any,
    *,
    format: str,
    output: str | os.PathLike,
    overwrite: bool = False,
    name: str | None = None,
    authors: list[str] | None = None,
    license: str | None = None,
) -> pathlib.Path:
    """Write ``model`` in another format: a bioimage.io package, TorchScript or ONNX.

    Parameters
    ----------
    model : UNet, str or os.PathLike
        A UNet, a napari-unet model file, or a built-in model by name (``"nuclei"``).
    format : {"bioimageio", "torchscript", "onnx"}
        ``bioimageio``: a bioimage.io model package (.zip) with pytorch_state_dict, TorchScript and ONNX
        weights, test tensors, cover, README (docs/export.md); ``torchscript``: one traced TorchScript file;
        ``onnx``: one ONNX file (dynamic batch and spatial axes). All output probabilities.
    output : str or os.PathLike
        The file to write; its folder is created.
    overwrite : bool
        Replace an existing ``output``.
    name, authors, license
        bioimage.io only: the package's name (default: from the model), authors (default: the
        napari-unet developers for a built-in model, else "unknown") and licence, an SPDX id
        (default: the built-in model's, BSD-3-Clause; else CC-BY-4.0).

    Returns
    -------
    pathlib.Path
        The file written.

    Raises
    ------
    ValueError
        An unknown format, a bad output, an unknown built-in model name.
    FileExistsError
        ``output`` exists and ``overwrite`` is False.
    FileNotFoundError
        The model file does not exist.
    MissingExtraError
        An optional package the format needs is not installed.
    """
    fmt = check_format(format)
    path = check_output(output, fmt, overwrite=overwrite)
    if fmt == "onnx":
        require("onnx", "ONNX export")
    elif fmt == "bioimageio":
        require("bioimageio.spec", "bioimage.io export")
        require("onnx", "bioimage.io export (its ONNX weights)")
    net, builtin = load_for_export(model)
    from .network import example_input, exported_network, write_onnx, write_torchscript

    exported = exported_network(net)
    if fmt == "torchscript":
        write_torchscript(exported, path, example_input(net))
    elif fmt == "onnx":
        write_onnx(exported, path, example_input(net), net.ndim)
    else:
        from .bioimageio import write_package

        write_package(net, path, builtin=builtin, name=name, authors=authors, license=license)
    log.info("exported %s model to %s (%s)", builtin or "the", path, fmt)
    return path
