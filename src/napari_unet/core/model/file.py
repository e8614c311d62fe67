"""The napari-unet model file: one safetensors file with the weights and a JSON config.

Layout (see ``docs/model-file.md``)::

    8 bytes   little-endian uint64 N: length of the header
    N bytes   JSON header: one entry per tensor (dtype, shape, data offsets) and
              "__metadata__": {"napari_unet": "<JSON config>"}
    rest      raw little-endian tensor data (the UNet state_dict)

The JSON config holds ``format``, ``format_version``, ``napari_unet_version``, ``created``,
``architecture`` (:attr:`UNet.config`) and ``spec`` (:meth:`ModelSpec.to_dict`).

Loading never executes code from the file: there is no pickle and no ``torch.load``.
Importing this module does not import torch; :func:`read_model_info` and
:func:`describe_model` read the header with ``safetensors.safe_open`` (numpy) and never import it, so the CLI and
the napari widget can describe a model cheaply. This module is the one home of model
descriptions: :func:`describe_model` (``napari-unet info``, the panel's tooltip) and its short
form :func:`summarize_model` (the panel's Model box).
"""

from __future__ import annotations

import copy
import dataclasses
import datetime
import json
import logging
import math
import os
import pathlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..._version import __version__
from .check import nonfinite_tensors
from .header import (
    BUFFER_SUFFIXES,
    FORMAT,
    FORMAT_VERSION,
    METADATA_KEY,
    Header,
    ModelFileError,
    parse_config,
    read_header,
)
from .package import describe_package, is_package, load_package, read_package_info
from .spec import ModelSpec

if TYPE_CHECKING:
    from .unet import UNet

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------------- public API
def read_model_info(path: str | os.PathLike) -> dict[str, Any]:
    """Read the JSON config of a model file without loading the weights or importing torch.

    Parameters
    ----------
    path : str or os.PathLike
        A napari-unet model file.

    Returns
    -------
    dict
        The parsed config: ``format``, ``format_version``, ``napari_unet_version``, ``created``,
        ``architecture`` (the ``UNet`` arguments) and ``spec`` (a :meth:`ModelSpec.to_dict` dict).

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ModelFileError
        If ``path`` is not a valid napari-unet model file this version can read, or its
        architecture is absurd (:func:`~napari_unet.core.model.check.check_architecture`) or does
        not match the tensor shapes in its header. The tensor data is not read.
    """
    if is_package(path):  # a bioimage.io package napari-unet exported (core/model/package.py)
        return read_package_info(path)
    return parse_config(read_header(path))


def _parameter_count(tensors: Mapping[str, Mapping[str, Any]]) -> int:
    """Learnable parameters: all tensors except BatchNorm running statistics."""
    return sum(math.prod(e["shape"]) for name, e in tensors.items() if not name.endswith(BUFFER_SUFFIXES))


