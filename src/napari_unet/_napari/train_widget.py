"""The "Train U-Net" dock widget: a thin form over :func:`napari_unet.core.training.loop.iter_train`.

The widget collects options (training pairs from layers or folders, architecture, optimisation,
output file), starts a worker (:func:`~napari_unet._napari.workers.start_worker`) over
``iter_train`` and turns its events into live curves, a status line and a preview Labels
layer. See ``docs/train-widget.md`` for the user's view.

Nothing here imports torch (``iter_train`` is imported inside the worker thread) and
matplotlib is only imported when a widget is built.

How a finished model reaches the Segment widget: the saved file is put first in the recent
model list (:func:`~napari_unet._napari.settings.add_recent_model`), and every Segment widget
docked in the same viewer (found among ``viewer.window.dock_widgets`` by its class name and
its public ``set_model`` method, so this module does not import the Segment widget's module)
gets ``set_model(path)``: its model list is refreshed and the new model selected.
"""

from __future__ import annotations

import logging
import math
import os
import pathlib
import re
import textwrap
import time
import warnings
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from typing import Any

import napari.viewer
import numpy as np
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FileEdit,
    FloatSpinBox,
    Label,
    LineEdit,
    PushButton,
    RadioButtons,
    SpinBox,
)
from napari.layers import Image, Labels
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import Qt, QTimer
from qtpy.QtWidgets import QSizePolicy

from ..core.axes import AxesGuessWarning, guess_axes, plan_layout, validate_axes
from ..core.io import file_stem
from ..core.training.data import TRAIN_MODES, pairs_from_folders
from . import settings
from .workers import UNetWorker, error_message, start_worker

__all__ = [
    "DEVICES",
    "INSTANCE_CLASS_NAMES",
    "PREVIEW_KEY",
    "LayerData",
    "TrainHistory",
    "TrainJob",
    "TrainProgress",
    "TrainWidget",
    "default_output",
    "last_checkpoint_paths",
    "offer_in_segment_widgets",
    "run_training",
]

log = logging.getLogger(__name__)

#: Device names offered by the Device box (static: listing GPUs would import torch).
DEVICES = ("auto", "cpu", "cuda", "mps")
#: The classes an instance model learns (mirrors ``core.training.targets.INSTANCE_CLASSES``).
INSTANCE_CLASS_NAMES = ("background", "interior", "boundary")
#: Metadata key marking the preview Labels layer (value: the name of the image it previews).
PREVIEW_KEY = "napari_unet_training_preview"
#: Folder of the default output file.
DEFAULT_MODEL_DIR = pathlib.Path("~") / "napari-unet-models"
#: Labels layers larger than this many pixels are subsampled to list their values.
_CLASS_SAMPLE = 1 << 22
#: Smallest interval between two redraws of the curves on step events (seconds).
_REDRAW_INTERVAL_S = 0.5


# ---------------------------------------------------------------------------- pure helpers
def default_output(name: str) -> pathlib.Path:
    """The default model file for training on ``name``: ``~/napari-unet-models/<name>.safetensors``.

    Characters that are awkward in file names are replaced by ``_``.
    """
    safe = re.sub(r"[^\w.-]+", "_", name).strip("._") or "model"
    return DEFAULT_MODEL_DIR.expanduser() / f"{safe}.safetensors"


def last_checkpoint_paths(output: str | os.PathLike) -> tuple[pathlib.Path, pathlib.Path]:
    """``(<stem>.last.safetensors, <stem>.last.state.safetensors)`` beside ``output``.

    The same names as ``core.training.loop.last_paths`` (not imported: that module imports torch).
    """
    output = pathlib.Path(output)
    stem = output.name[: -len(".safetensors")] if output.name.endswith(".safetensors") else output.stem
    return output.with_name(stem + ".last.safetensors"), output.with_name(stem + ".last.state.safetensors")


def layer_axes(layer: Image) -> str:
    """Axes of ``layer``'s data: ``metadata["axes"]`` when it fits, ``...YXS`` for RGB, ``YX`` for 2D, else guessed."""
    shape = tuple(_level0(layer).shape)
    recorded = (layer.metadata or {}).get("axes")
    if isinstance(recorded, str) and recorded:
        try:
            return validate_axes(recorded, shape)
        except ValueError:
            log.info("layer %r: metadata axes %r ignored (shape %s)", layer.name, recorded, shape)
    if getattr(layer, "rgb", False) and 3 <= len(shape) <= 4:
        return "TYXS"[-len(shape):]
    if len(shape) == 2:
        return "YX"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AxesGuessWarning)
        return guess_axes(shape)


def _level0(layer: Any) -> Any:
    """Full-resolution data of a layer (level 0 of a multiscale layer)."""
    return layer.data[0] if getattr(layer, "multiscale", False) else layer.data


def _channel_count(shape: Sequence[int], axes: str) -> int:
    """Channels the core feeds for an image (all of ``C``; RGB ``S`` becomes one gray channel)."""
    sizes = dict(zip(axes, shape))
    return int(sizes["C"]) if sizes.get("C", 1) > 1 else 1


def label_values(data: Any, limit: int = _CLASS_SAMPLE) -> tuple[np.ndarray, bool]:
    """Values found in a labels array, cheaply.

    Parameters
    ----------
    data : array-like or list of arrays
        A labels layer's data (a multiscale list: its smallest level is used).
    limit : int
        Arrays with more pixels are read with a stride in every axis (about ``limit`` pixels).

    Returns
    -------
    (ndarray, bool)
        The sorted unique values and whether they come from a subsample.
    """
    if isinstance(data, (list, tuple)):
        data = data[-1]
    size = int(np.prod(data.shape)) if data.shape else 1
    sampled = size > limit
    if sampled:
        step = int(math.ceil((size / limit) ** (1.0 / max(1, len(data.shape)))))
        data = data[tuple(slice(None, None, step) for _ in data.shape)]
    return np.unique(np.asarray(data)), sampled


def _format_duration(seconds: float) -> str:
    seconds = max(0.0, float(seconds))
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min {int(seconds % 60):02d} s"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"


def _wrap(text: str, width: int = 48) -> str:
    """Break each line at ``width`` characters (labels in napari's dock are not word-wrapped)."""
    return "\n".join(
        "\n".join(textwrap.wrap(line, width, break_long_words=True, break_on_hyphens=False)) or line
        for line in str(text).splitlines()
    )


def _unwrap(obj: Any) -> Any:
    """The object behind napari's ``PublicOnlyProxy`` (plugin widgets get proxies)."""
    return getattr(obj, "__wrapped__", obj)


def _path_or_none(value: Any) -> pathlib.Path | None:
    """A FileEdit value as a path, or None when blank."""
    if value is None:
        return None
    text = os.fspath(value).strip()
    if text in ("", "."):
        return None
    return pathlib.Path(text).expanduser()


