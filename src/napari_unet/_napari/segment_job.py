"""One run of the Segment panel: its options, the worker's generator and the console equivalent.

A :class:`SegmentJob` is built in the main thread from the panel's options and checked there
(:func:`plan_job` runs :func:`~napari_unet.core.image.layout.plan_layout` against the model file's header,
without torch). :func:`run_segment_job` is the generator the worker runs: it loads the model and
delegates to :func:`~napari_unet.core.segment.iter_segment` or
:func:`~napari_unet.core.inference.run.iter_predict`, or for a block-wise job (``job.blocks``) to
:func:`~napari_unet._napari.block_job.run_block_job`. :func:`console_call` writes the
:mod:`napari_unet` API line that gives the same result.
"""

from __future__ import annotations

import pathlib
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..core.image.layout import Layout, plan_layout
from ..core.image.provenance import build_provenance
from ..core.labels.tracking import tracking_applies, tracking_settings
from ..core.model.bundled import DEFAULT_MODEL_NAME, builtin_name, model_label
from ..core.options import PRECISIONS, Z_MODES  # the checked option values; importing them does not import torch
from .block_job import BlockSettings, PyramidLabels
from .layer_inputs import ImageInput

if TYPE_CHECKING:
    from ..core.progress import Progress

__all__ = ["DEVICES", "OUTPUTS", "PRECISIONS", "Z_MODES", "SegmentJob", "console_call", "plan_job", "run_segment_job"]

#: Result kinds offered by the Output box.
OUTPUTS = ("instances", "semantic", "probabilities")
#: Device names offered by the Device box (static: listing GPUs would import torch).
DEVICES = ("auto", "cpu", "cuda", "mps")


def plan_job(source: ImageInput, info: dict[str, Any], channels: list[int | str] | None) -> Layout:
    """How ``source`` feeds the model described by ``info`` (``read_model_info``'s dict).

    Raises
    ------
    ValueError
        As :func:`~napari_unet.core.image.layout.plan_layout`: channel count or names that do not fit.
    """
    arch, spec = info["architecture"], info["spec"]
    return plan_layout(
        source.shape,
        source.axes,
        model_channels=int(arch["in_channels"]),
        model_ndim=int(arch["ndim"]),
        channels=channels,
        channel_names=source.channel_names,
        model_channel_names=spec.get("channel_names"),
        image_name=source.image_name,
    )


