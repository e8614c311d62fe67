"""How the console API and the panels read their inputs: a model given any way, an image given any way.

:func:`resolve_model` turns a UNet, a model file, a built-in name or None into a UNet (cached);
:func:`image_source` turns an array, an ``ImageFile`` or a napari Image layer into an
:class:`ImageSource` (array, axes, name, channel names). Plumbing, not public API: the public
functions in :mod:`napari_unet.api` and the panels in :mod:`napari_unet._napari` use them.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from .core.model.unet import UNet

log = logging.getLogger("napari_unet.api")


def resolve_model(model: Any) -> UNet:
    """A UNet from a UNet, a model file path, a built-in model name, or None (the built-in nuclei model)."""
    from .core.model.unet import UNet

    if isinstance(model, UNet):
        return model
    from .core.model.bundled import resolve_model_file
    from .core.model.cache import cached_model

    if isinstance(model, (str, os.PathLike)) or model is None:
        path = resolve_model_file(model)  # a bare unknown name: ValueError listing the built-in names
        if not path.is_file():
            from .core.model.file import load_model

            return load_model(path)  # its own clear error
        return cached_model(path)  # the same object for repeated calls: prepared (and compiled) once
    raise TypeError(f"model must be a UNet, a model file path or a built-in model name, got {type(model).__name__}")


@dataclass(frozen=True)
class ImageSource:
    """An image ready for the core: its array, axes and names (see :func:`image_source`).

    Attributes
    ----------
    image : array-like
        numpy, memory-mapped or dask array (level 0 of a multiscale layer).
    axes : str or None
        Its axes; None when they are left to the core to guess (with a warning).
    image_name : str
        How error messages name it: ``"image"``, ``"layer 'x'"`` or the file path.
    channel_names : list of str or None
        Names of its channels, for ``channels=`` given by name.
    origin : str
        Where ``axes`` came from (:data:`~napari_unet.core.image.axes.AXES_ORIGINS`).
    note : str
        Why recorded axes were ignored, if they were.
    scale : tuple of float or None
        Spacing per axis (an ImageFile's or a layer's), for the anisotropy of z-stacks.
    """

    image: Any
    axes: str | None
    image_name: str
    channel_names: list[str] | None
    origin: str
    note: str = ""
    scale: tuple[float, ...] | None = None

    def core_options(self) -> dict[str, Any]:
        """``axes``, ``channel_names`` and ``image_name`` for ``iter_predict``/``iter_segment``."""
        return {"axes": self.axes, "channel_names": self.channel_names, "image_name": self.image_name}

    def zstack_options(self, z_mode: str, anisotropy: float | None) -> dict[str, Any]:
        """``z_mode`` and ``anisotropy`` for ``iter_segment``: the anisotropy given, else the one the
        image's calibration (:attr:`scale`) says, else None."""
        from .core.image.calibration import anisotropy_from_scale

        if anisotropy is None and self.axes is not None:
            anisotropy = anisotropy_from_scale(self.axes, self.scale)
        return {"z_mode": z_mode, "anisotropy": anisotropy}


def _names(names: Any) -> list[str] | None:
    return [str(n) for n in names] if isinstance(names, (list, tuple)) else None


def image_source(image: Any, axes: str | None = None, *, guess: bool = False) -> ImageSource:
    """Array, axes, name and channel names from an array, an ImageFile or a napari Image layer.

    Axes are chosen with :func:`~napari_unet.core.image.axes.choose_axes`: ``axes`` when given, else
    those recorded with the image (``layer.metadata["axes"]``, set by napari-unet's reader, a
    layer's ``axis_labels`` when they are t/c/z/y/x letters, or the file's axes; ignored, with a
    ``note`` that predict and segment log, when they do not fit), else
    ``...YXS`` for an RGB layer, ``YX`` for 2D data, else guessed: here when ``guess`` is True
    (silently; ``origin`` says so), otherwise later by the core, with a warning.

    Parameters
    ----------
    image : array-like, napari Image layer (any object with ``data`` and ``name``), ImageFile or path
        The image; a path (TIFF, zarr / OME-Zarr) is read with ``read_image`` (level 0; read other
        levels with ``read_image(path, level=n)``). A multiscale layer gives its level 0, lazily.
    axes : str, optional
        Its axes; wins over anything recorded.
    guess : bool
        Guess axes from the shape here instead of leaving them to the core.

    Returns
    -------
    ImageSource

    Raises
    ------
    ValueError
        An axis of length 0, or ``axes`` that do not fit the data.
    """
    from .core.image.axes import choose_axes
    from .core.image.checks import check_not_empty
    from .core.image.io import ImageFile

    scale = None
    if isinstance(image, (str, os.PathLike)):  # a file or zarr store: read it (zarr stays lazy)
        from .core.image.io import read_image

        image = read_image(image)
    if isinstance(image, ImageFile):
        data, name, names, recorded, rgb = image.data, str(image.path), _names(image.channel_names), image.axes, False
        scale = tuple(image.scale)
    elif isinstance(image, np.ndarray) or not hasattr(image, "data") or not hasattr(image, "name"):
        data, name, names, recorded, rgb = image, "image", None, None, False
    else:
        meta = getattr(image, "metadata", None) or {}
        data = image.data[0] if getattr(image, "multiscale", False) else image.data
        name, names, recorded = f"layer {image.name!r}", _names(meta.get("channel_names")), meta.get("axes")
        recorded = recorded or _axes_from_labels(image, len(np.shape(data)))
        rgb = bool(getattr(image, "rgb", False))
        scale = _layer_scale(image, len(np.shape(data)))
    check_not_empty(np.shape(data), name)  # before the axes: an empty image is not an axes problem
    choice = choose_axes(np.shape(data), axes, recorded=recorded, rgb=rgb, guess=guess)
    return ImageSource(data, choice.axes, name, names, choice.origin, choice.note, scale)


def _axes_from_labels(layer: Any, ndim: int) -> str | None:
    """Axes from a layer's ``axis_labels`` when they are letters t/c/z/y/x (as OME-Zarr readers such
    as napari-ome-zarr set them), else None; napari's default labels (``"-2"``, ``"-1"``) are not axes."""
    labels = [str(a).strip().upper() for a in (getattr(layer, "axis_labels", None) or ())]
    if getattr(layer, "rgb", False):
        labels.append("S")
    if len(labels) != ndim or not all(len(a) == 1 and a in "TCZYXS" for a in labels):
        return None
    return "".join(labels)


def _layer_scale(layer: Any, ndim: int) -> tuple[float, ...] | None:
    """A layer's scale with one entry per axis of its data (RGB: the samples axis gets 1), or None."""
    try:
        scale = tuple(float(s) for s in layer.scale)
    except (AttributeError, TypeError, ValueError):
        return None
    if len(scale) == ndim - 1 and getattr(layer, "rgb", False):
        scale = (*scale, 1.0)
    return scale if len(scale) == ndim else None


def console_source(image: Any, axes: str | None) -> ImageSource:
    """:func:`image_source` for ``predict``/``segment``: ignored metadata axes are logged."""
    src = image_source(image, axes)
    if src.note:
        log.warning("%s: %s", src.image_name, src.note)
    return src
