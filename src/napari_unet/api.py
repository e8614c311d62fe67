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
from typing import TYPE_CHECKING, Any

import numpy as np

from ._sources import console_source, resolve_model

if TYPE_CHECKING:
    from .core.model.unet import UNet
    from .core.progress import Progress


log = logging.getLogger(__name__)

__all__ = ["estimate_object_size", "evaluate", "export", "load_model", "predict", "save_model", "segment", "train"]


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


def export(
    model: Any = None,
    *,
    format: str,
    output: str | os.PathLike,
    overwrite: bool = False,
    name: str | None = None,
    authors: list[str] | None = None,
    license: str | None = None,
) -> Any:
    """Write a model for other programs: ``format="bioimageio"`` (a .zip package for deepImageJ, ilastik,
    QuPath and the BioImage Model Zoo), ``"torchscript"`` (.pt) or ``"onnx"`` (.onnx); see docs/export.md.

    ``model`` is a UNet, a model file or a built-in name (None: ``"nuclei"``). The exported networks
    output probabilities. Returns the path written (atomically; an existing file only with ``overwrite``).
    ``name``, ``authors`` and ``license`` (an SPDX id) describe a bioimage.io package.
    """
    from .core.export.run import export_model

    return export_model(
        "nuclei" if model is None else model,
        format=format,
        output=output,
        overwrite=overwrite,
        name=name,
        authors=authors,
        license=license,
    )


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
    image: Any, model: Any = None, *, axes: str | None = None, channels: int | str | Sequence[int | str] | None = None
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
    src = console_source(image, axes)
    net = resolve_model(model)
    if not can_estimate_size(net):
        raise ValueError(
            "this model cannot estimate object sizes (it was not trained on images zoomed to one object "
            "size, or it is a 3D model); give object_size= instead"
        )
    options = src.core_options()
    layout = plan_for(
        src.image,
        net,
        axes=options.get("axes"),
        channels=channels,
        channel_names=options.get("channel_names"),
        image_name=options.get("image_name", "image"),
    )
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
    check_inference_options(
        axes=axes,
        channels=channels,
        tile_size=tile_size,
        halo=halo,
        batch_size=batch_size,
        device=device,
        precision=precision,
        object_size=object_size,
        progress=progress,
        compile=compile,
        tta=tta,
    )
    src = console_source(image, axes)
    net = resolve_model(model)
    gen = iter_predict(
        src.image,
        net,
        channels=channels,
        tile_size=tile_size,
        halo=halo,
        batch_size=batch_size,
        device=device,
        precision=precision,
        object_size=object_size,
        compile=compile,
        tta=tta,
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
    track: bool = True,
    z_mode: str = "3d",
    anisotropy: float | None = None,
) -> np.ndarray:
    """Labels for ``image``: instances (one id per object) or semantic classes.

    Parameters are those of :func:`predict`, plus

    mode : {"instances", "semantic"}
    min_size : int
        Objects smaller than this many pixels (voxels for 3D objects) are dropped.
    track : bool
        Time-lapses (a ``T`` axis), instances: the same object keeps the same id in every frame
        (overlap matching, an object may be missing for up to 2 frames; see
        :func:`napari_unet.track_labels` for other settings and
        :func:`napari_unet.tracks_from_labels` for napari Tracks data). False: the objects of
        each frame get their own ids. No effect on images without a ``T`` axis.
    z_mode : {"3d", "stitch", "planes", "3d-ortho"}
        Z-stacks segmented by a 2D model (instances): ``"3d"`` 3D objects from a 3D watershed of
        the planes' predictions; ``"stitch"`` the planes' 2D objects linked along Z by overlap;
        ``"planes"`` independent 2D labels per plane; ``"3d-ortho"`` also predicts on the XZ and YZ
        planes (slower, needs the anisotropy). See docs/stacks.md.
    anisotropy : float, optional
        Z spacing / XY spacing of a z-stack; default: from the image's calibration (an
        ``ImageFile``'s or a layer's ``scale``). Only ``"3d-ortho"`` uses it (it warns when unknown).

    Returns
    -------
    numpy.ndarray
        Instance labels as uint16 (uint32 beyond 65535 objects), or class indices as uint8 for
        ``mode="semantic"``; the image's shape without its channel axis, in the image's axis
        order — ready for ``viewer.add_labels``.
    """
    from .core.options import check_inference_options
    from .core.segment import iter_segment

    check_inference_options(
        axes=axes,
        channels=channels,
        mode=mode,
        min_size=min_size,
        tile_size=tile_size,
        halo=halo,
        batch_size=batch_size,
        device=device,
        precision=precision,
        object_size=object_size,
        progress=progress,
        compile=compile,
        tta=tta,
        track=track,
        z_mode=z_mode,
        anisotropy=anisotropy,
    )
    src = console_source(image, axes)
    net = resolve_model(model)
    zstack = src.zstack_options(z_mode, anisotropy)  # z-stacks with a 2D model (core/labels/zstack.py)
    gen = iter_segment(
        src.image,
        net,
        mode=mode,
        min_size=min_size,
        channels=channels,
        tile_size=tile_size,
        halo=halo,
        batch_size=batch_size,
        device=device,
        precision=precision,
        object_size=object_size,
        compile=compile,
        tta=tta,
        track=track,
        **zstack,
        **src.core_options(),
    )
    return _run(gen, progress)


from ._api_training import evaluate, train  # noqa: E402 - training and evaluation, at home beside the rest
