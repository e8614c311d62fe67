"""The default nuclei model shipped inside the package (see docs/model-card.md)."""

from __future__ import annotations

import importlib.resources
import pathlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .unet import UNet

DEFAULT_MODEL_NAME = "nuclei"
_MODELS = {DEFAULT_MODEL_NAME: "nuclei.safetensors"}


def bundled_model_path(name: str = DEFAULT_MODEL_NAME) -> pathlib.Path:
    """Path of a bundled model file.

    Raises
    ------
    ValueError
        Unknown name.
    FileNotFoundError
        The package was installed without its model file.
    """
    if name not in _MODELS:
        raise ValueError(f"no bundled model named {name!r}; available: {sorted(_MODELS)}")
    path = pathlib.Path(str(importlib.resources.files("napari_unet") / "data" / "models" / _MODELS[name]))
    if not path.is_file():
        raise FileNotFoundError(
            f"the bundled model file {path} is missing from this installation; reinstall napari-unet "
            "or pass a model file"
        )
    return path


def bundled_models() -> dict[str, pathlib.Path]:
    """Names and paths of the bundled models that are present."""
    out = {}
    for name in _MODELS:
        try:
            out[name] = bundled_model_path(name)
        except FileNotFoundError:
            pass
    return out


def load_default_model(device: str | None = None) -> UNet:
    """Load the bundled default nuclei model."""
    from .file import load_model

    return load_model(bundled_model_path(), device=device)