@dataclass(frozen=True)
class SegmentJob:
    """Everything one Run needs; built in the main thread, consumed by the worker.

    Attributes
    ----------
    source : ImageInput
        The input.
    layout : Layout
        How the input feeds the model (checked before the worker starts).
    model_path : str
        The model file.
    output : str
        ``"instances"``, ``"semantic"`` or ``"probabilities"``.
    channels : list of int or str, or None
        Channels to feed, by index or name.
    min_size : int
        Smallest object kept, in pixels.
    object_size : float or None
        Typical object diameter in the image (pixels); the image is zoomed to the model's
        training object size. None: as is.
    tile_size, halo, batch_size : int or None
        None means automatic.
    device, precision : str
        As for :func:`~napari_unet.core.inference.run.iter_predict`.
    tta : bool
        Test-time augmentation: average over the 8 flips and quarter turns of every tile
        (about 8 times slower).
    track : bool
        Time-lapses, instances: labels matched across frames.
    tracks_layer : bool
        Time-lapses, instances, ``track``: the worker also makes napari Tracks data.
    class_names : list of str
        The model's classes (names the probability channels).
    model_description : str or None
        The model's description, recorded in the provenance.
    z_mode : str
        How a z-stack's planes become labels with a 2D model (:data:`~napari_unet.core.options.Z_MODES`).
    anisotropy : float or None
        Z spacing / XY spacing as given; None: from the layer's scale (:attr:`used_anisotropy`).
    blocks : BlockSettings or None
        Block-wise on dask into OME-Zarr labels on disk (:mod:`~napari_unet._napari.block_job`); None: in memory.
    """

    source: ImageInput
    layout: Layout
    model_path: str
    output: str = "instances"
    channels: list[int | str] | None = None
    min_size: int = 0
    object_size: float | None = None
    tile_size: int | None = None
    halo: int | None = None
    batch_size: int | None = None
    device: str = "auto"
    precision: str = "auto"
    tta: bool = False
    track: bool = True
    tracks_layer: bool = False
    class_names: list[str] = field(default_factory=list)
    model_description: str | None = None
    z_mode: str = Z_MODES[0]
    anisotropy: float | None = None
    blocks: BlockSettings | None = None

    def __post_init__(self) -> None:
        from ..core.options import check_inference_options

        check_inference_options(z_mode=self.z_mode, anisotropy=self.anisotropy)

    @property
    def used_anisotropy(self) -> float | None:
        """The anisotropy given, else the one the layer's scale says (None when unknown)."""
        if self.anisotropy is not None:
            return self.anisotropy
        from ..core.image.calibration import anisotropy_from_scale

        scale = getattr(self.source.layer, "scale", None)
        return anisotropy_from_scale(self.source.layer_axes, None if scale is None else tuple(scale))

    def core_options(self) -> dict[str, Any]:
        """Keyword options shared by ``iter_predict`` and ``iter_segment``."""
        return {
            "axes": self.source.axes,
            "channels": self.channels,
            "channel_names": self.source.channel_names,
            "tile_size": self.tile_size,
            "halo": self.halo,
            "batch_size": self.batch_size,
            "device": self.device,
            "precision": self.precision,
            "tta": self.tta,
            "image_name": self.source.image_name,
            "object_size": self.object_size,
        }

    def options(self) -> dict[str, Any]:
        """The options recorded in the result's provenance."""
        return {
            "output": self.output,
            "axes": self.source.axes,
            "channels": self.channels,
            "min_size": self.min_size,
            "object_size": self.object_size,
            "tile_size": self.tile_size,
            "halo": self.halo,
            "batch_size": self.batch_size,
            "device": self.device,
            "precision": self.precision,
            "tta": self.tta,
            **tracking_settings(self.track, self.output, self.layout.out_axes),
            "extra_channel_layers": [e.name for e in self.source.extra_layers],
            "z_mode": self.z_mode,
            "anisotropy": self.used_anisotropy,
            **({} if self.blocks is None else {"block_wise": self.blocks.record()}),
        }

    @property
    def makes_tracks(self) -> bool:
        """Whether the worker returns napari Tracks data beside the labels."""
        if self.blocks is not None:  # block-wise labels are too large to make tracks of in memory
            return False
        return self.tracks_layer and tracking_applies(self.track, self.output, self.layout.out_axes)

    def summary(self, result: Any) -> str:
        """What the status line and the notification say of ``result`` (labels or probabilities)."""
        if isinstance(result, PyramidLabels):
            return result.summary()
        if self.output != "instances":
            return f"shape {tuple(result.shape)}"
        if not isinstance(result, np.ndarray):  # dask- or zarr-backed (too large for memory): not read here
            return f"shape {tuple(result.shape)} (not loaded)"
        noun = "tracks" if tracking_applies(self.track, self.output, self.layout.out_axes) else "objects"
        return f"{int(result.max()) if result.size else 0} {noun}"

    def provenance(self) -> dict[str, Any]:
        """What the result layer records about how it was made (the one schema:
        :func:`~napari_unet.core.image.provenance.build_provenance`)."""
        return build_provenance(
            command="napari panel",
            model=model_label(self.model_path),  # a built-in model by name, not its path in this installation
            model_description=self.model_description,
            input=self.source.layer.name,
            axes=self.source.axes,
            device=self.device,
            options=self.options(),
        )


def run_segment_job(job: SegmentJob) -> Generator[Progress, None, np.ndarray]:
    """The worker's generator: load the model, then predict or segment.

    Runs in the worker thread; this is where torch gets imported.

    Yields
    ------
    Progress
        ``"load"`` while the model loads, then the core's events.

    Returns
    -------
    numpy.ndarray or tuple
        Labels (input shape without the channel axis) or probabilities
        ``(n_classes, *that shape)``; ``(labels, tracks)`` when ``job.makes_tracks``
        (``tracks`` from :func:`~napari_unet.core.labels.tracking.tracks_from_labels`).
    """
    from ..core.inference.run import iter_predict
    from ..core.model.cache import cached_model
    from ..core.progress import Progress

    if job.blocks is not None:
        from .block_job import run_block_job

        return (yield from run_block_job(job))
    name = pathlib.Path(job.model_path).name
    yield Progress(0, 1, "load", f"loading model {name}")
    model = cached_model(job.model_path)
    yield Progress(1, 1, "load", f"model {name} loaded")
    if job.output == "probabilities":
        return (yield from iter_predict(job.source.data, model, **job.core_options()))
    from ..core.segment import iter_segment

    zstack = {"z_mode": job.z_mode, "anisotropy": job.used_anisotropy}
    labels = yield from iter_segment(
        job.source.data, model, mode=job.output, min_size=job.min_size, track=job.track, **zstack, **job.core_options()
    )
    if not job.makes_tracks:
        return labels
    from ..core.labels.tracking import tracks_from_labels

    yield Progress(0, 1, "tracks", "making the tracks layer")
    return labels, tracks_from_labels(labels, axes=job.layout.out_axes)


