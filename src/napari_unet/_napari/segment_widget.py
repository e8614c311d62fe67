"""The "Segment with U-Net" dock widget: a thin form over :mod:`napari_unet.core`.

The widget only collects options, starts a worker (:func:`~napari_unet._napari.workers.start_worker`)
over :func:`~napari_unet.core.segment.iter_segment` (labels) or
:func:`~napari_unet.core.inference.iter_predict` (probabilities), and adds the result as a layer.
See ``docs/segment-widget.md`` for the user's view.

Nothing here imports torch: model files are described with
:func:`~napari_unet.core.modelfile.read_model_info` (which parses the header itself) and the
model is loaded inside the worker thread when Run is pressed.
"""

from __future__ import annotations

import logging
import os
import pathlib
import re
import textwrap
import warnings
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

import napari.viewer
import numpy as np
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FileEdit,
    Label,
    LineEdit,
    PushButton,
    Select,
    SpinBox,
)
from napari.layers import Image, Labels, Layer
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QSizePolicy

from .._version import __version__
from ..core.axes import AxesGuessWarning, Layout, guess_axes, plan_layout, validate_axes
from ..core.modelfile import describe_model, read_model_info
from . import settings
from .workers import UNetWorker, error_message, start_worker

if TYPE_CHECKING:
    from ..core.inference import Progress

__all__ = [
    "DEVICES",
    "OUTPUTS",
    "PRECISIONS",
    "ImageInput",
    "SegmentJob",
    "SegmentWidget",
    "builtin_models",
    "console_call",
    "model_summary",
    "parse_channels",
    "resolve_layer_axes",
]

log = logging.getLogger(__name__)

#: Result kinds offered by the Output box.
OUTPUTS = ("instances", "semantic", "probabilities")
#: Device names offered by the Device box (static: listing GPUs would import torch).
DEVICES = ("auto", "cpu", "cuda", "mps")
#: Mirrors ``napari_unet.core.inference.PRECISIONS`` (not imported: that module imports torch).
PRECISIONS = ("auto", "float32", "bfloat16", "float16")

_AXES_ORIGIN = {
    "typed": "typed in the Axes box",
    "metadata": "from the layer's metadata",
    "rgb": "RGB layer",
    "2D": "2D image",
    "guessed": "guessed from the shape, correct them in the Axes box if wrong",
}
_TRAINING_DATA_KEYS = ("data", "dataset", "training_data", "train_data", "images")


def builtin_models() -> list[tuple[str, str]]:
    """Models shipped with napari-unet, listed first in the Model box.

    Returns
    -------
    list of (str, str)
        ``(label, path)`` pairs; empty for now (a later release adds a bundled default model).
    """
    return []


# ---------------------------------------------------------------------------- pure helpers
def parse_channels(text: str) -> list[int | str] | None:
    """Parse the Channels box: ``"0,1"`` → ``[0, 1]``, ``"DNA, membrane"`` → names.

    Parameters
    ----------
    text : str
        Comma-separated channel indices and/or names; blank means all channels.

    Returns
    -------
    list of int or str, or None
        None when ``text`` is blank.
    """
    items = [t.strip() for t in (text or "").split(",")]
    items = [t for t in items if t]
    if not items:
        return None
    return [int(t) if re.fullmatch(r"[+-]?\d+", t) else t for t in items]


def _layer_data(layer: Image) -> Any:
    """The full-resolution data of ``layer`` (level 0 of a multiscale layer)."""
    return layer.data[0] if getattr(layer, "multiscale", False) else layer.data


def resolve_layer_axes(layer: Image, typed: str = "") -> tuple[str, str, str]:
    """The axes of ``layer``'s data and where they come from.

    Order of precedence: ``typed`` (the Axes box), ``layer.metadata["axes"]`` (set by
    napari-unet's reader), ``...YXS`` for an RGB layer, ``YX`` for a 2D layer, else
    :func:`~napari_unet.core.axes.guess_axes`.

    Parameters
    ----------
    layer : napari.layers.Image
        The layer.
    typed : str
        What the user typed; blank to use the layer's own axes.

    Returns
    -------
    (str, str, str)
        ``(axes, origin, note)``: origin is one of ``"typed"``, ``"metadata"``, ``"rgb"``,
        ``"2D"``, ``"guessed"``; note explains a metadata entry that was ignored (else ``""``).

    Raises
    ------
    ValueError
        Typed axes that do not fit the data, or data of more than 5 dimensions without axes.
    """
    shape = tuple(_layer_data(layer).shape)
    if typed.strip():
        return validate_axes(typed.strip(), shape), "typed", ""
    note = ""
    meta_axes = (layer.metadata or {}).get("axes")
    if isinstance(meta_axes, str) and meta_axes:
        try:
            return validate_axes(meta_axes, shape), "metadata", ""
        except ValueError as exc:
            note = f"metadata axes ignored: {exc}"
    if getattr(layer, "rgb", False) and 3 <= len(shape) <= 4:
        return "TYXS"[-len(shape):], "rgb", note
    if len(shape) == 2:
        return "YX", "2D", note
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AxesGuessWarning)
        return guess_axes(shape), "guessed", note


