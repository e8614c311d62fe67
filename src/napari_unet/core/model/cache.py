"""Model files loaded once per file version, shared by every caller in the process.

``segment(image, "cells.safetensors")`` called in a loop, the Segment panel's runs and its
background warm-up all get the same :class:`~napari_unet.core.model.unet.UNet` object for the same
file (path, modification time and size), so its inference copy (BatchNorm folded, possibly
compiled: :mod:`~napari_unet.core.inference.fastnet`) is prepared once. One entry is kept; a changed file
is loaded again. Thread-safe: a second caller waits for a load in progress.
"""

from __future__ import annotations

import os
import threading
from typing import Any

_lock = threading.RLock()
_cached: dict[tuple[str, float, int], Any] = {}


def file_key(path: str | os.PathLike) -> tuple[str, float, int]:
    st = os.stat(path)
    return (os.path.abspath(path), st.st_mtime, st.st_size)


def cached_model(path: str | os.PathLike) -> Any:
    """The model in ``path`` (see :func:`~napari_unet.core.model.file.load_model`), loaded once
    per file version."""
    from .file import load_model

    key = file_key(path)
    with _lock:
        model = _cached.get(key)
        if model is None:
            model = load_model(path)
            _cached.clear()
            _cached[key] = model
        return model


def is_cached(path: str | os.PathLike) -> bool:
    try:
        return file_key(path) in _cached
    except OSError:
        return False