def console_call(job: SegmentJob) -> str:
    """The console line that reproduces ``job`` with :mod:`napari_unet`'s API.

    Only options that differ from the API's defaults are written: the default built-in model is
    left out, another built-in model is given by name, a model file by its path. For combined channel
    layers the stack is written out with ``np.stack`` and channels given by name are turned
    into indices (an array carries no channel names). A block-wise job (``job.blocks``) is a
    ``napari_unet.segment_blocks`` call on the layer's (level 0) dask array, stacked with
    ``da.stack``, then ``viewer.add_labels(result.levels(), ...)``
    (:func:`~napari_unet._napari.block_job.block_console_call`).

    Returns
    -------
    str
        E.g. ``from napari_unet import segment; viewer.add_labels(segment(viewer.layers['nuclei'],
        model='/m.safetensors', min_size=10))``.
    """
    src = job.source
    lazy = job.blocks is not None
    imports, image, channels = _console_image(job)
    explicit_axes = bool(src.extra_layers) or lazy or src.origin in ("given", "guessed")
    args = [image]
    builtin = builtin_name(job.model_path)  # built-in models by name: their path is this installation's only
    if builtin is None:
        args.append(f"model={job.model_path!r}")
    elif builtin != DEFAULT_MODEL_NAME:
        args.append(f"model={builtin!r}")
    if explicit_axes:
        args.append(f"axes={src.axes!r}")
    if channels is not None:
        args.append(f"channels={channels!r}")
    if job.output == "semantic":
        args.append("mode='semantic'")
    if job.output != "probabilities" and job.min_size:
        args.append(f"min_size={job.min_size!r}")
    for key in ("object_size", "tile_size", "halo", "batch_size"):
        value = getattr(job, key)
        if value is not None:
            args.append(f"{key}={value!r}")
    if job.device != "auto":
        args.append(f"device={job.device!r}")
    if job.precision != "auto":
        args.append(f"precision={job.precision!r}")
    if job.tta:
        args.append("tta=True")
    if not job.track and tracking_applies(True, job.output, job.layout.out_axes):
        args.append("track=False")
    args += _zstack_args(job)
    if lazy:
        from .block_job import block_console_call

        return block_console_call(job, imports, args)
    func, add = ("predict", "add_image") if job.output == "probabilities" else ("segment", "add_labels")
    imports.append(f"from napari_unet import {func}")
    return f"{'; '.join(imports)}; viewer.{add}({func}({', '.join(args)}))"


def _console_image(job: SegmentJob) -> tuple[list[str], str, list[int | str] | None]:
    """The imports, the image and the channels of :func:`console_call`: the layer, or an array (the
    stacked layers, or any block-wise input) with channels by index (an array carries no names)."""
    src, lazy, channels = job.source, job.blocks is not None, job.channels
    imports = []
    if src.extra_layers:
        imports.append("import dask.array as da" if lazy else "import numpy as np")
        parts = ", ".join(_layer_array(layer, lazy) for layer in (src.layer, *src.extra_layers))
        image = f"{'da' if lazy else 'np'}.stack([{parts}])"
    else:
        image = _layer_array(src.layer, lazy) if lazy else f"viewer.layers[{src.layer.name!r}]"
    if (src.extra_layers or lazy) and channels is not None and src.channel_names:
        names = src.channel_names
        channels = [names.index(c) if isinstance(c, str) and c in names else c for c in channels]
    return imports, image, channels


def _layer_array(layer: Any, lazy: bool) -> str:
    """``viewer.layers['x'].data``, its level 0 (``.data[0]``) for a multiscale layer in a block-wise call."""
    return f"viewer.layers[{layer.name!r}].data{'[0]' if lazy and getattr(layer, 'multiscale', False) else ''}"


def _zstack_args(job: SegmentJob) -> list[str]:
    """The z-stack options of :func:`console_call` that differ from the API's defaults (block-wise
    runs take no anisotropy: they link the planes)."""
    args = []
    if job.output == "instances" and job.z_mode != Z_MODES[0]:
        args.append(f"z_mode={job.z_mode!r}")
    if job.anisotropy is not None and job.blocks is None:
        args.append(f"anisotropy={job.anisotropy!r}")
    return args
