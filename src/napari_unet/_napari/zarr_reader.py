"""napari reader for zarr and OME-Zarr (NGFF 0.4/0.5): a lazy, multiscale Image layer.

``napari_get_zarr_reader`` (npe2 command ``napari-unet.get_zarr_reader``) accepts one ``.zarr`` folder
(or a folder with zarr metadata) that :func:`napari_unet.core.image.zarr_read.read_zarr` can read and
returns :func:`read_zarr_layers`; for anything else (or without the ``zarr`` extra) it returns None
with the reason logged, and never raises.

The layers are those of the TIFF reader (:func:`~napari_unet._napari.reader.image_file_to_layer_data`:
``metadata["axes"]``, ``metadata["channel_names"]``, scale, units, one layer per channel), with
dask arrays as data: every resolution level of an OME-Zarr image as napari's multiscale list, so
napari reads only the chunks it shows; contrast limits come from the smallest level.
"""

from __future__ import annotations

import logging
import os
import pathlib
from collections.abc import Sequence
from typing import Any

from napari_unet.core.image.io import ImageReadError
from napari_unet.core.image.zarr_read import MissingExtraError, is_zarr_path, read_zarr

from .reader import LayerData, ReaderFunction, image_file_to_layer_data

__all__ = ["napari_get_zarr_reader", "read_zarr_layers"]

logger = logging.getLogger(__name__)


def napari_get_zarr_reader(path: Any) -> ReaderFunction | None:
    """Return :func:`read_zarr_layers` if ``path`` is one zarr store napari-unet can read, else None.

    Reads the store's metadata only (no pixels). Never raises.

    Parameters
    ----------
    path : str, os.PathLike or a sequence holding one of them
        What napari asks about.

    Returns
    -------
    callable or None
        :func:`read_zarr_layers`, or None for other paths, several paths, folders that are not
        zarr stores, stores without an image, and when zarr/dask are not installed.
    """
    try:
        if isinstance(path, (list, tuple)):
            if len(path) != 1:
                logger.debug("napari-unet reads one zarr store at a time, not %d paths", len(path))
                return None
            path = path[0]
        if not isinstance(path, (str, os.PathLike)):
            return None
        store = pathlib.Path(path)
        if not is_zarr_path(store) or not store.is_dir():
            logger.debug("napari-unet: %s is not a zarr folder", store)
            return None
        read_zarr(store, pixels=False)
    except (MissingExtraError, ImageReadError, OSError, ValueError) as exc:
        logger.warning("napari-unet cannot read %s: %s", path, exc)
        return None
    except Exception as exc:  # the reader contract: never raise, say why
        logger.warning("napari-unet cannot read %r: %s: %s", path, type(exc).__name__, exc)
        return None
    return read_zarr_layers


def read_zarr_layers(path: str | os.PathLike | Sequence[str | os.PathLike]) -> list[LayerData]:
    """Read a zarr / OME-Zarr store into napari layer data, lazily.

    Parameters
    ----------
    path : str, os.PathLike or a sequence holding one of them
        The ``.zarr`` folder.

    Returns
    -------
    list of LayerData
        ``[(data, kwargs, "image")]``: ``data`` a dask array, or for several resolution levels the
        list of them (``kwargs["multiscale"]`` True); ``kwargs`` as for TIFFs (``channel_axis``
        when the image has several channels) with ``metadata["level"]`` and ``["levels"]``.
    """
    if isinstance(path, (list, tuple)):
        if len(path) != 1:
            raise ValueError(f"napari-unet reads one zarr store at a time, got {len(path)} paths")
        path = path[0]
    image = read_zarr(path)
    n_levels = len(image.metadata.get("levels", [()]))
    levels = [image.data] + [read_zarr(image.path, level=i).data for i in range(1, n_levels)]
    layers = image_file_to_layer_data(image, levels=levels)
    extra = {"level": image.metadata["level"], "levels": image.metadata["levels"], "kind": image.metadata["kind"]}
    for _data, kwargs, _kind in layers:
        metas = kwargs["metadata"] if isinstance(kwargs["metadata"], list) else [kwargs["metadata"]]
        for meta in metas:
            meta.update(extra)
    return layers
