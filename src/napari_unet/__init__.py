"""napari-unet: segment microscopy images with a U-Net, in napari, a script or a shell.

The public API is re-exported lazily: ``import napari_unet`` imports neither torch nor Qt.
Heavy modules load on first use of ``segment``, ``predict``, ``train``, ``evaluate``,
``load_model``, ``save_model``, ``export``, ``read_image`` or ``UNet``.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from ._version import __version__

_LAZY = {
    "segment": "napari_unet.api",
    "segment_blocks": "napari_unet._api_blocks",
    "predict": "napari_unet.api",
    "estimate_object_size": "napari_unet.api",
    "load_model": "napari_unet.api",
    "save_model": "napari_unet.api",
    "train": "napari_unet.api",
    "evaluate": "napari_unet.api",
    "export": "napari_unet.api",
    "UNet": "napari_unet.core.model.unet",
    "read_image": "napari_unet.core.image.io",
    "track_labels": "napari_unet.core.labels.tracking",
    "tracks_from_labels": "napari_unet.core.labels.tracking",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'napari_unet' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
