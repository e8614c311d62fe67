"""The header of a model file: the safetensors tensor table and the napari-unet JSON config,
read and checked without reading the tensor data or importing torch (through
``safetensors.safe_open``, which checks the file, and a few checks of our own for clearer errors).

The file layout is described in :mod:`~napari_unet.core.model.file` and ``docs/model-file.md``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import struct
from typing import Any

from safetensors import SafetensorError, safe_open

from ..._version import __version__
from .check import check_architecture, expected_shapes, shape_problems
from .spec import ModelSpec

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
BUFFER_SUFFIXES = ("running_mean", "running_var", "num_batches_tracked")
_NOT_A_MODEL = (
    "is not a napari-unet model file (expected a safetensors file with a napari-unet config; "
    "pickled PyTorch checkpoints are not loaded for safety, as unpickling can run arbitrary code)"
)


class ModelFileError(ValueError):
    """A file is not a valid napari-unet model file; the message names the file and the problem."""


@dataclasses.dataclass(frozen=True)
class Header:
    """What the safetensors header of a model file says."""

    path: pathlib.Path
    file_size: int
    tensors: dict[str, dict[str, Any]]
    metadata: dict[str, str]
    data_start: int = 0


# ---------------------------------------------------------------------------- header reading
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


def _refusal(path: pathlib.Path, text: bytes, data_size: int, exc: Exception) -> ModelFileError:
    """Why safetensors refused a file that starts like one; a file cut short is named plainly."""
    try:
        entries = json.loads(text)
        end = max((e["data_offsets"][1] for k, e in entries.items() if k != "__metadata__"), default=0)
    except (ValueError, KeyError, TypeError, IndexError, AttributeError):
        end = None  # too broken to tell: safetensors' reason says why
    if isinstance(end, int) and end > data_size:
        return ModelFileError(
            f"{path} is truncated: its header describes {end} bytes of tensor data but the file "
            f"holds only {max(data_size, 0)}"
        )
    if isinstance(end, int) and end < data_size:
        return ModelFileError(f"{path} is not a valid safetensors file: {data_size - end} bytes follow its tensor data")
    reason = str(exc).removeprefix("Error while deserializing header: ")
    return ModelFileError(f"{path} is not a valid safetensors file ({reason})")


def read_header(path: str | os.PathLike) -> Header:
    """Read and check the safetensors header of ``path`` without reading the tensor data.

    ``safetensors.safe_open`` checks the file; the first bytes are checked before, for clearer
    errors (pickles, zips, TIFFs, headers cut short). The tensors' byte offsets, which ``safe_open``
    does not expose, come from the JSON header once it has accepted it.
    """
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
        text = fh.read(n)
    if not text.lstrip(b" ").startswith(b"{"):
        raise ModelFileError(f"{path} {_NOT_A_MODEL}.{_sniff(head)}")
    if len(text) < n:
        raise ModelFileError(
            f"{path} is truncated: its safetensors header says {n} bytes but the file holds only "
            f"{file_size} bytes in all"
        )
    try:
        with safe_open(str(path), framework="numpy") as f:
            metadata = f.metadata() or {}
    except SafetensorError as exc:
        raise _refusal(path, text, file_size - 8 - n, exc) from None
    tensors = json.loads(text)
    tensors.pop("__metadata__", None)
    return Header(path=path, file_size=file_size, tensors=tensors, metadata=metadata, data_start=8 + n)


def parse_config(header: Header) -> dict[str, Any]:
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
