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
:func:`describe_model` parse the header themselves and never import it, so the CLI and
the napari widget can describe a model cheaply.
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
import struct
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..._version import __version__
from .check import check_architecture, expected_shapes, nonfinite_tensors, shape_problems
from .spec import ModelSpec

if TYPE_CHECKING:
    from .unet import UNet

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "METADATA_KEY",
    "ModelFileError",
    "describe_model",
    "load_model",
    "read_model_info",
    "save_model",
]

logger = logging.getLogger(__name__)

#: Value of the config's ``"format"`` key.
FORMAT = "napari-unet-model"
#: Newest model file format this version writes and reads.
FORMAT_VERSION = 1
#: Key of the JSON config in the safetensors header's ``__metadata__``.
METADATA_KEY = "napari_unet"

#: Architecture keys every model file must carry (the arguments of ``UNet``).
ARCHITECTURE_KEYS = ("in_channels", "n_classes", "depth", "base_features", "ndim", "upsampling", "norm")
#: Architecture keys a file may carry: ``heads`` (extra outputs, e.g. ``["distance"]``; absent = none).
OPTIONAL_ARCHITECTURE_KEYS = ("heads",)

# safetensors refuses headers above 100 MB; anything larger is not one of its files.
_MAX_HEADER_BYTES = 100_000_000
_DTYPE_BYTES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1,
    "U16": 2, "I16": 2, "F16": 2, "BF16": 2,
    "U32": 4, "I32": 4, "F32": 4,
    "U64": 8, "I64": 8, "F64": 8,
}
_BUFFER_SUFFIXES = ("running_mean", "running_var", "num_batches_tracked")
_NOT_A_MODEL = (
    "is not a napari-unet model file (expected a safetensors file with a napari-unet config; "
    "pickled PyTorch checkpoints are not loaded for safety, as unpickling can run arbitrary code)"
)


class ModelFileError(ValueError):
    """A file is not a valid napari-unet model file; the message names the file and the problem."""


@dataclasses.dataclass(frozen=True)
class _Header:
    """What the safetensors header of a model file says."""

    path: pathlib.Path
    file_size: int
    tensors: dict[str, dict[str, Any]]
    metadata: dict[str, str]
    data_start: int = 0


# ---------------------------------------------------------------------------- header parsing
def _check_is_file(path: pathlib.Path) -> None:
    if not path.exists():
        raise FileNotFoundError(f"model file not found: {path}")
    if path.is_dir():
        raise ModelFileError(f"{path} is a directory, not a napari-unet model file")


def _sniff(head: bytes) -> str:
    """A hint about what a non-safetensors file looks like, from its first bytes."""
    if head.startswith(b"PK\x03\x04"):
        return " It looks like a zip archive, e.g. a torch.save() checkpoint."
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return " It looks like a Python pickle, e.g. a legacy torch.save() checkpoint."
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return " It looks like a TIFF image."
    return ""


def _read_header(path: str | os.PathLike) -> _Header:
    """Parse and check the safetensors header of ``path`` without reading the tensor data."""
    path = pathlib.Path(path)
    _check_is_file(path)
    file_size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            raise ModelFileError(f"{path} {_NOT_A_MODEL}: the file is only {file_size} bytes long.")
        (n,) = struct.unpack("<Q", head)
        if n == 0 or n > _MAX_HEADER_BYTES:
            raise ModelFileError(f"{path} {_NOT_A_MODEL}.{_sniff(head)}")
        raw = fh.read(n)
    if not raw.lstrip(b" ").startswith(b"{"):
        raise ModelFileError(f"{path} {_NOT_A_MODEL}.{_sniff(head)}")
    if len(raw) < n:
        raise ModelFileError(
            f"{path} is truncated: its safetensors header says {n} bytes but the file holds only "
            f"{file_size} bytes in all"
        )
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFileError(f"{path} {_NOT_A_MODEL}: its header is not valid JSON ({exc}).") from None
    if not isinstance(header, dict):
        raise ModelFileError(f"{path} {_NOT_A_MODEL}: its header is not a JSON object.")

    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
    ):
        raise ModelFileError(f"{path} is not a valid safetensors file: __metadata__ is not a map of strings")

    data_size = file_size - 8 - n
    needed = 0
    for name, entry in header.items():
        try:
            dtype, shape, (begin, end) = entry["dtype"], entry["shape"], entry["data_offsets"]
            if not (isinstance(dtype, str) and all(isinstance(s, int) and s >= 0 for s in shape)
                    and isinstance(begin, int) and isinstance(end, int) and 0 <= begin <= end):
                raise ValueError
        except (KeyError, TypeError, ValueError):
            raise ModelFileError(
                f"{path} is not a valid safetensors file: the header entry of tensor {name!r} is malformed"
            ) from None
        item = _DTYPE_BYTES.get(dtype)
        if item is not None and (end - begin) != item * math.prod(shape):
            raise ModelFileError(
                f"{path} is corrupt: tensor {name!r} ({dtype}, shape {list(shape)}) should take "
                f"{item * math.prod(shape)} bytes but the header gives it {end - begin}"
            )
        needed = max(needed, end)
    if needed > data_size:
        raise ModelFileError(
            f"{path} is truncated: its header describes {needed} bytes of tensor data but the file "
            f"holds only {max(data_size, 0)}"
        )
    return _Header(path=path, file_size=file_size, tensors=header, metadata=metadata, data_start=8 + n)