def _docked_widgets(viewer: Any) -> list[Any]:
    """The inner widgets docked in ``viewer``'s window (empty without a window)."""
    window = getattr(viewer, "window", None)
    if window is None:
        return []
    try:
        mapping = window.dock_widgets  # napari >= 0.6.2
    except AttributeError:
        qt_window = getattr(window, "_qt_window", None)
        mapping = getattr(qt_window, "_wrapped_dock_widgets", None) or {}
        return [w for dock in mapping.values() if (w := getattr(dock, "inner_widget", None)) is not None]
    except Exception:  # noqa: BLE001 - a closed window
        return []
    return list(mapping.values())


def offer_in_segment_widgets(viewer: Any, path: str | os.PathLike) -> int:
    """Select the model file ``path`` in every Segment widget docked in ``viewer``.

    A Segment widget is recognised by its class name (``SegmentWidget``) and its public
    ``set_model(path)`` method, which refreshes its model list, selects ``path`` and adds it to
    the recent models.

    Returns
    -------
    int
        How many Segment widgets now show the model.
    """
    count = 0
    for widget in _docked_widgets(viewer):
        inner = _unwrap(widget)
        setter = getattr(inner, "set_model", None)
        if type(inner).__name__ != "SegmentWidget" or not callable(setter):
            continue
        try:
            setter(os.fspath(path))
        except Exception as exc:  # noqa: BLE001 - the model was saved; only the offer failed
            log.warning("could not select %s in the Segment widget: %s", path, exc)
        else:
            count += 1
    return count


# ---------------------------------------------------------------------------- job and worker
@dataclass(frozen=True)
class LayerData:
    """An image layer's data with its axes, handed to the core in place of the layer.

    Duck-typed like a napari layer (``data``, ``name``, ``metadata``) so the core reads the
    axes from ``metadata["axes"]`` and names it ``layer '<name>'`` in its messages, without
    the worker thread touching the layer itself.
    """

    data: Any
    name: str
    metadata: dict[str, Any]


@dataclass(frozen=True)
class TrainJob:
    """Everything one training run needs; built in the main thread, consumed by the worker.

    Attributes
    ----------
    pairs : list of (image, labels)
        :class:`LayerData` + labels array, or (image path, mask path).
    val_pairs : list or None
        Explicit validation pairs ("use the last pair for validation"); else ``options["val_fraction"]``.
    output : pathlib.Path
        The best model's file; ``<stem>.last.safetensors`` goes beside it.
    options : dict
        Keyword options of ``iter_train`` (besides pairs, val_pairs and output).
    preview_layer : napari.layers.Image or None
        The image previewed every ``options["preview_every"]`` epochs.
    preview_axes : str
        Axes of ``preview_layer``'s data.
    metric_name : str
        ``"AP50"`` (instances) or ``"mIoU"`` (semantic).
    """

    pairs: list[tuple[Any, Any]]
    val_pairs: list[tuple[Any, Any]] | None
    output: pathlib.Path
    options: dict[str, Any]
    preview_layer: Image | None = None
    preview_axes: str = ""
    metric_name: str = "AP50"

    @property
    def has_validation(self) -> bool:
        """Whether a validation set will exist (explicit pairs, or a fraction of at least 2 samples)."""
        return bool(self.val_pairs) or float(self.options.get("val_fraction", 0)) > 0


@dataclass(frozen=True)
class TrainProgress:
    """A :class:`~napari_unet.core.training.loop.TrainEvent` seen by the progress bar.

    :func:`~napari_unet._napari.workers.start_worker` reads ``step``, ``total``, ``stage``
    and ``message``; the original event is :attr:`event`.
    """

    event: Any

    @property
    def kind(self) -> str:
        return str(self.event.kind)

    @property
    def step(self) -> int:
        return int(self.event.step)

    @property
    def total(self) -> int:
        return int(self.event.total_steps)

    @property
    def stage(self) -> str:
        return "preparing" if self.kind == "start" else "training"

    @property
    def message(self) -> str:
        ev = self.event
        if ev.message:
            return str(ev.message)
        if self.kind == "step" and ev.loss is not None:
            return f"epoch {ev.epoch}/{ev.epochs}, step {ev.step}/{ev.total_steps}, loss {ev.loss:.4f}"
        if self.kind == "preview":
            return f"epoch {ev.epoch}/{ev.epochs}: preview"
        return self.kind


def run_training(job: TrainJob) -> Generator[TrainProgress, None, Any]:
    """The worker's generator: ``iter_train`` with its events wrapped for the progress bar.

    Runs in the worker thread; this is where torch gets imported. Closing this generator
    (Stop) closes ``iter_train``, which stops within one step and keeps its checkpoints.

    Returns
    -------
    napari_unet.core.model.UNet
        The trained model (the best checkpoint's weights when there is a validation set).
    """
    from ..core.training.loop import iter_train

    gen = iter_train(job.pairs, val_pairs=job.val_pairs, output=job.output, **job.options)
    try:
        while True:
            try:
                event = next(gen)
            except StopIteration as stop:
                return stop.value
            yield TrainProgress(event)
    finally:
        gen.close()


# ---------------------------------------------------------------------------- curves
@dataclass
class TrainHistory:
    """The curve data of the current (or last) run, as shown in the widget.

    Attributes
    ----------
    steps, step_losses, smoothed : list
        Optimiser step, that step's training loss (recovered from the epoch's running mean)
        and its exponential moving average (bias-corrected, weight 0.1).
    epochs, epoch_steps, epoch_losses, val_losses, val_metrics : list
        Per epoch: epoch number, its last step, mean training loss, validation loss and
        validation metric (None without a validation set).
    metric_name : str
        ``"AP50"`` or ``"mIoU"``.
    """

    steps: list[int] = field(default_factory=list)
    step_losses: list[float] = field(default_factory=list)
    smoothed: list[float] = field(default_factory=list)
    epochs: list[int] = field(default_factory=list)
    epoch_steps: list[int] = field(default_factory=list)
    epoch_losses: list[float] = field(default_factory=list)
    val_losses: list[float | None] = field(default_factory=list)
    val_metrics: list[float | None] = field(default_factory=list)
    metric_name: str = "AP50"
    _epoch: int = -1
    _epoch_count: int = 0
    _epoch_sum: float = 0.0
    _ema: float = 0.0
    _ema_weight: float = 0.0

    def add_step(self, epoch: int, step: int, running_mean: float) -> None:
        """Record a step event (``running_mean`` is the mean loss of the epoch so far)."""
        if epoch != self._epoch:
            self._epoch, self._epoch_count, self._epoch_sum = epoch, 0, 0.0
        self._epoch_count += 1
        total = running_mean * self._epoch_count
        loss = total - self._epoch_sum
        self._epoch_sum = total
        self._ema = 0.9 * self._ema + 0.1 * loss
        self._ema_weight = 0.9 * self._ema_weight + 0.1
        self.steps.append(int(step))
        self.step_losses.append(float(loss))
        self.smoothed.append(float(self._ema / self._ema_weight))

    def add_epoch(self, epoch: int, step: int, loss: float | None, val_loss: float | None,
                  metric: float | None) -> None:
        """Record an epoch event."""
        self.epochs.append(int(epoch))
        self.epoch_steps.append(int(step))
        self.epoch_losses.append(float("nan") if loss is None else float(loss))
        self.val_losses.append(None if val_loss is None else float(val_loss))
        self.val_metrics.append(None if metric is None else float(metric))

    def best_metric(self) -> float | None:
        """The best validation metric so far, or None."""
        values = [v for v in self.val_metrics if v is not None]
        return max(values) if values else None


