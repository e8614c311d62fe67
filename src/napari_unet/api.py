"""What a person types in napari's console or a script.

>>> from napari_unet import segment, load_model
>>> labels = segment(image, model="my_model.safetensors", axes="ZCYX", channels=["DAPI"])
>>> model = train("images/", "masks/", output="my_model.safetensors", epochs=20)
>>> scores = evaluate(model, "test_images/", "test_masks/")

A model is a UNet, a model file path, or a built-in model by name (``"nuclei"``, the default).

Every function takes numpy arrays, memory-mapped and dask arrays, napari Image layers
(their data, name, axes and channel names are used) and images from ``read_image``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from .core.model.unet import UNet
    from .core.progress import Progress

log = logging.getLogger(__name__)

__all__ = ["ImageSource", "estimate_object_size", "evaluate", "image_source", "load_model", "predict",
           "resolve_model", "save_model", "segment", "train"]



def load_model(path: str | os.PathLike, *, device: str | int | None = None) -> UNet:
    """Load a napari-unet model file (safetensors weights + JSON config; never executes code).

    ``path`` may also name a built-in model (``"nuclei"``).

    The file is checked before any network is built (architecture limits, tensor shapes,
    NaN/infinite weights: :class:`~napari_unet.core.model.file.ModelFileError`), and ``device``
    like ``segment``'s (ValueError naming ``device``).
    """
    from .core.model.bundled import resolve_model_file
    from .core.model.file import load_model as _load

    return _load(resolve_model_file(path), device=device)


def save_model(model: UNet, path: str | os.PathLike, **spec_updates: Any) -> Any:
    """Save ``model`` as one self-describing model file (written atomically)."""
    from .core.model.file import save_model as _save

    return _save(model, path, **spec_updates)


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
    """

    image: Any
    axes: str | None
    image_name: str
    channel_names: list[str] | None
    origin: str
    note: str = ""

    def core_options(self) -> dict[str, Any]:
        """``axes``, ``channel_names`` and ``image_name`` for ``iter_predict``/``iter_segment``."""
        return {"axes": self.axes, "channel_names": self.channel_names, "image_name": self.image_name}


def _names(names: Any) -> list[str] | None:
    return [str(n) for n in names] if isinstance(names, (list, tuple)) else None


