"""Tiled, batched, seam-free inference: the stages of :mod:`napari_unet.core.inference` in order.

:func:`iter_predict` is a generator: it yields :class:`~napari_unet.core.progress.Progress` events and finally returns
the class probabilities (``return`` value of the generator, i.e. ``StopIteration.value``).
:func:`predict` runs it to the end. Data flow: image → axes layout → one global per-channel
normalisation → tiles (batched) → network → softmax → blended into the output. Planning (layout,
precision, tile and batch sizes) is in :mod:`.planning`, the object-size estimate in :mod:`.sizing`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Generator, Sequence
from typing import Any

import numpy as np
import torch

from ..image.rescale import zoom_back, zoom_factor, zoom_image, zoom_ranges
from ..model.unet import UNet
from ..options import check_inference_options
from ..progress import Progress, drain
from .engine import FeatureSink, ProbabilitySink
from .features import check_classes
from .planning import check_tta, plan_for
from .runner import iter_tiled
from .sizing import auto_zoom_size, can_estimate_size, iter_object_size

log = logging.getLogger(__name__)


def iter_predict(
    image: Any,
    model: UNet,
    *,
    axes: str | None = None,
    channels: int | str | Sequence[int | str] | None = None,
    channel_names: Sequence[str] | None = None,
    tile_size: int | Sequence[int] | None = None,
    halo: int | Sequence[int] | None = None,
    batch_size: int | None = None,
    device: str | torch.device | None = "auto",
    precision: str = "auto",
    percentiles: tuple[float, float] | None = None,
    image_name: str = "image",
    layout_order: bool = False,
    normalized: bool = False,
    object_size: float | None = None,
    compile: bool | str = "auto",
    heads: bool = False,
    tta: bool = False,
    estimate_size: bool = True,
) -> Generator[Progress, None, np.ndarray]:
    """Predict class probabilities for ``image`` tile by tile, yielding progress.

    Parameters
    ----------
    image : array-like
        numpy, memory-mapped or dask array with axes ``axes``.
    model : UNet
        The network; it is put in eval mode and moved to ``device`` (its training flag is
        restored afterwards).
    axes : str, optional
        E.g. ``"TZCYX"``, ``"YXS"``. Guessed from the shape, with an
        :class:`~napari_unet.core.image.axes.AxesGuessWarning`, when omitted.
    channels : int, str or sequence, optional
        Channels fed to the network, by index or name (see :func:`~napari_unet.core.image.layout.plan_layout`).
    channel_names : sequence of str, optional
        The image's channel names, for ``channels`` given by name.
    tile_size, halo : int or sequence of int, optional
        Tile edge and context per side in pixels; chosen from the device's free memory and
        the network's receptive field when omitted (see :class:`~napari_unet.core.inference.tiling.TileGrid`).
    batch_size : int, optional
        Tiles per forward pass; chosen from free memory when omitted.
    device : str or torch.device
        ``"auto"`` (CUDA, then MPS, then CPU), ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``.
    precision : {"auto", "float32", "bfloat16", "float16"}
        ``"auto"`` uses bfloat16 (or float16) autocast on CUDA, bfloat16 autocast on CPUs with
        native bf16 (AVX-512 BF16, AMX; float32 models only) and the model's dtype elsewhere.
    percentiles : (float, float), optional
        Normalisation percentiles; the model's own by default.
    image_name : str
        Used in error messages.
    normalized : bool
        The image is already normalised (training validation): skip the percentiles.
    object_size : float, optional
        Typical object diameter in this image (pixels). The image is zoomed so its objects
        match the size the model was trained on (``model.spec.object_size``) and the result
        zoomed back; see :mod:`~napari_unet.core.image.rescale`. None: estimated by the model when
        it has a size model (:func:`iter_object_size`; zoomed only when the estimate is outside
        the sizes it was trained on), else no zoom.
    estimate_size : bool
        False: never estimate the object size (no zoom unless ``object_size`` is given).
    layout_order : bool
        Return the probabilities in the internal order (classes, *loop axes, *spatial axes)
        instead of the input's order (used by ``segment``).
    compile : bool or "auto"
        Run the network through ``torch.compile`` (compiled once per model and tile shape,
        kept for later calls; falls back to eager when compiling fails). ``"auto"``: on CUDA,
        for jobs of at least :data:`COMPILE_WORTH_PIXELS` tile pixels or when a compiled copy
        of this model is already cached.
    heads : bool
        Also return the model's head outputs (e.g. the normalised distance), as channels after
        the classes.
    tta : bool
        Test-time augmentation: every tile also goes through the network flipped and rotated
        by quarter turns in its YX plane (the 8 symmetries of the square; 3D models: in each
        Z stack's YX plane only), each output is turned back, and the probabilities (classes
        and heads) are averaged. About 8 times the network time; smoother, slightly more
        accurate probabilities.

    Yields
    ------
    Progress

    Returns
    -------
    numpy.ndarray
        float32 probabilities (float64 for a float64 model) of shape
        ``(n_classes, *input shape without the channel axis)``: softmax over classes, or the
        sigmoid foreground probability for a 1-class model.
    """
    o = check_inference_options(
        tile_size=tile_size,
        halo=halo,
        batch_size=batch_size,
        device=device,
        precision=precision,
        object_size=object_size,
        compile=compile,
        tta=tta,
    )
    tile_size, halo, batch_size, device = o["tile_size"], o["halo"], o["batch_size"], o["device"]
    object_size, compile, tta = o["object_size"], o["compile"], o["tta"]
    layout = plan_for(image, model, axes=axes, channels=channels, channel_names=channel_names, image_name=image_name)
    if object_size is None and estimate_size and can_estimate_size(model):
        size = yield from iter_object_size(image, model, layout, percentiles=percentiles, normalized=normalized)
        object_size = auto_zoom_size(size, model)
    factor = zoom_factor(model.spec.object_size, object_size)
    if abs(factor - 1.0) > 0.02:
        yield Progress(0, 1, "rescale", f"zooming the image by {factor:.3g} to the model's object size")
        view = layout.arrange(image)
        ranges = {} if normalized else zoom_ranges(view, layout, percentiles or model.spec.percentiles, image_name)
        zoomed = zoom_image(view, layout, factor, **ranges)
        c_letter = layout.channel_axis or "C"
        probs = yield from iter_predict(
            zoomed,
            model,
            axes=layout.loop_axes + c_letter + layout.spatial_axes,
            channels=list(layout.channels) if layout.channel_axis and not layout.to_gray else None,
            tile_size=tile_size,
            halo=halo,
            batch_size=batch_size,
            device=device,
            precision=precision,
            percentiles=percentiles,
            image_name=image_name,
            layout_order=True,
            normalized=normalized,
            compile=compile,
            heads=heads,
            tta=tta,
            estimate_size=False,
        )
        probs = zoom_back(probs, model.ndim, layout.spatial_shape)
        return probs if layout_order else layout.to_output_order(probs, lead=1)
    out_dtype = np.float64 if next(model.parameters()).dtype == torch.float64 else np.float32
    probs = yield from iter_tiled(
        image,
        model,
        layout,
        lambda: ProbabilitySink(model.n_outputs, layout.loop_shape, layout.spatial_shape, out_dtype),
        tile_size=tile_size,
        halo=halo,
        batch_size=batch_size,
        device=device,
        precision=precision,
        percentiles=percentiles,
        normalized=normalized,
        image_name=image_name,
        compile=compile,
        store_bytes=0,
        tta=tta,
    )
    if not heads and model.n_outputs != model.n_classes:
        probs = np.ascontiguousarray(probs[: model.n_classes])
    return probs if layout_order else layout.to_output_order(probs, lead=1)


def iter_features(
    image: Any,
    model: UNet,
    *,
    boundary_class: int | None = None,
    threshold: float = 0.5,
    seed_threshold: float | None = None,
    distance_channel: int | None = None,
    foreground_threshold: float | None = None,
    axes: str | None = None,
    channels: int | str | Sequence[int | str] | None = None,
    channel_names: Sequence[str] | None = None,
    image_name: str = "image",
    tile_size: int | Sequence[int] | None = None,
    halo: int | Sequence[int] | None = None,
    batch_size: int | None = None,
    device: str | torch.device | None = "auto",
    precision: str = "auto",
    percentiles: tuple[float, float] | None = None,
    normalized: bool = False,
    compile: bool | str = "auto",
    tta: bool = False,
) -> Generator[Progress, None, tuple[np.ndarray, np.ndarray | None]]:
    """Like :func:`iter_predict`, but keep only the label features of every pixel.

    Returns ``(codes, landscape)`` (see :mod:`~napari_unet.core.inference.features`), uint8 arrays in
    layout order ``(*loop axes, *spatial axes)``: 1 byte per pixel (2 with ``boundary_class``)
    instead of ``4 * n_classes`` for probabilities. No zooming (``object_size``): callers
    that zoom use :func:`iter_predict`. ``tta``: as for :func:`iter_predict` (the features are
    taken from the averaged probabilities).
    """
    tta = check_tta(tta)
    check_classes(model.n_classes)
    layout = plan_for(image, model, axes=axes, channels=channels, channel_names=channel_names, image_name=image_name)
    pixels = math.prod(layout.loop_shape) * math.prod(layout.spatial_shape)
    store = pixels * (2 if boundary_class is not None else 1)
    result = yield from iter_tiled(
        image,
        model,
        layout,
        lambda: FeatureSink(
            layout.loop_shape,
            layout.spatial_shape,
            boundary_class=boundary_class,
            threshold=threshold,
            seed_threshold=seed_threshold,
            distance_channel=distance_channel,
            foreground_threshold=foreground_threshold,
        ),
        tile_size=tile_size,
        halo=halo,
        batch_size=batch_size,
        device=device,
        precision=precision,
        percentiles=percentiles,
        normalized=normalized,
        image_name=image_name,
        compile=compile,
        store_bytes=store,
        tta=tta,
    )
    return result


def predict(
    image: Any, model: UNet, *, progress: Callable[[Progress], Any] | None = None, **options: Any
) -> np.ndarray:
    """Run :func:`iter_predict` to the end and return the probabilities.

    ``progress``, if given, is called with every :class:`Progress` event.
    """
    return drain(iter_predict(image, model, **options), progress)