class _CurvePlot:
    """A matplotlib figure embedded in a magicgui Container: loss per step, metric per epoch.

    When matplotlib is missing the container shows a hint instead; the data is still kept.
    """

    def __init__(self) -> None:
        self.container = Container(name="curves", labels=False)
        self.container.margins = (0, 0, 0, 0)
        self.draw_count = 0
        self.canvas: Any = None
        self._history: TrainHistory | None = None
        self._last_draw = 0.0
        try:
            from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
            from matplotlib.figure import Figure
        except ImportError:
            self.container.append(Label(value="Install matplotlib to see the training curves."))
            return
        fig = Figure(figsize=(3.6, 3.4), layout="constrained")
        self.canvas = FigureCanvasQTAgg(fig)
        self.canvas.setMinimumHeight(240)
        self.canvas.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        bg, fg = _theme_colors(self.canvas)
        fig.set_facecolor(bg)
        self.ax_loss = fig.add_subplot(2, 1, 1)
        self.ax_metric = fig.add_subplot(2, 1, 2)
        for ax in (self.ax_loss, self.ax_metric):
            ax.set_facecolor(bg)
            ax.tick_params(colors=fg, labelsize=7)
            for spine in ax.spines.values():
                spine.set_color(fg)
            ax.xaxis.label.set_color(fg)
            ax.yaxis.label.set_color(fg)
            ax.xaxis.label.set_size(8)
            ax.yaxis.label.set_size(8)
        self.ax_loss.set_xlabel("step")
        self.ax_loss.set_ylabel("loss")
        self.ax_metric.set_xlabel("epoch")
        (self.line_step,) = self.ax_loss.plot([], [], color="#1f77b4", alpha=0.3, lw=0.8, label="train (step)")
        (self.line_smooth,) = self.ax_loss.plot([], [], color="#1f77b4", lw=1.5, label="train (smoothed)")
        (self.line_val,) = self.ax_loss.plot([], [], "o-", color="#ff7f0e", ms=3, lw=1.2, label="validation")
        (self.line_metric,) = self.ax_metric.plot([], [], "o-", color="#2ca02c", ms=3, lw=1.2)
        self.ax_loss.legend(fontsize=7, loc="upper right", framealpha=0.6, facecolor=bg, edgecolor=fg, labelcolor=fg)
        self.canvas.mpl_connect("draw_event", self._on_draw)
        self._timer = QTimer(self.canvas)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self._draw_now)
        self.container.native.layout().addWidget(self.canvas)

    def _on_draw(self, _event: Any) -> None:
        self.draw_count += 1

    def update(self, history: TrainHistory, force: bool = True) -> None:
        """Redraw from ``history``: now when ``force``, else at most every 0.5 s.

        A throttled update that cannot draw now schedules one, so the latest data is always
        drawn shortly after it arrived, however fast events come.
        """
        self._history = history
        if self.canvas is None:
            return
        wait = _REDRAW_INTERVAL_S - (time.perf_counter() - self._last_draw)
        if force or wait <= 0:
            self._timer.stop()
            self._draw_now()
        elif not self._timer.isActive():
            self._timer.start(int(wait * 1000) + 1)

    def _draw_now(self) -> None:
        history = self._history
        if self.canvas is None or history is None:
            return
        self._last_draw = time.perf_counter()
        self.line_step.set_data(history.steps, history.step_losses)
        self.line_smooth.set_data(history.steps, history.smoothed)
        val = [(s, v) for s, v in zip(history.epoch_steps, history.val_losses) if v is not None]
        self.line_val.set_data([s for s, _ in val], [v for _, v in val])
        metric = [(e, v) for e, v in zip(history.epochs, history.val_metrics) if v is not None]
        self.line_metric.set_data([e for e, _ in metric], [v for _, v in metric])
        self.ax_metric.set_ylabel(f"val {history.metric_name}")
        for ax in (self.ax_loss, self.ax_metric):
            ax.relim()
            ax.autoscale_view()
        if metric:
            self.ax_metric.set_ylim(0.0, 1.02)
        self.canvas.draw()