def model_summary(info: dict[str, Any]) -> str:
    """A few lines about a model, from :func:`~napari_unet.core.modelfile.read_model_info`.

    Parameters
    ----------
    info : dict
        The model file's config.

    Returns
    -------
    str
        Input channels, classes and target, training data and pixel size.
    """
    arch, spec = info["architecture"], info["spec"]
    channels = spec.get("channel_names") or []
    classes = spec.get("class_names") or []
    lines = []
    description = str(spec.get("description") or "").strip()
    if description:
        lines.append(description.splitlines()[0])
    lines.append(f"{arch['ndim']}D U-Net; input: {len(channels)} channel(s) ({', '.join(map(str, channels))})")
    lines.append(f"output: {len(classes)} classes ({', '.join(map(str, classes))}); target: {spec.get('target', '?')}")
    training = spec.get("training") or {}
    data = next((training[k] for k in _TRAINING_DATA_KEYS if training.get(k)), None)
    lines.append(f"training data: {data if data is not None else 'not recorded'}")
    pixel = spec.get("pixel_size")
    lines.append("pixel size: " + (" x ".join(f"{p:g}" for p in pixel) if pixel else "unknown"))
    return "\n".join(lines)


@dataclass(frozen=True)
class ImageInput:
    """What will be fed to the core for one Run.

    Attributes
    ----------
    layer : napari.layers.Image
        The chosen image layer (the first channel when extra channel layers are combined).
    arrays : tuple of array-like
        The layer's data, then the data of each extra channel layer.
    axes : str
        Axes of :attr:`data`.
    layer_axes : str
        Axes of ``layer``'s own data (used to carry its scale and translate over).
    origin : str
        Where ``layer_axes`` came from (see :func:`resolve_layer_axes`).
    note : str
        Why the layer's metadata axes were ignored, if they were.
    channel_names : list of str or None
        Names of the channels of :attr:`data`: the layer's ``metadata["channel_names"]``; when
        layers are combined, each layer's single channel name (else the layer name).
    extra_layers : tuple of napari.layers.Image
        The extra channel layers, in order.
    """

    layer: Image
    arrays: tuple[Any, ...]
    axes: str
    layer_axes: str
    origin: str
    note: str = ""
    channel_names: list[str] | None = None
    extra_layers: tuple[Image, ...] = ()

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of :attr:`data`, known without stacking anything."""
        first = tuple(int(n) for n in self.arrays[0].shape)
        return first if len(self.arrays) == 1 else (len(self.arrays), *first)

    @cached_property
    def data(self) -> Any:
        """The array passed to the core: the layer's data, or the layers stacked along a new
        first axis ``C`` (:func:`numpy.stack`, one in-memory copy, when all are numpy arrays;
        else lazily with :func:`dask.array.stack`). Built on first access: in the worker thread."""
        if len(self.arrays) == 1:
            return self.arrays[0]
        if all(isinstance(a, np.ndarray) for a in self.arrays):
            return np.stack(self.arrays)
        import dask.array as da

        return da.stack([da.asarray(a) for a in self.arrays])

    @property
    def image_name(self) -> str:
        """How error messages name the input: ``layer 'x'`` or ``layers 'x' + 'y'``."""
        if not self.extra_layers:
            return f"layer {self.layer.name!r}"
        return "layers " + " + ".join(repr(layer.name) for layer in (self.layer, *self.extra_layers))

    def describe(self) -> str:
        """``axes ZCYX (from the layer's metadata)`` and any note."""
        if self.extra_layers:
            text = (f"axes {self.axes} (C: {len(self.arrays)} layers stacked; {self.layer_axes} "
                    f"{_AXES_ORIGIN[self.origin]})")
        else:
            text = f"axes {self.axes} ({_AXES_ORIGIN[self.origin]})"
        return f"{text}; {self.note}" if self.note else text


def combine_input(layer: Image, extra_layers: Sequence[Image] = (), typed_axes: str = "") -> ImageInput:
    """Build the :class:`ImageInput` for ``layer`` plus optional single-channel layers.

    Extra channel layers go after ``layer`` along a new first axis ``C`` (axes
    ``"C" + layer axes``); nothing is stacked here (see :attr:`ImageInput.data`).

    Raises
    ------
    ValueError
        Axes that do not fit, a first layer that already has a channel axis, or extra layers
        whose shape differs from the first one's.
    """
    axes, origin, note = resolve_layer_axes(layer, typed_axes)
    data = _layer_data(layer)
    names = (layer.metadata or {}).get("channel_names")
    names = [str(n) for n in names] if isinstance(names, (list, tuple)) else None
    extras = tuple(e for e in extra_layers if e is not layer)
    if not extras:
        return ImageInput(layer, (data,), axes, axes, origin, note, names, ())
    sizes = dict(zip(axes, data.shape))
    if "C" in sizes or sizes.get("S", 1) > 1:
        raise ValueError(
            f"layer {layer.name!r} already has a channel axis (axes {axes}); extra channel layers can only "
            "be added to a single-channel layer"
        )
    arrays = [data]
    for extra in extras:
        extra_data = _layer_data(extra)
        if getattr(extra, "rgb", False) or tuple(extra_data.shape) != tuple(data.shape):
            raise ValueError(
                f"extra channel layer {extra.name!r} has shape {tuple(extra_data.shape)}"
                f"{' (RGB)' if getattr(extra, 'rgb', False) else ''}; it must be a single-channel layer of the "
                f"shape of layer {layer.name!r} {tuple(data.shape)}"
            )
        arrays.append(extra_data)
    return ImageInput(
        layer, tuple(arrays), "C" + axes, axes, origin, note,
        [_single_channel_name(lay) for lay in (layer, *extras)], extras,
    )


def _single_channel_name(layer: Image) -> str:
    """The channel name of a one-channel layer: its ``metadata["channel_names"]`` entry (the
    reader records it when it splits a file's channels), else the layer name."""
    names = (layer.metadata or {}).get("channel_names")
    if isinstance(names, (list, tuple)) and len(names) == 1 and names[0]:
        return str(names[0])
    return str(layer.name)


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
    tile_size, halo, batch_size : int or None
        None means automatic.
    device, precision : str
        As for :func:`~napari_unet.core.inference.iter_predict`.
    class_names : list of str
        The model's classes (names the probability channels).
    """

    source: ImageInput
    layout: Layout
    model_path: str
    output: str = "instances"
    channels: list[int | str] | None = None
    min_size: int = 0
    tile_size: int | None = None
    halo: int | None = None
    batch_size: int | None = None
    device: str = "auto"
    precision: str = "auto"
    class_names: list[str] = field(default_factory=list)

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
            "image_name": self.source.image_name,
        }

    def options(self) -> dict[str, Any]:
        """The options recorded in the result's provenance."""
        return {
            "output": self.output,
            "axes": self.source.axes,
            "channels": self.channels,
            "min_size": self.min_size,
            "tile_size": self.tile_size,
            "halo": self.halo,
            "batch_size": self.batch_size,
            "device": self.device,
            "precision": self.precision,
            "extra_channel_layers": [e.name for e in self.source.extra_layers],
        }


def run_segment_job(job: SegmentJob) -> Generator[Progress, None, np.ndarray]:
    """The worker's generator: load the model, then predict or segment.

    Runs in the worker thread; this is where torch gets imported.

    Yields
    ------
    Progress
        ``"load"`` while the model loads, then the core's events.

    Returns
    -------
    numpy.ndarray
        Labels (input shape without the channel axis) or probabilities
        ``(n_classes, *that shape)``.
    """
    from ..core.inference import Progress, iter_predict
    from ..core.modelfile import load_model

    name = pathlib.Path(job.model_path).name
    yield Progress(0, 1, "load", f"loading model {name}")
    model = load_model(job.model_path)
    yield Progress(1, 1, "load", f"model {name} loaded")
    if job.output == "probabilities":
        return (yield from iter_predict(job.source.data, model, **job.core_options()))
    from ..core.segment import iter_segment

    return (
        yield from iter_segment(
            job.source.data, model, mode=job.output, min_size=job.min_size, **job.core_options()
        )
    )


def console_call(job: SegmentJob) -> str:
    """The console line that reproduces ``job`` with :mod:`napari_unet`'s API.

    Only options that differ from the API's defaults are written. For combined channel
    layers the stack is written out with ``np.stack`` and channels given by name are turned
    into indices (an array carries no channel names).

    Returns
    -------
    str
        E.g. ``from napari_unet import segment; viewer.add_labels(segment(viewer.layers['nuclei'],
        model='/m.safetensors', min_size=10))``.
    """
    src = job.source
    imports = []
    channels = job.channels
    if src.extra_layers:
        imports.append("import numpy as np")
        parts = ", ".join(f"viewer.layers[{layer.name!r}].data" for layer in (src.layer, *src.extra_layers))
        image = f"np.stack([{parts}])"
        if channels is not None and src.channel_names:
            channels = [src.channel_names.index(c) if isinstance(c, str) and c in src.channel_names else c
                        for c in channels]
        explicit_axes = True
    else:
        image = f"viewer.layers[{src.layer.name!r}]"
        explicit_axes = src.origin in ("typed", "guessed")
    args = [image, f"model={job.model_path!r}"]
    if explicit_axes:
        args.append(f"axes={src.axes!r}")
    if channels is not None:
        args.append(f"channels={channels!r}")
    if job.output == "semantic":
        args.append("mode='semantic'")
    if job.output != "probabilities" and job.min_size:
        args.append(f"min_size={job.min_size!r}")
    for key in ("tile_size", "halo", "batch_size"):
        value = getattr(job, key)
        if value is not None:
            args.append(f"{key}={value!r}")
    if job.device != "auto":
        args.append(f"device={job.device!r}")
    if job.precision != "auto":
        args.append(f"precision={job.precision!r}")
    func, add = ("predict", "add_image") if job.output == "probabilities" else ("segment", "add_labels")
    imports.append(f"from napari_unet import {func}")
    return f"{'; '.join(imports)}; viewer.{add}({func}({', '.join(args)}))"


def _axis_transforms(layer: Image, layer_axes: str) -> dict[str, tuple[float, float, Any, str | None]]:
    """``{axis: (scale, translate, unit, axis label)}`` of ``layer``'s world axes, by axes letter.

    The axis label is None when the layer has napari's default labels (``"-2"``, ``"-1"``...),
    which only make sense for the layer's own number of dimensions.
    """
    dims = layer_axes[:-1] if getattr(layer, "rgb", False) else layer_axes
    scale = list(layer.scale)
    translate = list(layer.translate)
    units = list(getattr(layer, "units", None) or [None] * len(scale))
    labels: list[str | None] = list(getattr(layer, "axis_labels", None) or [None] * len(scale))
    if labels == [str(i) for i in range(-len(labels), 0)]:
        labels = [None] * len(labels)
    if len(dims) != len(scale):
        log.warning("layer %r: %d axes (%s) but %d scale entries; result left uncalibrated",
                    layer.name, len(dims), dims, len(scale))
        return {}
    return {a: (float(s), float(t), u, lab) for a, s, t, u, lab in zip(dims, scale, translate, units, labels)}


def _is_result_layer(layer: Layer) -> bool:
    """Whether ``layer`` was made by this widget (its metadata carries our provenance)."""
    prov = (layer.metadata or {}).get("provenance")
    return isinstance(prov, dict) and "napari_unet_version" in prov and "source" in layer.metadata


# ---------------------------------------------------------------------------- the widget
class SegmentWidget(Container):
    """Dock widget: segment an Image layer with a U-Net model file.

    Parameters
    ----------
    viewer : napari.viewer.Viewer
        The viewer (injected by napari when opened from the Plugins menu).

    Notes
    -----
    **Result layers.** Labels go to a Labels layer named ``"<image> labels"`` (probabilities
    to an Image layer ``"<image> probabilities"`` with the classes along its first axis),
    with the image's scale, translate and units for the output axes (a channel axis of the
    image is dropped) so it overlays the image exactly, and metadata ``{"axes", "source",
    "provenance"}`` for napari-unet's writer. Running again on the same image **replaces the
    data** of that layer (the one with the same name whose ``metadata["source"]`` is the
    image) instead of adding another layer: repeated runs while tuning options do not pile
    up layers. To keep a result, rename its layer; the next run then adds a new one. A
    layer of that name not made by this widget is never touched (napari then names ours
    ``"<image> labels [1]"``, which later runs replace).

    **Threads.** Run starts a worker (see :mod:`napari_unet._napari.workers`); the Qt event
    loop is never blocked and torch is only imported inside the worker.

    Attributes
    ----------
    last_console_call : str or None
        The console line equivalent to the last successful run.
    last_event : object or None
        The last progress event received.
    result_layer : napari.layers.Layer or None
        The layer written by the last successful run.
    """

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__(labels=True)
        self._viewer = viewer
        self._worker: UNetWorker | None = None
        self._watched_layer: Image | None = None
        self._session_models: list[str] = []
        self._info_cache: dict[str, tuple[float, dict[str, Any] | Exception]] = {}
        self.last_console_call: str | None = None
        self.last_event: Any = None
        self.result_layer: Layer | None = None

        # -- image
        self._image = ComboBox(name="image", label="Image", choices=self._image_choices,
                               tooltip="The Image layer to segment; follows the layer selected in the layer list.")
        self._extra = Select(name="extra_channels", label="More channel layers", choices=self._extra_choices,
                             tooltip="Single-channel Image layers of the same shape, stacked after the image as "
                                     "further model input channels (in this order). Ctrl-click to (un)select.")
        self._extra.native.setMaximumHeight(70)
        self._axes_info = Label(name="axes_info", label="Reads")
        self._axes = LineEdit(name="axes", label="Axes",
                              tooltip="Correct the layer's axes, e.g. ZCYX, TYX, YXS. Blank: from the layer "
                                      "(napari-unet's reader records them) or guessed.")
        self._channels = LineEdit(name="channels", label="Channels",
                                  tooltip="Channels to feed the model, by index ('0,1') or name ('DNA, membrane'). "
                                          "Blank: all channels.")
        # -- model
        self._model = ComboBox(name="model", label="Model", choices=self._model_choices,
                               tooltip="Built-in and recently used model files.")
        self._browse = FileEdit(name="browse", label="Browse…", mode="r", filter="*.safetensors",
                                tooltip="Add a napari-unet model file (.safetensors).")
        self._model_info = Label(name="model_info", label="About model")
        # -- options
        self._output = ComboBox(name="output", label="Output", choices=list(OUTPUTS), value="instances",
                                tooltip="instances: one label per object; semantic: class index per pixel; "
                                        "probabilities: class probabilities as an Image layer.")
        self._tile_size = SpinBox(name="tile_size", label="Tile size (0 = auto)", min=0, max=8192, step=16, value=0)
        self._device = ComboBox(name="device", label="Device", choices=list(DEVICES), value="auto",
                                tooltip="auto: CUDA GPU, else Apple MPS, else CPU.")
        self._min_size = SpinBox(name="min_size", label="Minimum object size (px)", min=0, max=10**9, value=0)
        self._show_advanced = CheckBox(name="show_advanced", text="Advanced options", value=False)
        self._halo = SpinBox(name="halo", label="Halo (0 = auto)", min=0, max=1024, value=0,
                             tooltip="Context pixels added on each side of a tile.")
        self._batch_size = SpinBox(name="batch_size", label="Batch size (0 = auto)", min=0, max=256, value=0)
        self._precision = ComboBox(name="precision", label="Precision", choices=list(PRECISIONS), value="auto",
                                   tooltip="auto: bfloat16/float16 autocast on CUDA, float32 elsewhere.")
        self._advanced = Container(name="advanced", label=" ",
                                   widgets=[self._halo, self._batch_size, self._precision], labels=True)
        self._advanced.margins = (0, 0, 0, 0)
        # -- run
        self._run_button = PushButton(name="run_button", text="Run")
        self._cancel_button = PushButton(name="cancel_button", text="Cancel", enabled=False)
        self._buttons = Container(name="buttons", label=" ", widgets=[self._run_button, self._cancel_button],
                                  layout="horizontal", labels=False)
        self._buttons.margins = (0, 0, 0, 0)
        self._status = Label(name="status", label="Status", value="idle")

        self.extend([
            self._image, self._extra, self._axes_info, self._axes, self._channels,
            self._model, self._browse, self._model_info,
            self._output, self._tile_size, self._device, self._min_size,
            self._show_advanced, self._advanced,
            self._buttons, self._status,
        ])
        for label in (self._axes_info, self._model_info, self._status):
            # QLabel word wrap mis-sizes labels inside napari's dock scroll area; _wrap() instead
            label.native.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
            label.native.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        self._advanced.visible = False

        # -- connections
        self._image.changed.connect(self._on_image_changed)
        self._extra.changed.connect(self._update_axes_info)
        self._axes.changed.connect(self._update_axes_info)
        self._channels.changed.connect(self._update_axes_info)
        self._model.changed.connect(self._on_model_changed)
        self._browse.changed.connect(self._on_browse)
        self._show_advanced.changed.connect(self._toggle_advanced)
        self._run_button.changed.connect(self._on_run_clicked)
        self._cancel_button.changed.connect(self.cancel)
        layer_events = viewer.layers.events
        layer_events.inserted.connect(self._on_layers_inserted)
        layer_events.removed.connect(self._on_layers_changed)
        layer_events.moved.connect(self._on_layers_changed)
        viewer.layers.selection.events.active.connect(self._on_active_layer)
        for layer in viewer.layers:
            layer.events.name.connect(self._on_layers_changed)

        active = viewer.layers.selection.active
        if isinstance(active, Image):
            self.select_image(active)
        self._on_image_changed()
        self._on_model_changed()

    # ------------------------------------------------------------------ choices
    def _image_layers(self) -> list[Image]:
        return [_unwrap(layer) for layer in self._viewer.layers if isinstance(layer, Image)]

    def _image_choices(self, _widget: Any = None) -> list[tuple[str, Image]]:
        return [(layer.name, layer) for layer in self._image_layers()]

    def _extra_choices(self, _widget: Any = None) -> list[tuple[str, Image]]:
        main = self._image.value if hasattr(self, "_image") else None
        if main is None:
            return []
        shape = tuple(_layer_data(main).shape)
        return [
            (layer.name, layer) for layer in self._image_layers()
            if layer is not main and not layer.rgb and tuple(_layer_data(layer).shape) == shape
        ]

    def _model_choices(self, _widget: Any = None) -> list[tuple[str, str]]:
        entries: list[tuple[str, str]] = []
        seen: set[str] = set()
        for label, path in builtin_models():
            entries.append((label, os.fspath(path)))
            seen.add(os.fspath(path))
        for path in [*self._session_models, *map(os.fspath, settings.recent_models())]:
            if path in seen or not os.path.isfile(path):
                continue
            seen.add(path)
            entries.append((pathlib.Path(path).name, path))
        names = [label for label, _ in entries]
        return [
            (f"{label} ({pathlib.Path(path).parent.name})" if names.count(label) > 1 else label, path)
            for label, path in entries
        ]

    # ------------------------------------------------------------------ public API
    @property
    def running(self) -> bool:
        """Whether a run is in progress."""
        return self._worker is not None

    @property
    def worker(self) -> UNetWorker | None:
        """The running worker, if any."""
        return self._worker

    @property
    def image_layer(self) -> Image | None:
        """The selected Image layer."""
        return self._image.value

    @property
    def model_path(self) -> str | None:
        """The selected model file, or None."""
        return self._model.value

    def select_image(self, layer: Image) -> None:
        """Choose ``layer`` in the Image box.

        Raises
        ------
        TypeError
            If ``layer`` is not an Image layer.
        ValueError
            If ``layer`` is not in the viewer.
        """
        layer = _unwrap(layer)
        if not isinstance(layer, Image):
            raise TypeError(f"layer {layer.name!r} is a {type(layer).__name__} layer, not an Image layer")
        self._image.reset_choices()
        if not any(choice is layer for choice in self._image.choices):
            raise ValueError(f"layer {layer.name!r} is not an Image layer of this viewer")
        self._image.value = layer

    def set_model(self, path: str | os.PathLike) -> None:
        """Select the model file ``path`` (read without torch) and remember it as recently used.

        Raises
        ------
        FileNotFoundError
            If ``path`` does not exist.
        napari_unet.core.modelfile.ModelFileError
            If it is not a napari-unet model file this version can read.
        """
        path = os.path.abspath(os.path.expanduser(os.fspath(path)))
        read_model_info(path)  # validates; raises with a precise message
        if path not in self._session_models:
            self._session_models.insert(0, path)
        settings.add_recent_model(path)
        self._model.reset_choices()
        self._model.value = path

    def run(self) -> UNetWorker | None:
        """Start segmenting with the current options.

        Problems found before starting (no image, no model, bad axes or channels, a channel
        count that does not fit the model, an unreadable model file) are shown with
        ``show_error`` and nothing starts.

        Returns
        -------
        UNetWorker or None
            The started worker (connect to ``worker.finished`` to wait), or None when
            nothing was started.
        """
        if self._worker is not None:
            show_info("Segment with U-Net is already running; cancel it first")
            return None
        try:
            job = self._make_job()
        except (ValueError, TypeError, FileNotFoundError) as exc:
            message = error_message(exc, "Segment with U-Net")
            log.error("%s", message)
            show_error(message)
            self._status.value = _wrap(f"not started: {error_message(exc)}")
            return None
        description = f"Segment {job.source.layer.name!r}"
        self._status.value = "starting…"
        self.last_event = None
        self._set_running(True)
        try:
            self._worker = start_worker(
                run_segment_job, job,
                description=description,
                on_result=lambda result: self._on_result(job, result),
                on_event=self._on_event,
                on_error=self._on_error,
                on_aborted=self._on_aborted,
                on_finished=self._on_finished,
                error_prefix="Segment with U-Net failed",
            )
        except Exception:
            self._set_running(False)
            raise
        log.info("%s with %s (%s)", description, job.model_path, job.options())
        return self._worker

    def cancel(self, *_: Any) -> None:
        """Ask the running worker to stop at its next progress step (no layer is added)."""
        if self._worker is not None:
            self._worker.quit()
            self._status.value = "cancelling…"

    # ------------------------------------------------------------------ building a job
    def _input(self) -> ImageInput:
        layer = self._image.value
        if layer is None:
            raise ValueError("no Image layer to segment: open or select an image first")
        return combine_input(layer, list(self._extra.value or ()), self._axes.value)

    def _model_info_for(self, path: str) -> dict[str, Any]:
        """``read_model_info(path)``, cached by modification time; raises like it."""
        try:
            mtime = os.stat(path).st_mtime
        except OSError:
            mtime = -1.0
        cached = self._info_cache.get(path)
        if cached is None or cached[0] != mtime:
            try:
                value: dict[str, Any] | Exception = read_model_info(path)
            except (ValueError, OSError) as exc:
                value = exc
            cached = (mtime, value)
            self._info_cache[path] = cached
        if isinstance(cached[1], Exception):
            raise cached[1]
        return cached[1]

    @staticmethod
    def _plan(source: ImageInput, info: dict[str, Any], channels: list[int | str] | None) -> Layout:
        arch, spec = info["architecture"], info["spec"]
        return plan_layout(
            source.shape, source.axes, model_channels=int(arch["in_channels"]),
            model_ndim=int(arch["ndim"]), channels=channels, channel_names=source.channel_names,
            model_channel_names=spec.get("channel_names"), image_name=source.image_name,
        )

    def _make_job(self) -> SegmentJob:
        source = self._input()
        path = self._model.value
        if not path:
            raise ValueError("no model selected: choose a model file with Browse…")
        info = self._model_info_for(path)
        channels = parse_channels(self._channels.value)
        layout = self._plan(source, info, channels)
        return SegmentJob(
            source=source, layout=layout, model_path=path, output=self._output.value,
            channels=channels, min_size=int(self._min_size.value),
            tile_size=int(self._tile_size.value) or None, halo=int(self._halo.value) or None,
            batch_size=int(self._batch_size.value) or None, device=self._device.value,
            precision=self._precision.value, class_names=list(info["spec"].get("class_names") or []),
        )

    # ------------------------------------------------------------------ worker callbacks
    def _set_running(self, running: bool) -> None:
        self._run_button.enabled = not running
        self._cancel_button.enabled = running

    def _on_event(self, event: Any) -> None:
        self.last_event = event
        message = getattr(event, "message", "") or getattr(event, "stage", "")
        self._status.value = _wrap(str(message))

    def _on_error(self, exc: BaseException) -> None:
        self._status.value = _wrap(f"failed: {error_message(exc)}")

    def _on_aborted(self) -> None:
        self._status.value = "cancelled"

    def _on_finished(self) -> None:
        self._worker = None
        self._set_running(False)

    def _on_result(self, job: SegmentJob, result: np.ndarray) -> None:
        source = job.source
        layer = source.layer
        transforms = _axis_transforms(layer, source.layer_axes)
        out_axes = job.layout.out_axes
        if job.output == "probabilities":
            axes, kind, name = "C" + out_axes, Image, f"{layer.name} probabilities"
        else:
            axes, kind, name = out_axes, Labels, f"{layer.name} labels"
        per_axis = [transforms.get(a, (1.0, 0.0, None, None)) for a in axes]
        if job.output == "probabilities":
            per_axis[0] = (1.0, 0.0, None, "class")
        scale = [p[0] for p in per_axis]
        translate = [p[1] for p in per_axis]
        units = [p[2] for p in per_axis]
        axis_labels = [p[3] for p in per_axis]
        metadata: dict[str, Any] = {
            "axes": axes,
            "source": layer.name,
            "provenance": {
                "software": f"napari-unet {__version__}",
                "napari_unet_version": __version__,
                "model": job.model_path,
                "image": layer.name,
                "image_axes": source.axes,
                "options": job.options(),
            },
        }
        if job.output == "probabilities" and job.class_names:
            metadata["channel_names"] = list(job.class_names)
        kwargs: dict[str, Any] = {"scale": scale, "translate": translate}
        if all(u is not None for u in units[1 if job.output == "probabilities" else 0:]):
            kwargs["units"] = [u if u is not None else "pixel" for u in units]
        if all(lab is not None for lab in axis_labels):
            kwargs["axis_labels"] = axis_labels
        # our earlier result: same type, same source, and the name napari gave it (a layer of
        # that name that is not ours makes napari append " [1]" to ours)
        same_name = re.compile(re.escape(name) + r"( \[\d+\])?")
        existing = next(
            (lay for lay in self._viewer.layers
             if isinstance(lay, kind) and same_name.fullmatch(lay.name)
             and (lay.metadata or {}).get("source") == layer.name and _is_result_layer(lay)),
            None,
        )
        existing = _unwrap(existing) if existing is not None else None
        if existing is not None and existing.data.ndim == result.ndim:
            existing.data = result
            for key, value in kwargs.items():
                setattr(existing, key, value)
            existing.metadata = metadata
            if kind is Image:
                existing.contrast_limits = (0.0, 1.0)
            target = existing
            log.info("replaced the data of layer %r", name)
        else:
            index = None
            if existing is not None:
                index = list(self._viewer.layers).index(existing)
                self._viewer.layers.remove(existing)
            if kind is Labels:
                target = self._viewer.add_labels(result, name=name, metadata=metadata, **kwargs)
            else:
                target = self._viewer.add_image(result, name=name, metadata=metadata, colormap="magma",
                                                contrast_limits=(0.0, 1.0), **kwargs)
            target = _unwrap(target)
            if index is not None:
                self._viewer.layers.move(list(self._viewer.layers).index(target), index)
        self.result_layer = target
        settings.add_recent_model(job.model_path)
        if kind is Labels and job.output == "instances":
            summary = f"{int(result.max()) if result.size else 0} objects"
        else:
            summary = f"shape {tuple(result.shape)}"
        self._status.value = _wrap(f"done: {name!r}, {summary}")
        self.last_console_call = console_call(job)
        log.info("equivalent console call: %s", self.last_console_call)
        show_info(f"Segment with U-Net: {name!r} ({summary}). Console equivalent: {self.last_console_call}")

    # ------------------------------------------------------------------ GUI callbacks
    def _on_run_clicked(self, *_: Any) -> None:
        self.run()

    def _toggle_advanced(self, checked: bool) -> None:
        self._advanced.visible = bool(checked)

    def _on_browse(self, value: Any) -> None:
        if not value or os.fspath(value) in ("", ".") or os.path.isdir(value):
            return
        try:
            self.set_model(value)
        except (ValueError, OSError) as exc:
            message = error_message(exc, "Cannot use this model file")
            log.error("%s", message)
            show_error(message)

    def _on_layers_inserted(self, event: Any) -> None:
        layer = getattr(event, "value", None)
        if layer is not None:
            layer.events.name.connect(self._on_layers_changed)
        self._on_layers_changed()

    def _on_layers_changed(self, *_: Any) -> None:
        self._image.reset_choices()
        self._refresh_extra()
        self._update_axes_info()

    def _refresh_extra(self) -> None:
        """Update the extra channel layer list; hide it when no layer qualifies."""
        self._extra.reset_choices()
        self._extra.visible = bool(self._extra.choices)

    def _on_active_layer(self, event: Any) -> None:
        layer = getattr(event, "value", None)
        if layer is None or not isinstance(layer, Image) or _is_result_layer(layer):
            return
        layer = _unwrap(layer)
        self._image.reset_choices()
        if any(choice is layer for choice in self._image.choices):
            self._image.value = layer

    def _on_image_changed(self, *_: Any) -> None:
        layer = self._image.value
        if layer is not self._watched_layer:
            old = self._watched_layer
            if old is not None:
                for name in ("data", "metadata"):
                    emitter = getattr(old.events, name, None)
                    if emitter is not None:
                        emitter.disconnect(self._update_axes_info)
                if self._axes.value:
                    self._axes.value = ""
            if layer is not None:
                for name in ("data", "metadata"):
                    emitter = getattr(layer.events, name, None)
                    if emitter is not None:
                        emitter.connect(self._update_axes_info)
            self._watched_layer = layer
        self._refresh_extra()
        self._update_axes_info()

    def _on_model_changed(self, *_: Any) -> None:
        path = self._model.value
        if not path:
            self._model_info.value = _wrap("No model yet: add a model file with Browse…")
            self._model_info.tooltip = None
        else:
            try:
                info = self._model_info_for(path)
                self._model_info.value = _wrap(model_summary(info))
                self._model_info.tooltip = describe_model(path)
            except (ValueError, OSError) as exc:
                self._model_info.value = _wrap(f"⚠ {error_message(exc)}")
                self._model_info.tooltip = None
        self._update_axes_info()

    def _update_axes_info(self, *_: Any) -> None:
        """Show how the layer will be read: with a model, ``plan_layout(...).describe()``."""
        try:
            source = self._input()
        except (ValueError, TypeError) as exc:
            self._axes_info.value = _wrap(f"⚠ {error_message(exc)}")
            return
        text = source.describe()
        path = self._model.value
        if path:
            try:
                info = self._model_info_for(path)
                layout = self._plan(source, info, parse_channels(self._channels.value))
            except (ValueError, TypeError, OSError) as exc:
                text = f"{text}\n⚠ {error_message(exc)}"
            else:
                text = f"{layout.describe()}\n({_AXES_ORIGIN[source.origin]}"
                text += f"; {len(source.extra_layers) + 1} layers stacked as C)" if source.extra_layers else ")"
                if source.note:
                    text += f"\n{source.note}"
        self._axes_info.value = _wrap(text)


def _wrap(text: str, width: int = 48) -> str:
    """Break each line of ``text`` at ``width`` characters (labels are not word-wrapped by Qt)."""
    return "\n".join(
        "\n".join(textwrap.wrap(line, width, break_long_words=True, break_on_hyphens=False)) or line
        for line in text.splitlines()
    )


def _unwrap(obj: Any) -> Any:
    """The napari object behind a ``PublicOnlyProxy`` (plugin widgets get proxies; identity
    checks and Qt item data need the real layer)."""
    return getattr(obj, "__wrapped__", obj)