def _format_size(n_bytes: int) -> str:
    size = float(n_bytes)
    for unit in ("bytes", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{n_bytes} bytes" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1000
    raise AssertionError("unreachable")


def _short(value: Any, limit: int = 70) -> str:
    if isinstance(value, float):
        text = f"{value:.4g}"
    elif isinstance(value, Mapping):
        text = ", ".join(f"{k}={_short(v, limit)}" for k, v in value.items())
    elif isinstance(value, (list, tuple)):
        text = "[" + ", ".join(_short(v, limit) for v in value) + "]"
    else:
        text = str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def describe_model(path: str | os.PathLike) -> str:
    """A multi-line, human-readable summary of a model file, read without importing torch.

    Parameters
    ----------
    path : str or os.PathLike
        A napari-unet model file.

    Returns
    -------
    str
        File name and size, architecture and parameter count, channels, classes, target,
        normalisation, pixel size, training record and versions.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ModelFileError
        As :func:`read_model_info`; also when the weights hold NaN or infinite values (the
        tensor data is read for that, through a memory map).
    """
    if is_package(path):
        return describe_package(path)
    header = read_header(path)
    config = parse_config(header)
    _check_finite(header)
    arch, spec = config["architecture"], ModelSpec.from_dict(config["spec"])
    upsampling = "transposed-conv" if arch["upsampling"] == "transpose" else "interpolating"
    lines = [f"napari-unet model: {header.path.name} ({_format_size(header.file_size)})"]
    if spec.description:
        lines.append(f"  {spec.description}")
    lines.append(
        f"architecture: {arch['ndim']}D U-Net, depth {arch['depth']}, {arch['base_features']} base features, "
        f"{upsampling} upsampling, {'with' if arch['norm'] else 'no'} BatchNorm; "
        f"{_parameter_count(header.tensors):,} parameters"
    )
    lines.append(f"input: {len(spec.channel_names)} channel(s): {', '.join(spec.channel_names)}; axes {spec.axes}")
    lines.append(
        f"output: {len(spec.class_names)} class(es): {', '.join(spec.class_names)}"
        + (f"; heads: {', '.join(arch['heads'])}" if arch.get("heads") else "")
    )
    target = spec.target
    if spec.boundary_class is not None:
        target += f" (boundary class {spec.boundary_class}: {spec.class_names[spec.boundary_class]})"
    lines.append(f"target: {target}")
    norm = dict(spec.normalization)
    method = norm.pop("method", "percentile")
    low, high = spec.percentiles
    if method == "percentile":
        lines.append(f"normalisation: per-channel percentiles {low:g}-{high:g} mapped to 0-1")
    else:
        lines.append(f"normalisation: {method} {_short(norm)}".rstrip())
    lines.append("pixel size: " + (" x ".join(f"{p:g}" for p in spec.pixel_size) if spec.pixel_size else "unknown"))
    if spec.object_size:
        found = ""
        if spec.size_model:
            lo, hi = (spec.size_model.get("range") or [0, 0])[:2]
            found = f" (found in each image by the model: regression fitted on {lo:.0f}-{hi:.0f} px)"
        lines.append(f"object size: {spec.object_size:g} px{found}")
    if spec.postprocess:
        lines.append("post-processing: " + ", ".join(f"{k} {v}" for k, v in spec.postprocess.items()))
    if spec.training:
        lines.append("training:")
        lines.extend(f"  {key}: {_short(value)}" for key, value in spec.training.items())
    else:
        lines.append("training: no record")
    lines.append(
        f"written by napari-unet {config.get('napari_unet_version', '?')} on {config.get('created', '?')} "
        f"(model file format {config['format_version']})"
    )
    return "\n".join(lines)


def _json_default(obj: Any) -> Any:
    """Make numpy scalars/arrays and tensors JSON-serialisable; refuse anything else."""
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON-serialisable")


def save_model(
    model: UNet, path: str | os.PathLike, *, spec: ModelSpec | None = None, **spec_updates: Any
) -> pathlib.Path:
    """Write ``model`` as one self-describing safetensors file (weights + JSON config).

    The file is written atomically: to a temporary file in the same folder, then renamed over
    ``path``, so an existing file is only replaced by a complete one and a failed save leaves
    nothing behind. ``model`` itself is not modified.

    Parameters
    ----------
    model : UNet
        The network; its ``config`` is stored as the architecture and its ``state_dict``
        (BatchNorm running statistics included) as the weights.
    path : str or os.PathLike
        Destination; ``.safetensors`` is the recommended extension but any name is accepted.
        Its folder must exist.
    spec : ModelSpec, optional
        What the model expects and produces; defaults to ``model.spec``.
    **spec_updates
        Fields of the spec to change before saving, e.g. ``description="..."``,
        ``channel_names=[...]``, ``training={...}``.

    Returns
    -------
    pathlib.Path
        The path written.

    Raises
    ------
    ValueError
        If the spec does not match the architecture, or a spec field is unknown or not
        JSON-serialisable; nothing is written.
    ModelFileError
        If ``path`` is a directory.
    FileNotFoundError
        If the folder of ``path`` does not exist.
    """
    from safetensors.torch import save_file

    from ..image.files import atomic_write

    path = pathlib.Path(path)
    if path.is_dir():
        raise ModelFileError(f"{path} is a directory; give a file name such as {path / 'model.safetensors'}")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"cannot save model to {path}: folder {path.parent} does not exist")

    out_spec = copy.deepcopy(spec if spec is not None else model.spec)
    if spec_updates:
        known = {f.name for f in dataclasses.fields(ModelSpec)}
        unknown = sorted(set(spec_updates) - known)
        if unknown:
            raise ValueError(f"unknown spec field(s) {', '.join(unknown)}; known fields: {', '.join(sorted(known))}")
        out_spec = dataclasses.replace(out_spec, **copy.deepcopy(spec_updates))
    out_spec.check_against(model.config)

    config = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "napari_unet_version": __version__,
        "created": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "architecture": dict(model.config),
        "spec": out_spec.to_dict(),
    }
    try:
        text = json.dumps(config, default=_json_default, ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"cannot save model to {path}: the spec is not JSON-serialisable ({exc})") from None

    tensors = {name: t.detach().to("cpu").contiguous() for name, t in model.state_dict().items()}
    with atomic_write(path) as tmp:
        save_file(tensors, tmp, metadata={METADATA_KEY: text})
    logger.info("saved model (%d tensors, %s) to %s", len(tensors), _format_size(path.stat().st_size), path)
    return path