# ---------------------------------------------------------------------------- the widget
class TrainWidget(Container):
    """Dock widget: train a U-Net on image/labels layer pairs or on folders of TIFFs.

    Parameters
    ----------
    viewer : napari.viewer.Viewer
        The viewer (injected by napari when opened from the Plugins menu).

    Notes
    -----
    **Threads.** Start runs :func:`run_training` in a worker (see
    :mod:`napari_unet._napari.workers`); the Qt event loop is never blocked and torch is only
    imported inside the worker. Stop calls ``worker.quit()``: training stops within one step
    and the checkpoints written so far stay on disk.

    **Preview.** Every *Preview every* epochs the current model segments the first pair's
    image (folder mode: the active Image layer) into a Labels layer ``"<image> preview"``
    with the image's scale and translate, whose data is replaced in place.

    Attributes
    ----------
    history : TrainHistory
        Curve data of the current or last run.
    preview_layer : napari.layers.Labels or None
        The preview layer.
    preview_history : list of napari.layers.Labels
        The layer updated at each preview event of the last run (the same object each time).
    last_event : object or None
        The last :class:`~napari_unet.core.training.loop.TrainEvent` received.
    saved_path : pathlib.Path or None
        The model file of the last run that finished.
    best_metric : float or None
        Its best validation metric.
    """

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__(labels=False)
        self._viewer = viewer
        self._worker: UNetWorker | None = None
        self._job: TrainJob | None = None
        self._rows: list[tuple[Container, ComboBox, ComboBox]] = []
        self._watched_labels: list[Labels] = []
        self._auto_output: pathlib.Path | None = None
        self._rate_origin: tuple[int, float] | None = None
        self._last_epoch_event: Any = None
        self._stopping = False
        self.history = TrainHistory()
        self.preview_layer: Labels | None = None
        self.preview_history: list[Labels] = []
        self.last_event: Any = None
        self.saved_path: pathlib.Path | None = None
        self.best_metric: float | None = None

        # -- data
        self._source = RadioButtons(name="source", label="Data from", choices=["layers", "folders"],
                                    value="layers", orientation="horizontal",
                                    tooltip="Image + Labels layer pairs of this viewer, or two folders of TIFFs.")
        self._pairs_box = Container(name="pairs", labels=False)
        self._pairs_box.margins = (0, 0, 0, 0)
        self._add_pair_button = PushButton(name="add_pair", text="+ pair")
        self._remove_pair_button = PushButton(name="remove_pair", text="− pair")
        self._pair_buttons = Container(name="pair_buttons", layout="horizontal", labels=False,
                                       widgets=[self._add_pair_button, self._remove_pair_button])
        self._pair_buttons.margins = (0, 0, 0, 0)
        self._images_dir = FileEdit(name="images_dir", label="Images folder", mode="d",
                                    tooltip="Folder of .tif/.tiff images.")
        self._masks_dir = FileEdit(name="masks_dir", label="Masks folder", mode="d",
                                   tooltip="Folder of label TIFFs: a.tif pairs with a.tif, a_mask.tif, a_masks.tif, "
                                           "a_labels.tif or a_label.tif.")
        self._folders_box = Container(name="folders", labels=True, widgets=[self._images_dir, self._masks_dir])
        self._folders_box.margins = (0, 0, 0, 0)
        self._val_last = CheckBox(name="val_last", text="Use the last pair for validation", value=False,
                                  tooltip="Validate on the last pair (folder mode: the last image by name) "
                                          "instead of a random fraction of the planes.")
        self._val_fraction = FloatSpinBox(name="val_fraction", label="Validation fraction", min=0.0, max=0.9,
                                          step=0.05, value=0.15,
                                          tooltip="Share of the planes held out for validation (seeded); 0: none.")
        self._classes = Label(name="classes", label="Classes")
        self._data_options = Container(name="data_options", labels=True,
                                       widgets=[self._val_fraction, self._classes])
        self._data_options.margins = (0, 0, 0, 0)

        # -- model
        self._mode = ComboBox(name="mode", label="Mode", choices=list(TRAIN_MODES), value="instances",
                              tooltip="instances: objects that touch (background / interior / boundary); "
                                      "semantic: the label values are classes.")
        self._depth = SpinBox(name="depth", label="Depth", min=1, max=7, value=4,
                              tooltip="Down-sampling levels of a new U-Net; patch size must be a multiple of "
                                      "2**depth.")
        self._base_features = SpinBox(name="base_features", label="Base features", min=2, max=512, value=32,
                                      tooltip="Feature maps at the first level (doubled at each level).")
        self._fine_tune = FileEdit(name="fine_tune", label="Fine-tune from", mode="r", filter="*.safetensors",
                                   tooltip="Optional: start from this model file (its architecture, channels, "
                                           "classes and normalisation are kept).")
        self._resume = CheckBox(name="resume", text="Resume the run saved at the output file", value=False,
                                tooltip="Continue from <output>.last.safetensors and its optimiser state.")
        self._model_box = Container(name="model_box", labels=True,
                                    widgets=[self._mode, self._depth, self._base_features, self._fine_tune])
        self._model_box.margins = (0, 0, 0, 0)

        # -- training
        self._epochs = SpinBox(name="epochs", label="Epochs", min=1, max=100000, value=50)
        self._steps = SpinBox(name="steps_per_epoch", label="Steps per epoch (0 = auto)", min=0, max=100000,
                              value=0, tooltip="Automatic: about one pass over the training pixels (10…200).")
        self._patch = SpinBox(name="patch_size", label="Patch size", min=8, max=4096, step=16, value=256)
        self._batch = SpinBox(name="batch_size", label="Batch size", min=1, max=1024, value=8)
        self._lr = LineEdit(name="lr", label="Learning rate", value="0.001",
                            tooltip="Peak learning rate of AdamW (warm-up, then cosine decay).")
        self._device = ComboBox(name="device", label="Device", choices=list(DEVICES), value="auto",
                                tooltip="auto: CUDA GPU, else Apple MPS, else CPU.")
        self._seed = SpinBox(name="seed", label="Seed", min=0, max=2**31 - 1, value=0)
        self._patience = SpinBox(name="patience", label="Patience (0 = off)", min=0, max=100000, value=0,
                                 tooltip="Stop after this many epochs without a better validation score.")
        self._preview_every = SpinBox(name="preview_every", label="Preview every N epochs (0 = off)", min=0,
                                      max=100000, value=1)
        self._augmentation = CheckBox(name="augmentation", text="Augmentation (flips, rotations, intensity)",
                                      value=True)
        self._training_box = Container(name="training_box", labels=True, widgets=[
            self._epochs, self._steps, self._patch, self._batch, self._lr, self._device, self._seed,
            self._patience, self._preview_every,
        ])
        self._training_box.margins = (0, 0, 0, 0)

        # -- output and run
        self._output = FileEdit(name="output", label="Save model to", mode="w", filter="*.safetensors",
                                tooltip="The best model goes here; <name>.last.safetensors (last epoch) beside it.")
        self._output_box = Container(name="output_box", labels=True, widgets=[self._output])
        self._output_box.margins = (0, 0, 0, 0)
        self._start_button = PushButton(name="start_button", text="Start")
        self._stop_button = PushButton(name="stop_button", text="Stop", enabled=False)
        self._buttons = Container(name="buttons", layout="horizontal", labels=False,
                                  widgets=[self._start_button, self._stop_button])
        self._buttons.margins = (0, 0, 0, 0)
        self._status = Label(name="status", value="idle")
        self._plot = _CurvePlot()

        self.extend([
            _heading("Data"), self._source, self._pairs_box, self._pair_buttons, self._folders_box,
            self._val_last, self._data_options,
            _heading("Model"), self._model_box, self._resume,
            _heading("Training"), self._training_box, self._augmentation,
            _heading("Output"), self._output_box,
            self._buttons, self._status, self._plot.container,
        ])
        for label in (self._classes, self._status):
            label.native.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
            label.native.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
            label.native.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self._folders_box.visible = False

        self._controls: dict[str, Any] = {
            "source": self._source, "images_dir": self._images_dir, "masks_dir": self._masks_dir,
            "val_last": self._val_last, "val_fraction": self._val_fraction, "mode": self._mode,
            "depth": self._depth, "base_features": self._base_features, "fine_tune": self._fine_tune,
            "resume": self._resume, "epochs": self._epochs, "steps_per_epoch": self._steps,
            "patch_size": self._patch, "batch_size": self._batch, "lr": self._lr, "device": self._device,
            "seed": self._seed, "patience": self._patience, "preview_every": self._preview_every,
            "augmentation": self._augmentation, "output": self._output,
        }

        # labels painted or replaced: recount the classes a moment later
        self._classes_timer = QTimer(self.native)
        self._classes_timer.setSingleShot(True)
        self._classes_timer.setInterval(300)
        self._classes_timer.timeout.connect(self._update_classes)

        # -- connections
        self._source.changed.connect(self._on_source_changed)
        self._add_pair_button.changed.connect(self._on_add_pair_clicked)
        self._remove_pair_button.changed.connect(self._on_remove_pair_clicked)
        self._val_last.changed.connect(self._on_val_last_changed)
        self._mode.changed.connect(self._update_classes)
        self._images_dir.changed.connect(self._on_inputs_changed)
        self._masks_dir.changed.connect(self._update_classes)
        self._output.changed.connect(self._on_output_edited)
        self._start_button.changed.connect(self._on_start_clicked)
        self._stop_button.changed.connect(self.stop)
        layer_events = viewer.layers.events
        layer_events.inserted.connect(self._on_layers_inserted)
        layer_events.removed.connect(self._on_layers_changed)
        layer_events.moved.connect(self._on_layers_changed)
        for layer in viewer.layers:
            layer.events.name.connect(self._on_layers_changed)

        self.add_pair()

    # ------------------------------------------------------------------ choices
    def _image_layers(self) -> list[Image]:
        return [_unwrap(layer) for layer in self._viewer.layers if isinstance(layer, Image)]

    def _labels_layers(self) -> list[Labels]:
        return [
            _unwrap(layer) for layer in self._viewer.layers
            if isinstance(layer, Labels) and not (layer.metadata or {}).get(PREVIEW_KEY)
        ]

    def _image_choices(self, _widget: Any = None) -> list[tuple[str, Image]]:
        return [(layer.name, layer) for layer in self._image_layers()]

    def _labels_choices(self, _widget: Any = None) -> list[tuple[str, Labels]]:
        return [(layer.name, layer) for layer in self._labels_layers()]

    @staticmethod
    def _expected_labels_shape(image: Image) -> tuple[int, ...] | None:
        try:
            axes = layer_axes(image)
        except ValueError:
            return None
        shape = tuple(int(n) for n in _level0(image).shape)
        return tuple(n for a, n in zip(axes, shape) if a not in "CS")

    def _pick_labels(self, image: Image | None, exclude: Sequence[Any] = ()) -> Labels | None:
        """The first Labels layer whose shape fits ``image`` (preferring ones not in ``exclude``)."""
        layers = self._labels_layers()
        if image is not None:
            expected = self._expected_labels_shape(image)
            fitting = [lay for lay in layers if tuple(_level0(lay).shape) == expected]
        else:
            fitting = layers
        free = [lay for lay in fitting if not any(lay is e for e in exclude)]
        return (free or fitting or [None])[0]

    # ------------------------------------------------------------------ pairs
    @property
    def pairs(self) -> list[tuple[Image | None, Labels | None]]:
        """The (image layer, labels layer) chosen in each row."""
        return [(img.value, lab.value) for _, img, lab in self._rows]

    def add_pair(self, image: Image | None = None, labels: Labels | None = None) -> None:
        """Add a row of (Image, Labels) boxes.

        Without arguments the row starts on the first image layer not used in another row
        and the first labels layer of that image's shape (likewise not used, if possible).
        """
        used_images = [img.value for _, img, _ in self._rows]
        used_labels = [lab.value for _, _, lab in self._rows]
        image_box = ComboBox(name="image", choices=self._image_choices, tooltip="Image layer")
        labels_box = ComboBox(name="labels", choices=self._labels_choices, tooltip="Labels layer of that image")
        row = Container(name=f"pair_{len(self._rows)}", layout="horizontal", labels=False,
                        widgets=[image_box, labels_box])
        row.margins = (0, 0, 0, 0)
        self._rows.append((row, image_box, labels_box))
        self._pairs_box.append(row)
        if image is None:
            layers = self._image_layers()
            image = next((lay for lay in layers if not any(lay is u for u in used_images)), None)
            image = image if image is not None else (layers[0] if layers else None)
        if image is not None:
            image_box.value = _unwrap(image)
        if labels is None:
            labels = self._pick_labels(image_box.value, used_labels)
        if labels is not None:
            labels_box.value = _unwrap(labels)
        image_box.changed.connect(lambda *_: self._on_row_image_changed(image_box, labels_box))
        labels_box.changed.connect(self._on_labels_choice_changed)
        self._remove_pair_button.enabled = len(self._rows) > 1
        self._on_inputs_changed()

    def remove_pair(self) -> None:
        """Remove the last row (one row always stays)."""
        if len(self._rows) <= 1:
            return
        row, _, _ = self._rows.pop()
        self._pairs_box.remove(row)
        self._remove_pair_button.enabled = len(self._rows) > 1
        self._on_inputs_changed()

    def set_pair(self, index: int, image: Image, labels: Labels) -> None:
        """Choose ``image`` and ``labels`` in row ``index`` (rows are added as needed)."""
        while len(self._rows) <= index:
            self.add_pair()
        _, image_box, labels_box = self._rows[index]
        image_box.reset_choices()
        labels_box.reset_choices()
        image_box.value = _unwrap(image)
        labels_box.value = _unwrap(labels)

    # ------------------------------------------------------------------ public API
    @property
    def running(self) -> bool:
        """Whether training is in progress."""
        return self._worker is not None

    @property
    def worker(self) -> UNetWorker | None:
        """The running worker, if any."""
        return self._worker

    @property
    def status(self) -> str:
        """The status text (line breaks folded)."""
        return " ".join(str(self._status.value).split())

    @property
    def classes_text(self) -> str:
        """The Classes line (line breaks folded)."""
        return " ".join(str(self._classes.value).split())

    @property
    def plot_draw_count(self) -> int:
        """How many times the curves were drawn (0 without matplotlib)."""
        return self._plot.draw_count

    @property
    def output_path(self) -> pathlib.Path | None:
        """The output file as typed (None when blank)."""
        return _path_or_none(self._output.value)

    def configure(self, **options: Any) -> None:
        """Set controls by name, e.g. ``configure(epochs=5, patch_size=64, output="m.safetensors")``.

        Names: ``source`` ("layers"/"folders"), ``images_dir``, ``masks_dir``, ``val_last``,
        ``val_fraction``, ``mode``, ``depth``, ``base_features``, ``fine_tune``, ``resume``,
        ``epochs``, ``steps_per_epoch``, ``patch_size``, ``batch_size``, ``lr``, ``device``,
        ``seed``, ``patience``, ``preview_every``, ``augmentation``, ``output``.

        Raises
        ------
        KeyError
            For an unknown name.
        """
        unknown = sorted(set(options) - set(self._controls))
        if unknown:
            raise KeyError(f"unknown option(s) {unknown}; known: {sorted(self._controls)}")
        for name, value in options.items():
            if name == "lr":
                value = str(value)
            elif name in ("output", "fine_tune", "images_dir", "masks_dir") and value is None:
                value = ""
            self._controls[name].value = value

    def options(self) -> dict[str, Any]:
        """The current value of every control (see :meth:`configure`)."""
        return {name: widget.value for name, widget in self._controls.items()}

    def start(self) -> UNetWorker | None:
        """Start training with the current options.

        Problems found before starting (no pairs, labels of the wrong shape, a bad output
        path, a bad learning rate…) are shown with ``show_error`` and nothing starts. Problems
        the core finds while preparing the data (empty labels, a single class…) end the run
        with one error notification.

        Returns
        -------
        UNetWorker or None
            The started worker (``worker.finished`` tells when it is done), or None.
        """
        if self._worker is not None:
            show_info("Train U-Net is already running; stop it first")
            return None
        try:
            job = self._make_job()
        except (ValueError, TypeError, OSError) as exc:
            message = error_message(exc, "Train U-Net")
            log.error("%s", message)
            show_error(message)
            self._status.value = _wrap(f"not started: {error_message(exc)}")
            return None
        self._job = job
        self.history = TrainHistory(metric_name=job.metric_name)
        self.preview_history = []
        self.last_event = None
        self.saved_path = None
        self.best_metric = None
        self._rate_origin = None
        self._last_epoch_event = None
        self._stopping = False
        self._plot.update(self.history)
        note = ""
        if job.output.exists() and not job.options["resume"]:
            note = f"\n({job.output.name} exists: replaced when the first epoch ends)"
        self._status.value = _wrap("starting…" + note)
        self._set_running(True)
        names = sorted({_pair_name(p[0]) for p in job.pairs + (job.val_pairs or [])})
        description = f"Train U-Net on {', '.join(names[:2])}{' …' if len(names) > 2 else ''}"
        try:
            self._worker = start_worker(
                run_training, job,
                description=description,
                on_result=self._on_result,
                on_event=self._on_event,
                on_error=self._on_error,
                on_aborted=self._on_aborted,
                on_finished=self._on_finished,
                error_prefix="Train U-Net failed",
            )
        except Exception:
            self._set_running(False)
            raise
        log.info("%s -> %s (%s)", description, job.output, job.options)
        return self._worker

    def stop(self, *_: Any) -> None:
        """Stop training within one step; the checkpoints written so far stay."""
        if self._worker is not None:
            self._stopping = True
            self._worker.quit()
            self._status.value = "stopping… (within one step)"

    # ------------------------------------------------------------------ building a job
    def _make_job(self) -> TrainJob:
        mode = self._mode.value
        depth = int(self._depth.value)
        fine_tune = _path_or_none(self._fine_tune.value)
        resume = bool(self._resume.value)
        if fine_tune is not None and resume:
            raise ValueError("choose either Fine-tune from or Resume, not both")
        if fine_tune is not None:
            if not fine_tune.is_file():
                raise FileNotFoundError(f"model file to fine-tune {str(fine_tune)!r} does not exist")
            from ..core.modelfile import read_model_info

            info = read_model_info(fine_tune)  # validates without torch
            target = (info.get("spec") or {}).get("target")
            if target and target != mode:
                raise ValueError(f"the model {fine_tune.name} was trained for {target!r}; set Mode to {target!r} "
                                 "to fine-tune it")
            depth = int(info["architecture"].get("depth", depth))
        try:
            lr = float(str(self._lr.value).strip())
        except ValueError:
            lr = float("nan")
        if not (lr > 0 and math.isfinite(lr)):
            raise ValueError(f"learning rate must be a positive number such as 0.001, got {self._lr.value!r}")
        patch = int(self._patch.value)
        if not resume and patch % (2**depth):
            raise ValueError(f"patch size {patch} must be a multiple of {2**depth} (2**depth with depth {depth})")

        preview_layer: Image | None = None
        if self._source.value == "layers":
            pairs, preview_layer, data_description = self._layer_pairs()
        else:
            pairs, data_description = self._folder_pairs()
            active = _unwrap(self._viewer.layers.selection.active)
            preview_layer = active if isinstance(active, Image) else None
        val_pairs = None
        val_fraction = float(self._val_fraction.value)
        if self._val_last.value:
            if len(pairs) < 2:
                raise ValueError("'Use the last pair for validation' needs at least two pairs")
            pairs, val_pairs = pairs[:-1], pairs[-1:]
            val_fraction = 0.0

        output = self._resolve_output(resume)
        every = int(self._preview_every.value)
        preview_axes = ""
        preview_image = None
        if preview_layer is not None and every > 0:
            preview_axes = layer_axes(preview_layer)
            preview_image = _level0(preview_layer)
        else:
            preview_layer = None
        options: dict[str, Any] = {
            "val_fraction": val_fraction,
            "mode": mode,
            "model": os.fspath(fine_tune) if fine_tune is not None else None,
            "resume": resume,
            "depth": int(self._depth.value),
            "base_features": int(self._base_features.value),
            "epochs": int(self._epochs.value),
            "steps_per_epoch": int(self._steps.value) or None,
            "patch_size": patch,
            "batch_size": int(self._batch.value),
            "lr": lr,
            "patience": int(self._patience.value) or None,
            "augmentation": bool(self._augmentation.value),
            "device": self._device.value,
            "seed": int(self._seed.value),
            "preview_every": every if preview_image is not None else 0,
            "preview_image": preview_image,
            "preview_axes": preview_axes or None,
            "description": f"U-Net trained in napari on {data_description}",
            "data_description": data_description,
        }
        return TrainJob(
            pairs=pairs, val_pairs=val_pairs, output=output, options=options, preview_layer=preview_layer,
            preview_axes=preview_axes, metric_name="AP50" if mode == "instances" else "mIoU",
        )

    def _layer_pairs(self) -> tuple[list[tuple[Any, Any]], Image | None, str]:
        pairs: list[tuple[Any, Any]] = []
        n_channels: int | None = None
        for k, (image, labels) in enumerate(self.pairs):
            if image is None or labels is None:
                what = "an Image layer" if image is None else "a Labels layer"
                raise ValueError(f"pair {k + 1} has no {what}: open or choose one (or remove the pair)")
            axes = layer_axes(image)
            data = _level0(image)
            names = (image.metadata or {}).get("channel_names")
            if n_channels is None:
                n_channels = _channel_count(data.shape, axes)
            layout = plan_layout(data.shape, axes, model_channels=n_channels, model_ndim=2,
                                 image_name=f"layer {image.name!r}")
            lab = _level0(labels)
            if tuple(lab.shape) != layout.out_shape:
                raise ValueError(
                    f"labels layer {labels.name!r} has shape {tuple(lab.shape)} but image layer {image.name!r} "
                    f"gives {layout.out_shape} (image axes {layout.axes}, labels axes {layout.out_axes})"
                )
            metadata: dict[str, Any] = {"axes": axes}
            if isinstance(names, (list, tuple)):
                metadata["channel_names"] = [str(n) for n in names]
            pairs.append((LayerData(data, image.name, metadata), lab))
        if not pairs:
            raise ValueError("no training pairs: add an Image and a Labels layer")
        first = self.pairs[0][0]
        names = [p[0].name for p in pairs]
        description = "layers " + ", ".join(repr(n) for n in names[:5]) + (" …" if len(names) > 5 else "")
        return pairs, first, description

    def _folder_pairs(self) -> tuple[list[tuple[Any, Any]], str]:
        images = _path_or_none(self._images_dir.value)
        masks = _path_or_none(self._masks_dir.value)
        if images is None or masks is None:
            raise ValueError("choose the images folder and the masks folder")
        pairs = pairs_from_folders(images, masks)
        return [(img, mask) for img, mask in pairs], f"{images} ({len(pairs)} images, masks {masks})"

    def _resolve_output(self, resume: bool) -> pathlib.Path:
        output = self.output_path
        if output is None:
            raise ValueError("choose where to save the model (Save model to)")
        if output.is_dir():
            raise ValueError(f"output {str(output)!r} is a folder; give a model file name such as model.safetensors")
        if not output.name.endswith(".safetensors"):
            output = output.with_name(output.name + ".safetensors")
        output = output.absolute()
        if not resume:
            output.parent.mkdir(parents=True, exist_ok=True)
        return output

    # ------------------------------------------------------------------ worker callbacks
    def _set_running(self, running: bool) -> None:
        self._start_button.enabled = not running
        self._stop_button.enabled = running

    def _on_event(self, progress: TrainProgress) -> None:
        event = progress.event
        self.last_event = event
        kind = event.kind
        if kind == "start":
            self._status.value = _wrap(event.message or "preparing data…")
        elif kind == "step":
            if event.loss is not None:
                self.history.add_step(event.epoch, event.step, event.loss)
            if self._rate_origin is None:
                self._rate_origin = (event.step, event.elapsed_s)
            self._plot.update(self.history, force=False)
            self._show_progress(event)
        elif kind == "epoch":
            metric = event.metrics.get(self.history.metric_name) if event.val_loss is not None else None
            self.history.add_epoch(event.epoch, event.step, event.loss, event.val_loss, metric)
            self._last_epoch_event = event
            self._plot.update(self.history, force=False)
            self._show_progress(event)
        elif kind == "preview" and event.preview is not None:
            self._show_preview(np.asarray(event.preview))
        elif kind == "done":
            self._plot.update(self.history)

    def _steps_per_s(self, event: Any) -> float | None:
        if self._rate_origin is not None:
            step0, t0 = self._rate_origin
            if event.step > step0 and event.elapsed_s > t0:
                return (event.step - step0) / (event.elapsed_s - t0)
        last = self._last_epoch_event
        return float(last.metrics["steps_per_s"]) if last is not None and "steps_per_s" in last.metrics else None

    def _show_progress(self, event: Any) -> None:
        name = self.history.metric_name
        lines = [f"epoch {event.epoch}/{event.epochs} · step {event.step}/{event.total_steps}"]
        parts = []
        if event.loss is not None:
            parts.append(f"loss {event.loss:.4f}")
        last = self._last_epoch_event
        if last is not None and last.val_loss is not None:
            parts.append(f"val loss {last.val_loss:.4f}")
            value = last.metrics.get(name)
            if value is not None:
                best = self.history.best_metric()
                parts.append(f"val {name} {value:.3f} (best {best:.3f})" if best is not None else
                             f"val {name} {value:.3f}")
        if parts:
            lines.append(" · ".join(parts))
        speed = []
        rate = self._steps_per_s(event)
        if rate is not None:
            speed.append(f"{rate:.2f} steps/s")
        if event.eta_s:
            speed.append(f"ETA {_format_duration(event.eta_s)}")
        if speed:
            lines.append(" · ".join(speed))
        self._status.value = "\n".join(lines)

    def _show_preview(self, labels: np.ndarray) -> None:
        job = self._job
        if job is None or job.preview_layer is None:
            return
        source = job.preview_layer
        layer = self.preview_layer
        in_viewer = layer is not None and any(_unwrap(lay) is layer for lay in self._viewer.layers)
        if not in_viewer or layer.data.ndim != labels.ndim or (layer.metadata or {}).get(PREVIEW_KEY) != source.name:
            layer = next(
                (_unwrap(lay) for lay in self._viewer.layers
                 if isinstance(lay, Labels) and (lay.metadata or {}).get(PREVIEW_KEY) == source.name
                 and lay.data.ndim == labels.ndim),
                None,
            )
        scale, translate = _preview_transforms(source, job.preview_axes, labels.ndim)
        if layer is None:
            out_axes = "".join(a for a in job.preview_axes if a not in "CS")
            layer = _unwrap(self._viewer.add_labels(
                labels, name=f"{source.name} preview", scale=scale, translate=translate,
                metadata={PREVIEW_KEY: source.name, "axes": out_axes, "source": source.name},
            ))
        else:
            layer.data = labels
            layer.scale = scale
            layer.translate = translate
        self.preview_layer = layer
        self.preview_history.append(layer)

    def _on_result(self, _model: Any) -> None:
        job = self._job
        if job is None:
            return
        path = job.output
        self.best_metric = self.history.best_metric()
        if not path.is_file():
            self._status.value = _wrap(f"done, but no model file was written at {path}")
            return
        self.saved_path = path
        settings.add_recent_model(path)
        offered = offer_in_segment_widgets(self._viewer, path)
        if self.best_metric is not None:
            score = f"best {self.history.metric_name} {self.best_metric:.3f}"
        elif self.history.epoch_losses:
            score = f"final training loss {self.history.epoch_losses[-1]:.4f} (no validation set)"
        else:
            score = "no new epoch"
        where = "selected in the Segment widget" if offered else "added to the Segment widget's recent models"
        self._status.value = _wrap(f"done: {score}\nsaved to {path}\n({where})")
        show_info(f"Train U-Net: model saved to {path} ({score}); {where}")

    def _on_error(self, exc: BaseException) -> None:
        self._status.value = _wrap(f"failed: {error_message(exc)}")

    def _on_aborted(self) -> None:
        job = self._job
        lines = []
        last = self._last_epoch_event
        event = self.last_event
        where = f" at epoch {event.epoch}/{event.epochs}, step {event.step}" if event is not None and event.epoch else ""
        lines.append(f"stopped{where}.")
        if job is not None:
            last_file, state_file = last_checkpoint_paths(job.output)
            kept = []
            if job.output.is_file():
                kept.append(f"best model {job.output.name}")
            if last_file.is_file():
                epoch = f" (epoch {last.epoch})" if last is not None else ""
                kept.append(f"{last_file.name}{epoch}")
            if last is None:
                lines.append("No epoch of this run finished, so it wrote no checkpoint.")
            if kept:
                lines.append("The last good checkpoint stays: " + ", ".join(kept) + ".")
                if state_file.is_file():
                    lines.append("Tick Resume and Start to continue.")
        self._status.value = _wrap(" ".join(lines))

    def _on_finished(self) -> None:
        self._worker = None
        self._stopping = False
        self._set_running(False)

    # ------------------------------------------------------------------ GUI callbacks
    def _on_start_clicked(self, *_: Any) -> None:
        self.start()

    def _on_add_pair_clicked(self, *_: Any) -> None:
        self.add_pair()

    def _on_remove_pair_clicked(self, *_: Any) -> None:
        self.remove_pair()

    def _on_source_changed(self, *_: Any) -> None:
        layers = self._source.value == "layers"
        self._pairs_box.visible = layers
        self._pair_buttons.visible = layers
        self._folders_box.visible = not layers
        self._on_inputs_changed()

    def _on_val_last_changed(self, checked: bool) -> None:
        self._val_fraction.enabled = not checked

    def _on_row_image_changed(self, image_box: ComboBox, labels_box: ComboBox) -> None:
        image = image_box.value
        current = labels_box.value
        expected = self._expected_labels_shape(image) if image is not None else None
        if image is not None and (current is None or tuple(_level0(current).shape) != expected):
            others = [lab.value for _, _, lab in self._rows if lab is not labels_box]
            pick = self._pick_labels(image, others)
            if pick is not None:
                labels_box.value = pick
        self._on_inputs_changed()

    def _on_labels_choice_changed(self, *_: Any) -> None:
        self._watch_labels()
        self._update_classes()

    def _on_layers_inserted(self, event: Any) -> None:
        layer = getattr(event, "value", None)
        if layer is not None:
            layer.events.name.connect(self._on_layers_changed)
        self._on_layers_changed()

    def _on_layers_changed(self, *_: Any) -> None:
        for _, image_box, labels_box in self._rows:
            before = labels_box.value
            image_box.reset_choices()
            labels_box.reset_choices()
            if before is None and image_box.value is not None:
                others = [lab.value for _, _, lab in self._rows if lab is not labels_box]
                pick = self._pick_labels(image_box.value, others)
                if pick is not None:
                    labels_box.value = pick
        self._on_inputs_changed()

    def _on_inputs_changed(self, *_: Any) -> None:
        self._watch_labels()
        self._update_default_output()
        self._update_classes()

    def _on_output_edited(self, *_: Any) -> None:
        current = self.output_path
        if current is not None and self._auto_output is not None and current != self._auto_output:
            self._auto_output = None  # typed by the user: keep it

    def _update_default_output(self) -> None:
        current = self.output_path
        if current is not None and current != self._auto_output:
            return
        name = None
        if self._source.value == "layers":
            image = self._rows[0][1].value if self._rows else None
            name = image.name if image is not None else None
        else:
            folder = _path_or_none(self._images_dir.value)
            name = folder.name if folder is not None else None
        if not name:
            return
        default = default_output(name)
        self._auto_output = default
        if current != default:
            self._output.value = default
            self._auto_output = default

    def _watch_labels(self) -> None:
        """Recount classes when a chosen labels layer is painted or its data replaced."""
        wanted = [lab.value for _, _, lab in self._rows if lab.value is not None]
        for layer in self._watched_labels:
            if not any(layer is w for w in wanted):
                for name in ("data", "paint", "labels_update"):
                    emitter = getattr(layer.events, name, None)
                    if emitter is not None:
                        emitter.disconnect(self._schedule_classes_update)
        for layer in wanted:
            if not any(layer is w for w in self._watched_labels):
                for name in ("data", "paint", "labels_update"):
                    emitter = getattr(layer.events, name, None)
                    if emitter is not None:
                        emitter.connect(self._schedule_classes_update)
        self._watched_labels = list(wanted)

    def _schedule_classes_update(self, *_: Any) -> None:
        """Recount the classes a moment from now (painting sends many events)."""
        self._classes_timer.start()

    def _update_classes(self, *_: Any) -> None:
        """Show the classes the model will learn (labels read from a subsample of big layers)."""
        mode = self._mode.value
        if self._source.value == "folders":
            text = ("classes: background, interior, boundary" if mode == "instances"
                    else "classes: the values found in the masks (read when training starts)")
            self._classes.value = _wrap(text)
            return
        layers = [lab.value for _, _, lab in self._rows if lab.value is not None]
        if not layers:
            self._classes.value = "no Labels layer chosen"
            return
        values: set[int] = set()
        sampled = False
        for layer in layers:
            found, sub = label_values(layer.data)
            values.update(int(v) for v in found)
            sampled |= sub
        approx = " (in a subsample)" if sampled else ""
        nonzero = sorted(v for v in values if v != 0)
        if mode == "instances":
            if not nonzero:
                text = "⚠ the labels are empty (all 0): annotate some objects first"
            else:
                text = f"classes: background, interior, boundary\n{len(nonzero)} object ids{approx}"
        else:
            names = [f"{v} (background)" if v == 0 else str(v) for v in sorted(values)]
            text = f"classes: {', '.join(names[:12])}{' …' if len(names) > 12 else ''}{approx}"
            if len(values) < 2:
                text = f"⚠ a single value ({', '.join(names)}) found: semantic training needs at least 2 classes"
        self._classes.value = _wrap(text)


