"""What a person types in napari's console or a script.

>>> from napari_unet import segment, load_model
>>> labels = segment(image, model="nuclei.safetensors", axes="ZCYX", channels=["DAPI"])

Every function takes numpy arrays, memory-mapped and dask arrays, napari Image layers
(their data, name, axes and channel names are used) and images from ``read_image``.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

if TYPE_CHECKING:
    from .core.inference import Progress
    from .core.model import UNet

log = logging.getLogger(__name__)



def load_model(path: str | os.PathLike, *, device: str | None = None) -> UNet:
    """Load a napari-unet model file (safetensors weights + JSON config; never executes code)."""
    from .core.modelfile import load_model as _load

    return _load(path, device=device)


def save_model(model: UNet, path: str | os.PathLike, **spec_updates: Any) -> Any:
    """Save ``model`` as one self-describing model file (written atomically)."""
    from .core.modelfile import save_model as _save

    return _save(model, path, **spec_updates)


def resolve_model(model: Any) -> UNet:
    """A UNet from a UNet or a model file path."""
    from .core.model import UNet

    if isinstance(model, UNet):
        return model
    if isinstance(model, (str, os.PathLike)):
        return load_model(model)
    if model is None:
        raise TypeError("no model given: pass model= a UNet or the path of a model file")
    raise TypeError(f"model must be a UNet or a model file path, got {type(model).__name__}")


def image_source(image: Any, axes: str | None = None) -> dict[str, Any]:
    """Array, axes, name and channel names from an array or a napari Image layer.

    A layer's axes come from ``layer.metadata["axes"]`` (set by napari-unet's reader) or,
    for an RGB layer, ``...YXS``; otherwise they are guessed later, with a warning.
    An :class:`~napari_unet.core.io.ImageFile` from ``read_image`` brings its axes and
    channel names.
    """
    from .core.io import ImageFile

    if isinstance(image, ImageFile):
        return {"image": image.data, "axes": axes or image.axes, "image_name": str(image.path),
                "channel_names": image.channel_names}
    if isinstance(image, np.ndarray) or not hasattr(image, "data") or not hasattr(image, "name"):
        return {"image": image, "axes": axes, "image_name": "image", "channel_names": None}
    meta = getattr(image, "metadata", None) or {}
    data = image.data
    if getattr(image, "multiscale", False):
        data = data[0]
    layer_axes = axes or meta.get("axes")
    if layer_axes is None and getattr(image, "rgb", False):
        layer_axes = "YXS" if data.ndim == 3 else "TYXS"[-data.ndim:] if data.ndim <= 4 else None
    return {
        "image": data,
        "axes": layer_axes,
        "image_name": f"layer {image.name!r}",
        "channel_names": meta.get("channel_names"),
    }


def _run(gen: Any, progress: Callable[[Progress], Any] | bool | None) -> Any:
    if progress is True:
        from .core.progressbar import TextProgress

        progress = TextProgress()
    while True:
        try:
            event = next(gen)
        except StopIteration as stop:
            return stop.value
        if callable(progress):
            progress(event)


def predict(
    image: Any,
    model: Any = None,
    *,
    axes: str | None = None,
    channels: int | str | Sequence[int | str] | None = None,
    tile_size: int | None = None,
    halo: int | None = None,
    batch_size: int | None = None,
    device: str = "auto",
    precision: str = "auto",
    object_size: float | None = None,
    progress: Callable[[Progress], Any] | bool | None = None,
) -> np.ndarray:
    """Class probabilities for ``image``.

    Parameters
    ----------
    image : array-like, napari Image layer or ImageFile (from ``read_image``)
    model : UNet or path
        The network, or a model file.
    axes : str, optional
        The image's axes, e.g. ``"TZCYX"``; taken from the layer or guessed (with a warning).
    channels : int, str or list, optional
        Channels to feed the model, by index or name.
    tile_size, halo, batch_size : int, optional
        Tiling; automatic by default.
    device : str
        ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``.
    precision : str
        ``"auto"`` (bf16/fp16 autocast on CUDA), ``"float32"``, ``"bfloat16"``, ``"float16"``.
    object_size : float, optional
        Typical object diameter in this image, in pixels: the image is zoomed so its objects
        match the size the model was trained on (like cellpose's diameter).
    progress : callable or bool
        Called with each progress event; ``True`` prints a text bar to stderr.

    Returns
    -------
    numpy.ndarray
        float32, shape ``(n_classes, *image shape without its channel axis)``.
    """
    from .core.inference import iter_predict

    src = image_source(image, axes)
    net = resolve_model(model)
    gen = iter_predict(
        src["image"], net, axes=src["axes"], channels=channels, channel_names=src["channel_names"],
        tile_size=tile_size, halo=halo, batch_size=batch_size, device=device, precision=precision,
        image_name=src["image_name"], object_size=object_size,
    )
    return _run(gen, progress)


def segment(
    image: Any,
    model: Any = None,
    *,
    axes: str | None = None,
    channels: int | str | Sequence[int | str] | None = None,
    mode: str = "instances",
    min_size: int = 0,
    tile_size: int | None = None,
    halo: int | None = None,
    batch_size: int | None = None,
    device: str = "auto",
    precision: str = "auto",
    object_size: float | None = None,
    progress: Callable[[Progress], Any] | bool | None = None,
) -> np.ndarray:
    """Labels for ``image``: instances (one id per object) or semantic classes.

    Parameters are those of :func:`predict`, plus

    mode : {"instances", "semantic"}
    min_size : int
        Objects smaller than this many pixels are dropped.

    Returns
    -------
    numpy.ndarray
        Instance labels as uint16 (uint32 beyond 65535 objects), or class indices as uint8 for
        ``mode="semantic"``; the image's shape without its channel axis, in the image's axis
        order — ready for ``viewer.add_labels``.
    """
    from .core.segment import iter_segment

    src = image_source(image, axes)
    net = resolve_model(model)
    gen = iter_segment(
        src["image"], net, mode=mode, min_size=min_size, axes=src["axes"], channels=channels,
        channel_names=src["channel_names"], tile_size=tile_size, halo=halo, batch_size=batch_size,
        device=device, precision=precision, image_name=src["image_name"], object_size=object_size,
    )
    return _run(gen, progress)
