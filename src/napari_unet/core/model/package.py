"""Reading back bioimage.io packages that napari-unet exported (``napari-unet export --format bioimageio``).

A package napari-unet wrote holds its model file's config under ``config.napari_unet`` in ``rdf.yaml``
and the network's ``state_dict`` as its ``pytorch_state_dict`` weights; :func:`load_package` rebuilds
the same :class:`~napari_unet.core.model.unet.UNet` from them, so ``load_model``, ``segment`` and the
Segment panel take the .zip like a model file. Other bioimage.io packages are refused with a message
saying what is supported. Needs no bioimageio package: the zip and its YAML are read directly.

The weights are a PyTorch file, read with ``torch.load(..., weights_only=True)``: PyTorch's restricted
loader that only rebuilds tensors and plain containers and refuses any other object, so opening a
package cannot run code from it (unlike a plain ``torch.load``).
"""

from __future__ import annotations

import io
import json
import os
import pathlib
import zipfile
from typing import TYPE_CHECKING, Any

from .check import expected_shapes
from .header import METADATA_KEY, Header, ModelFileError, parse_config

if TYPE_CHECKING:
    from .unet import UNet

DESCRIPTION_FILES = ("rdf.yaml", "bioimageio.yaml")
SUPPORTED = (
    "napari-unet reads its own model files (.safetensors) and bioimage.io packages exported by napari-unet "
    "(napari-unet export MODEL --format bioimageio)"
)


def is_package(path: str | os.PathLike) -> bool:
    """Whether ``path`` is read as a bioimage.io package: a zip file named ``.zip`` or holding an ``rdf.yaml``.

    Other zips (a ``torch.save`` checkpoint is one) are left to the model file reader, which refuses them.
    """
    path = pathlib.Path(path)
    try:
        if not path.is_file() or not zipfile.is_zipfile(path):
            return False
        if path.suffix.lower() == ".zip":
            return True
        with zipfile.ZipFile(path) as archive:
            return any(name in DESCRIPTION_FILES for name in archive.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


def _description(path: pathlib.Path, archive: zipfile.ZipFile) -> dict[str, Any]:
    import yaml

    names = set(archive.namelist())
    found = next((n for n in DESCRIPTION_FILES if n in names), None)
    if found is None:
        raise ModelFileError(f"{path} is a zip file but not a bioimage.io package (no rdf.yaml); {SUPPORTED}")
    try:
        rdf = yaml.safe_load(archive.read(found))
    except yaml.YAMLError as exc:
        raise ModelFileError(f"{path}: its {found} is not valid YAML ({exc})") from None
    if not isinstance(rdf, dict):
        raise ModelFileError(f"{path}: its {found} is not a YAML mapping")
    return rdf


def _config(path: pathlib.Path, rdf: dict[str, Any]) -> dict[str, Any]:
    config = (rdf.get("config") or {}).get(METADATA_KEY) if isinstance(rdf.get("config"), dict) else None
    if not isinstance(config, dict):
        name = rdf.get("name", "?")
        raise ModelFileError(
            f"{path} is a bioimage.io package ({name!r}) not made by napari-unet (no config.{METADATA_KEY} in "
            f"its description); {SUPPORTED}"
        )
    return config


def _checked(path: pathlib.Path, config: dict[str, Any], shapes: dict[str, Any] | None) -> dict[str, Any]:
    """``config`` checked like a model file's (:func:`~.header.parse_config`), against ``shapes`` (None: the
    shapes the architecture gives, i.e. no check of the weights)."""
    if shapes is None:
        try:
            shapes = {k: list(v) for k, v in expected_shapes(config.get("architecture") or {}).items()}
        except Exception:  # noqa: BLE001 - an invalid architecture: parse_config names the problem
            shapes = {}
    tensors = {k: {"shape": list(s)} for k, s in shapes.items()}
    header = Header(path, path.stat().st_size, tensors, {METADATA_KEY: json.dumps(config)})
    return parse_config(header)


def read_package_info(path: str | os.PathLike) -> dict[str, Any]:
    """The napari-unet config (``format``, ``architecture``, ``spec``, ...) of a package napari-unet exported,
    checked like a model file's, without reading the weights or importing torch.

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    ModelFileError
        Not a zip, not a bioimage.io package, or one not made by napari-unet (the message says what is supported).
    """
    path = pathlib.Path(path)
    if not path.exists():
        raise FileNotFoundError(f"model file not found: {path}")
    try:
        with zipfile.ZipFile(path) as archive:
            config = _config(path, _description(path, archive))
    except zipfile.BadZipFile as exc:
        raise ModelFileError(f"{path} is not a readable zip file ({exc}); {SUPPORTED}") from None
    return _checked(path, config, None)


def load_package(path: str | os.PathLike, *, device: str | None = None) -> UNet:
    """The UNet in a bioimage.io package napari-unet exported, in eval mode (see the module docstring).

    Raises
    ------
    ModelFileError
        As :func:`read_package_info`; also when the weights are missing, unreadable, do not match the
        architecture or hold NaN or infinite values.
    """
    import torch

    from ..options import resolve_device
    from .spec import ModelSpec
    from .unet import UNet

    path = pathlib.Path(path)
    read_package_info(path)
    with zipfile.ZipFile(path) as archive:
        rdf = _description(path, archive)
        config = _config(path, rdf)
        source = ((rdf.get("weights") or {}).get("pytorch_state_dict") or {}).get("source")
        if not isinstance(source, str) or source not in archive.namelist():
            raise ModelFileError(f"{path}: the package has no pytorch_state_dict weights file ({source!r})")
        data = archive.read(source)
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - anything torch refuses: a corrupt or foreign file
        raise ModelFileError(f"{path}: its weights {source} could not be read safely ({exc})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelFileError(f"{path}: its weights {source} are not a state_dict of tensors")
    shapes = {k: list(v.shape) for k, v in state.items() if not k.endswith("num_batches_tracked")}
    config = _checked(path, config, shapes)
    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise ModelFileError(f"{path}: the weights hold NaN or infinite values (in {', '.join(bad[:3])})")
    dev = resolve_device(device) if device is not None else None
    model = UNet(**config["architecture"], spec=ModelSpec.from_dict(config["spec"]))
    for key, value in model.state_dict().items():
        state.setdefault(key, value)
    model.load_state_dict(state, strict=True)
    model.eval()
    return model.to(dev) if dev is not None else model


def describe_package(path: str | os.PathLike) -> str:
    """A few lines about a package napari-unet exported (``napari-unet info``, the panel's tooltip)."""
    from .file import summarize_model

    path = pathlib.Path(path)
    info = read_package_info(path)
    size = path.stat().st_size / 1e6
    return (
        f"bioimage.io package exported by napari-unet {info.get('napari_unet_version', '?')}: {path.name} "
        f"({size:.1f} MB)\n{summarize_model(info)}"
    )
