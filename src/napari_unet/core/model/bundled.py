"""The built-in models shipped inside the package (see docs/model-card.md), by name.

:func:`resolve_model_file` is the one place where a model given as a built-in name, a file path
or nothing (the default) becomes a file; :func:`builtin_name` turns a built-in model's file back
into its name, which is what console lines and provenance records show (a path inside the
installation would not work on another machine).
"""

from __future__ import annotations

import importlib.resources
import os
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
        raise ValueError(f"no bundled model named {name!r}; built-in models: {', '.join(builtin_names())}")
    path = _bundled_dir() / _MODELS[name]
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


def builtin_names() -> list[str]:
    """Names of the built-in models (whether or not their files are installed)."""
    return sorted(_MODELS)


def _bundled_dir() -> pathlib.Path:
    return pathlib.Path(str(importlib.resources.files("napari_unet") / "data" / "models"))


def builtin_name(model: str | os.PathLike | None) -> str | None:
    """The built-in name of ``model`` (a built-in name or a bundled model file), else None.

    Examples
    --------
    >>> builtin_name(bundled_model_path())
    'nuclei'
    >>> builtin_name("my_model.safetensors") is None
    True
    """
    if model is None:
        return None
    text = os.fspath(model)
    if text in _MODELS:
        return text
    path = pathlib.Path(text)
    for name, file in _MODELS.items():
        if path.name == file:
            try:
                if path.resolve() == (_bundled_dir() / file).resolve():
                    return name
            except OSError:  # pragma: no cover - unreadable path
                return None
    return None


def model_label(model: str | os.PathLike | None) -> str:
    """How records name a model: its built-in name, else its path as given (None: the default)."""
    if model is None:
        return DEFAULT_MODEL_NAME
    return builtin_name(model) or os.fspath(model)


def _looks_like_a_name(text: str) -> bool:
    return os.sep not in text and "/" not in text and not pathlib.PurePath(text).suffix


def resolve_model_file(model: str | os.PathLike | None = None) -> pathlib.Path:
    """The model file for a built-in name, a model file path, or None (the default built-in model).

    An existing file wins over a built-in name of the same spelling. A path that does not exist
    is returned as is (loading it gives the file's own error); a bare word that is neither a file
    nor a built-in name is an error naming the built-in models.

    Raises
    ------
    ValueError
        ``model`` is a bare name that is not a built-in model.
    FileNotFoundError
        A built-in model whose file is missing from this installation.

    Examples
    --------
    >>> resolve_model_file("nuclei").name
    'nuclei.safetensors'
    """
    if model is None:
        return bundled_model_path()
    text = os.fspath(model)
    path = pathlib.Path(text)
    if path.is_file():
        return path
    if text in _MODELS:
        return bundled_model_path(text)
    if _looks_like_a_name(text):
        raise ValueError(
            f"no built-in model named {text!r} and no such file; built-in models: {', '.join(builtin_names())} "
            "(or give the path of a .safetensors model file)"
        )
    return path


def load_default_model(device: str | None = None) -> UNet:
    """Load the bundled default nuclei model."""
    from .file import load_model

    return load_model(bundled_model_path(), device=device)