def _theme_colors(widget: Any) -> tuple[str, str]:
    """(background, text) colours of napari's current theme; the Qt palette's as a fallback."""
    try:
        from napari.settings import get_settings
        from napari.utils.theme import get_system_theme, get_theme

        name = get_settings().appearance.theme
        theme = get_theme(get_system_theme() if name == "system" else name)
        return theme.background.as_hex(), theme.text.as_hex()
    except Exception:  # noqa: BLE001 - only cosmetic
        palette = widget.palette()
        return palette.window().color().name(), palette.windowText().color().name()


def _heading(text: str) -> Label:
    label = Label(value=text)
    label.native.setStyleSheet("font-weight: bold; padding-top: 4px;")
    return label


def _pair_name(image: Any) -> str:
    if isinstance(image, LayerData):
        return repr(image.name)
    return file_stem(image) if isinstance(image, (str, os.PathLike)) else "image"


def _preview_transforms(layer: Image, axes: str, ndim: int) -> tuple[list[float], list[float]]:
    """Scale and translate of ``layer`` for the preview's axes (``axes`` without ``C``/``S``)."""
    dims = axes[:-1] if getattr(layer, "rgb", False) else axes
    scale, translate = list(layer.scale), list(layer.translate)
    if len(dims) != len(scale):
        return [1.0] * ndim, [0.0] * ndim
    keep = [i for i, a in enumerate(dims) if a not in "CS"]
    if len(keep) != ndim:
        return [1.0] * ndim, [0.0] * ndim
    return [float(scale[i]) for i in keep], [float(translate[i]) for i in keep]