def _check_finite(header: Header) -> None:
    """Raise ModelFileError when weights hold NaN or infinite values (the model would output NaN)."""
    bad = nonfinite_tensors(header.path, header.data_start, header.tensors)
    if bad:
        name, count = bad[0]
        more = f" and {len(bad) - 1} more tensor(s)" if len(bad) > 1 else ""
        raise ModelFileError(
            f"{header.path}: the weights hold NaN or infinite values ({count} in {name}{more}); such a model "
            "outputs NaN everywhere (it was probably saved from a training run that diverged): retrain it, "
            "e.g. with a lower learning rate"
        )


def load_model(path: str | os.PathLike, *, device: str | None = None) -> UNet:
    """Build the U-Net described by a model file and load its weights.

    Never executes code from the file: the weights are raw tensors read by safetensors and
    the config is JSON (no pickle, no ``torch.load``). A bioimage.io package (.zip) napari-unet exported
    is read by :func:`~napari_unet.core.model.package.load_package` (its weights with PyTorch's restricted
    ``weights_only`` loader); other packages are refused.

    Parameters
    ----------
    path : str or os.PathLike
        A napari-unet model file (see :func:`save_model`).
    device : str or int, optional
        Where to put the model (``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"`` or ``1``, ``"mps"``);
        CPU when omitted. Checked like ``segment``'s ``device`` (:func:`~napari_unet.core.options.resolve_device`).

    Returns
    -------
    UNet
        The model in eval mode, with ``spec`` from the file.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ModelFileError
        If ``path`` is not a valid napari-unet model file, is newer than this version reads,
        its architecture is absurd or does not match its tensors, or its weights hold NaN or
        infinite values. Everything is checked before the network is built.
    ValueError
        If ``device`` is not a device name or index, or names a device that is not there.
    """
    if is_package(path):  # a bioimage.io package napari-unet exported: config.napari_unet + its weights
        return load_package(path, device=device)
    header = read_header(path)
    path = header.path
    config = parse_config(header)
    _check_finite(header)

    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from ..options import resolve_device
    from .unet import UNet

    dev = resolve_device(device) if device is not None else None

    try:
        model = UNet(**config["architecture"], spec=ModelSpec.from_dict(config["spec"]))
    except (TypeError, ValueError) as exc:
        raise ModelFileError(f"{path}: invalid architecture: {exc}") from None
    try:
        state = load_file(path, device="cpu")
    except SafetensorError as exc:
        raise ModelFileError(f"{path} is not a readable safetensors file: {exc}") from None

    for key, value in model.state_dict().items():  # BatchNorm step counters a writer left out
        state.setdefault(key, value)
    model.load_state_dict(state, strict=True)
    model.eval()
    if dev is not None:
        model.to(dev)
    logger.info("loaded model from %s (%dD, %d -> %d channels)", path, model.ndim, model.in_channels, model.n_classes)
    return model


_TRAINING_DATA_KEYS = ("data", "dataset", "training_data", "train_data", "images")


def summarize_model(info: dict[str, Any]) -> str:
    """A few lines about a model (the panel's Model box), from :func:`read_model_info`'s dict.

    The short form of :func:`describe_model`: the one home of model descriptions is this module.

    Parameters
    ----------
    info : dict
        The model file's config.

    Returns
    -------
    str
        Input channels, classes and target, training data and pixel size.
    """
    arch, spec = info["architecture"], info["spec"]
    channels = spec.get("channel_names") or []
    classes = spec.get("class_names") or []
    lines = []
    description = str(spec.get("description") or "").strip()
    if description:
        lines.append(description.splitlines()[0])
    lines.append(f"{arch['ndim']}D U-Net; input: {len(channels)} channel(s) ({', '.join(map(str, channels))})")
    lines.append(f"output: {len(classes)} classes ({', '.join(map(str, classes))}); target: {spec.get('target', '?')}")
    training = spec.get("training") or {}
    data = next((training[k] for k in _TRAINING_DATA_KEYS if training.get(k)), None)
    lines.append(f"training data: {data if data is not None else 'not recorded'}")
    pixel = spec.get("pixel_size")
    lines.append("pixel size: " + (" x ".join(f"{p:g}" for p in pixel) if pixel else "unknown"))
    if spec.get("object_size"):
        lines.append(f"trained on objects of about {spec['object_size']:.0f} px diameter")
    return "\n".join(lines)