def _parse_config(header: _Header) -> dict[str, Any]:
    """Extract and validate the napari-unet JSON config from a parsed header."""
    path = header.path
    text = header.metadata.get(METADATA_KEY)
    if text is None:
        raise ModelFileError(
            f"{path} is a safetensors file without a napari-unet config (no {METADATA_KEY!r} entry in its "
            "metadata); it was not written by napari-unet's save_model"
        )
    try:
        config = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ModelFileError(f"{path}: the napari-unet config is invalid JSON ({exc})") from None
    if not isinstance(config, dict):
        raise ModelFileError(f"{path}: the napari-unet config is invalid: expected a JSON object, got {text[:60]!r}")

    fmt = config.get("format")
    if fmt != FORMAT:
        raise ModelFileError(f"{path}: the napari-unet config has format {fmt!r}, expected {FORMAT!r}")
    version = config.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ModelFileError(
            f"{path}: the napari-unet config has an invalid format_version {version!r} (expected an integer >= 1)"
        )
    if version > FORMAT_VERSION:
        raise ModelFileError(
            f"{path} uses model file format version {version}, but napari-unet {__version__} reads format "
            f"version {FORMAT_VERSION} and older; upgrade napari-unet to load it"
        )

    arch = config.get("architecture")
    if not isinstance(arch, dict):
        raise ModelFileError(f"{path}: the napari-unet config has no 'architecture' object")
    missing = [k for k in ARCHITECTURE_KEYS if k not in arch]
    if missing:
        raise ModelFileError(f"{path}: invalid architecture: missing key(s) {', '.join(missing)}")
    unknown = sorted(set(arch) - set(ARCHITECTURE_KEYS) - set(OPTIONAL_ARCHITECTURE_KEYS))
    if unknown:
        raise ModelFileError(
            f"{path}: invalid architecture: unknown key(s) {', '.join(unknown)}; a newer napari-unet may be needed"
        )

    # types and sane limits, then the stored tensor shapes: before anything is built or allocated
    try:
        check_architecture(arch)
    except (TypeError, ValueError) as exc:
        raise ModelFileError(f"{path}: invalid architecture: {exc}") from None
    problems = shape_problems({k: e["shape"] for k, e in header.tensors.items()}, expected_shapes(arch))
    if problems:
        raise ModelFileError(f"{path}: the weights do not match the architecture: {'; '.join(problems)}")

    spec_data = config.get("spec")
    if not isinstance(spec_data, dict):
        raise ModelFileError(f"{path}: the napari-unet config has no 'spec' object")
    try:
        ModelSpec.from_dict(spec_data).check_against(arch)
    except (TypeError, ValueError) as exc:
        raise ModelFileError(f"{path}: invalid spec: {exc}") from None
    return config


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
    return _parse_config(_read_header(path))


def _parameter_count(tensors: Mapping[str, Mapping[str, Any]]) -> int:
    """Learnable parameters: all tensors except BatchNorm running statistics."""
    return sum(math.prod(e["shape"]) for name, e in tensors.items() if not name.endswith(_BUFFER_SUFFIXES))


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
    header = _read_header(path)
    config = _parse_config(header)
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
    lines.append(f"output: {len(spec.class_names)} class(es): {', '.join(spec.class_names)}"
                 + (f"; heads: {', '.join(arch['heads'])}" if arch.get("heads") else ""))
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
    lines.append(
        "pixel size: " + (" x ".join(f"{p:g}" for p in spec.pixel_size) if spec.pixel_size else "unknown")
    )
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

    from ..image.io import atomic_write

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
            raise ValueError(
                f"unknown spec field(s) {', '.join(unknown)}; known fields: {', '.join(sorted(known))}"
            )
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


def _check_finite(header: _Header) -> None:
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
    the config is JSON (no pickle, no ``torch.load``).

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
    header = _read_header(path)
    path = header.path
    config = _parse_config(header)
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
