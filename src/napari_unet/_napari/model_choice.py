"""Which model files the panel offers, and what it says about them, without importing torch.

The Model box lists the built-in models, then this session's and the recently used model files
(:mod:`~napari_unet._napari.settings`). A model file is described from its JSON header with
:func:`~napari_unet.core.model.file.read_model_info`; :class:`ModelInfoCache` reads each file
once per modification.
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Iterable
from typing import Any

from ..core.model.file import read_model_info
from . import settings

__all__ = ["ModelInfoCache", "builtin_models", "model_choices"]


def builtin_models() -> list[tuple[str, str]]:
    """Models shipped with napari-unet, listed first in the Model box.

    Returns
    -------
    list of (str, str)
        ``(label, path)`` pairs, e.g. ``("nuclei (built-in)", ".../data/models/nuclei.safetensors")``.
    """
    from ..core.model.bundled import bundled_models

    return [(f"{name} (built-in)", str(path)) for name, path in bundled_models().items()]


def model_choices(session_models: Iterable[str] = ()) -> list[tuple[str, str]]:
    """The Model box's entries: built-in models, then ``session_models``, then recent files.

    Parameters
    ----------
    session_models : iterable of str
        Files chosen in this session, most recent first.

    Returns
    -------
    list of (str, str)
        ``(label, path)``; labels are file names, with the folder name added where two files
        share a name. Missing files and repeats are left out.
    """
    entries: list[tuple[str, str]] = []
    seen: set[str] = set()
    for label, path in builtin_models():
        entries.append((label, os.fspath(path)))
        seen.add(os.fspath(path))
    for path in [*session_models, *map(os.fspath, settings.recent_models())]:
        if path in seen or not os.path.isfile(path):
            continue
        seen.add(path)
        entries.append((pathlib.Path(path).name, path))
    names = [label for label, _ in entries]
    return [
        (f"{label} ({pathlib.Path(path).parent.name})" if names.count(label) > 1 else label, path)
        for label, path in entries
    ]


class ModelInfoCache:
    """:func:`~napari_unet.core.model.file.read_model_info`, read again only when a file changes.

    The panel describes the selected model on every layer or option change; this keeps that
    to one header read per file modification. Errors are cached (and raised again) too.
    """

    def __init__(self) -> None:
        self._cache: dict[str, tuple[float, dict[str, Any] | Exception]] = {}

    def __call__(self, path: str) -> dict[str, Any]:
        """``read_model_info(path)``, cached by modification time.

        Raises
        ------
        FileNotFoundError, napari_unet.core.model.file.ModelFileError
            As ``read_model_info`` does.
        """
        try:
            mtime = os.stat(path).st_mtime
        except OSError:
            mtime = -1.0
        cached = self._cache.get(path)
        if cached is None or cached[0] != mtime:
            try:
                value: dict[str, Any] | Exception = read_model_info(path)
            except (ValueError, OSError) as exc:
                value = exc
            cached = (mtime, value)
            self._cache[path] = cached
        if isinstance(cached[1], Exception):
            raise cached[1]
        return cached[1]