def image_source(image: Any, axes: str | None = None, *, guess: bool = False) -> ImageSource:
    """Array, axes, name and channel names from an array, an ImageFile or a napari Image layer.

    Axes are chosen with :func:`~napari_unet.core.image.axes.choose_axes`: ``axes`` when given, else
    those recorded with the image (``layer.metadata["axes"]``, set by napari-unet's reader, or
    the file's axes; ignored, with a ``note`` that predict and segment log, when they do not fit), else
    ``...YXS`` for an RGB layer, ``YX`` for 2D data, else guessed: here when ``guess`` is True
    (silently; ``origin`` says so), otherwise later by the core, with a warning.

    Parameters
    ----------
    image : array-like, napari Image layer (any object with ``data`` and ``name``) or ImageFile
        The image.
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

    if isinstance(image, ImageFile):
        data, name, names, recorded, rgb = image.data, str(image.path), _names(image.channel_names), image.axes, False
    elif isinstance(image, np.ndarray) or not hasattr(image, "data") or not hasattr(image, "name"):
        data, name, names, recorded, rgb = image, "image", None, None, False
    else:
        meta = getattr(image, "metadata", None) or {}
        data = image.data[0] if getattr(image, "multiscale", False) else image.data
        name, names, recorded = f"layer {image.name!r}", _names(meta.get("channel_names")), meta.get("axes")
        rgb = bool(getattr(image, "rgb", False))
    check_not_empty(np.shape(data), name)  # before the axes: an empty image is not an axes problem
    choice = choose_axes(np.shape(data), axes, recorded=recorded, rgb=rgb, guess=guess)
    return ImageSource(data, choice.axes, name, names, choice.origin, choice.note)


def _console_source(image: Any, axes: str | None) -> ImageSource:
    """:func:`image_source` for ``predict``/``segment``: ignored metadata axes are logged."""
    src = image_source(image, axes)
    if src.note:
        log.warning("%s: %s", src.image_name, src.note)
    return src


def _run(gen: Any, progress: Callable[[Progress], Any] | bool | None) -> Any:
    from .core.progress import drain

    if progress is True:
        from .core.progress import TextProgress

        progress = TextProgress()
    bar = progress if callable(progress) else None

    def relay(event: Any) -> None:
        if getattr(event, "stage", None) == "size" and getattr(event, "value", None) is not None:
            log.info("%s", event.message)
        if bar is not None:
            bar(event)

    return drain(gen, relay)


def estimate_object_size(
    image: Any,
    model: Any = None,
    *,
    axes: str | None = None,
    channels: int | str | Sequence[int | str] | None = None,
) -> float:
    """The typical object diameter (pixels) the model finds in ``image``.

    This is what ``segment`` and ``predict`` do when ``object_size`` is not given: the image is
    then zoomed so its objects have the size the model was trained on. Read from the central
    part of the middle plane (or frame).

    Parameters
    ----------
    image : array-like, napari Image layer or ImageFile (from ``read_image``)
    model : UNet or path
        The network, a model file, or a built-in model by name; None (default): ``"nuclei"``.
    axes, channels
        As for :func:`segment`.

    Returns
    -------
    float
        Diameter in the image's pixels.

    Raises
    ------
    ValueError
        If the model cannot estimate object sizes (3D models, or models trained without
        ``object_size``).
    """
    from .core.inference.planning import plan_for
    from .core.inference.sizing import can_estimate_size, iter_object_size
    from .core.options import check_inference_options
    from .core.progress import drain

    check_inference_options(axes=axes, channels=channels)
    src = _console_source(image, axes)
    net = resolve_model(model)
    if not can_estimate_size(net):
        raise ValueError(
            "this model cannot estimate object sizes (it was not trained on images zoomed to one object "
            "size, or it is a 3D model); give object_size= instead"
        )
    options = src.core_options()
    layout = plan_for(src.image, net, axes=options.get("axes"), channels=channels,
                      channel_names=options.get("channel_names"), image_name=options.get("image_name", "image"))
    return float(drain(iter_object_size(src.image, net, layout)))


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
    compile: bool | str = "auto",
    tta: bool = False,
) -> np.ndarray:
    """Class probabilities for ``image``.

    Parameters
    ----------
    image : array-like, napari Image layer or ImageFile (from ``read_image``)
    model : UNet or path
        The network, a model file, or a built-in model by name; None (default): ``"nuclei"``.
    axes : str, optional
        The image's axes, e.g. ``"TZCYX"``; taken from the layer or guessed (with a warning).
    channels : int, str or list, optional
        Channels to feed the model, by index or name.
    tile_size, halo, batch_size : int, optional
        Tiling; automatic by default.
    device : str or int
        ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"`` (or ``1``, torch's spelling), ``"mps"``.
    precision : str
        ``"auto"`` (bf16/fp16 autocast on CUDA, bf16 on CPUs with native bf16), ``"float32"``,
        ``"bfloat16"``, ``"float16"``.
    object_size : float, optional
        Typical object diameter in this image, in pixels: the image is zoomed so its objects
        match the size the model was trained on (like cellpose's diameter). Not given: the
        model estimates it (see :func:`estimate_object_size`; logged at INFO level and shown
        in the progress events) and zooms only when it is outside the sizes it was trained on.
    progress : callable or bool
        Called with each progress event; ``True`` prints a text bar to stderr.
    compile : bool or "auto"
        Run the network through ``torch.compile`` (tens of seconds once per model and tile shape,
        then faster, kept for later calls in this process). ``"auto"``: only on CUDA for very
        large jobs or when this model was compiled before.
    tta : bool
        Test-time augmentation: also run every tile flipped and rotated by quarter turns in its
        YX plane (8 views), turn each output back and average the probabilities. About 8 times
        slower; usually slightly better, smoother results (worth it for final results and for
        measuring, not for trying settings).

    Returns
    -------
    numpy.ndarray
        float32, shape ``(n_classes, *image shape without its channel axis)``.
    """
    from .core.inference.run import iter_predict
    from .core.options import check_inference_options

    # every option checked before the model loads: one ValueError naming the parameter
    check_inference_options(axes=axes, channels=channels, tile_size=tile_size, halo=halo, batch_size=batch_size,
                            device=device, precision=precision, object_size=object_size, progress=progress,
                            compile=compile, tta=tta)
    src = _console_source(image, axes)
    net = resolve_model(model)
    gen = iter_predict(
        src.image, net, channels=channels, tile_size=tile_size, halo=halo, batch_size=batch_size,
        device=device, precision=precision, object_size=object_size, compile=compile, tta=tta,
        **src.core_options(),
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
    compile: bool | str = "auto",
    tta: bool = False,
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
    from .core.options import check_inference_options
    from .core.segment import iter_segment

    check_inference_options(axes=axes, channels=channels, mode=mode, min_size=min_size, tile_size=tile_size,
                            halo=halo, batch_size=batch_size, device=device, precision=precision,
                            object_size=object_size, progress=progress, compile=compile, tta=tta)
    src = _console_source(image, axes)
    net = resolve_model(model)
    gen = iter_segment(
        src.image, net, mode=mode, min_size=min_size, channels=channels, tile_size=tile_size, halo=halo,
        batch_size=batch_size, device=device, precision=precision, object_size=object_size,
        compile=compile, tta=tta, **src.core_options(),
    )
    return _run(gen, progress)



from ._api_training import evaluate, train  # noqa: E402 - training and evaluation, at home beside the rest
