"""The "Train U-Net" dock widget: a thin form over :func:`napari_unet.core.training.loop.iter_train`.

The widget collects options, starts a worker (:func:`~napari_unet._napari.workers.start_worker`)
over :func:`~napari_unet._napari.train_job.run_training` and turns its events into live curves, a
status line and a preview Labels layer. What it owns is the callbacks that tie the pieces together;
the pieces live beside it:

* :mod:`~napari_unet._napari.train_form`: the controls themselves, read and set by name;
* :mod:`~napari_unet._napari.train_pairs`: the (Image, Labels) rows and the classes they give;
* :mod:`~napari_unet._napari.train_job`: the form's values → a checked :class:`TrainJob`, the worker's generator;
* :mod:`~napari_unet._napari.train_curves`: the curve data and the matplotlib canvas;
* :mod:`~napari_unet._napari.train_status`: what the status line says;
* :mod:`~napari_unet._napari.train_preview`: the preview layer, updated in place;
* :mod:`~napari_unet._napari.model_offer`: the finished model selected in the docked Segment panels;
* :mod:`~napari_unet._napari.worker_panel` and :mod:`~napari_unet._napari.layer_watch`: what any panel
  that runs a worker over the viewer's layers needs (start, refuse, tidy up; hear layer changes).

See ``docs/train-widget.md`` for the user's view. Nothing here imports torch (``iter_train`` is
imported inside the worker thread) and matplotlib is only imported when a widget is built.
"""

from __future__ import annotations

import logging
import pathlib
from typing import Any

import napari.viewer
import numpy as np
from napari.layers import Image, Labels
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import QTimer

from . import settings
from .layer_watch import LayerListWatch, LayerWatch
from .model_offer import offer_in_segment_widgets
from .segment_form import wrap_text
from .train_curves import TrainHistory
from .train_form import DEFAULT_PATCH_SIZE, DEVICES, TrainForm
from .train_job import (
    LayerData,
    TrainJob,
    TrainProgress,
    build_job,
    default_output,
    last_checkpoint_paths,
    model_network,
    path_or_none,
    run_training,
)
from .train_pairs import INSTANCE_CLASS_NAMES, PairRows, classes_text, label_values
from .train_preview import PREVIEW_KEY, show_preview
from .train_status import RateMeter, done_text, progress_text, stopped_text
from .worker_panel import WorkerPanel
from .workers import UNetWorker

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
    "label_values",
    "last_checkpoint_paths",
    "offer_in_segment_widgets",
    "run_training",
]

log = logging.getLogger(__name__)


class TrainWidget(WorkerPanel, TrainForm):
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

    **The Segment panel.** A finished model is put first in the recent model list and selected
    in every Segment panel docked in the viewer (:func:`offer_in_segment_widgets`).

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

    title = "Train U-Net"
    stop_verb = "stop"

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self._viewer = viewer
        self._worker: UNetWorker | None = None
        self._job: TrainJob | None = None
        self._auto_output: pathlib.Path | None = None
        self._rate = RateMeter()
        self._last_epoch_event: Any = None
        self.history = TrainHistory()
        self.preview_layer: Labels | None = None
        self.preview_history: list[Labels] = []
        self.last_event: Any = None
        self.saved_path: pathlib.Path | None = None
        self.best_metric: float | None = None
        self._pair_rows = PairRows(viewer, self._pairs_box, self._remove_pair_button, self._on_inputs_changed)

        # labels painted or replaced: recount the classes a moment later (painting sends many events)
        self._classes_timer = QTimer(self.native)
        self._classes_timer.setSingleShot(True)
        self._classes_timer.setInterval(300)
        self._classes_timer.timeout.connect(self._update_classes)
        self._labels_watch = LayerWatch(("data", "paint", "labels_update"), self._schedule_classes_update)

        # -- connections
        self._source.changed.connect(self._on_source_changed)
        self._add_pair_button.changed.connect(lambda *_: self.add_pair())
        self._remove_pair_button.changed.connect(lambda *_: self.remove_pair())
        self._val_last.changed.connect(self._on_val_last_changed)
        self._mode.changed.connect(self._update_classes)
        self._ndim.changed.connect(self._on_ndim_changed)
        self._fine_tune.changed.connect(self._on_fine_tune_changed)
        self._images_dir.changed.connect(self._on_inputs_changed)
        self._masks_dir.changed.connect(self._update_classes)
        self._output.changed.connect(self._on_output_edited)
        self._start_button.changed.connect(lambda *_: self.start())
        self._stop_button.changed.connect(self.stop)
        self._layer_list_watch = LayerListWatch(viewer, self._on_layers_changed)

        self.add_pair()

    # ------------------------------------------------------------------ pairs
    @property
    def pairs(self) -> list[tuple[Image | None, Labels | None]]:
        """The (image layer, labels layer) chosen in each row."""
        return self._pair_rows.pairs

    def add_pair(self, image: Image | None = None, labels: Labels | None = None) -> None:
        """Add a row of (Image, Labels) boxes.

        Without arguments the row starts on the first image layer not used in another row
        and the first labels layer of that image's shape (likewise not used, if possible).
        """
        self._pair_rows.add(image, labels)

    def remove_pair(self) -> None:
        """Remove the last row (one row always stays)."""
        self._pair_rows.remove()

    def set_pair(self, index: int, image: Image, labels: Labels) -> None:
        """Choose ``image`` and ``labels`` in row ``index`` (rows are added as needed)."""
        self._pair_rows.set(index, image, labels)

    def _labels_choices(self, _widget: Any = None) -> list[tuple[str, Labels]]:
        return self._pair_rows.labels_choices()

    # ------------------------------------------------------------------ public API
    @property
    def plot_draw_count(self) -> int:
        """How many times the curves were drawn (0 without matplotlib)."""
        return self._plot.draw_count

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
        if self._busy():
            return None
        try:
            job = build_job(self.options(), self.pairs, self._viewer.layers.selection.active)
        except Exception as exc:  # noqa: BLE001 - anything: one notification, never a traceback
            self._refuse(exc)
            return None
        self._job = job
        self.history = TrainHistory(metric_name=job.metric_name)
        self.preview_history = []
        self.last_event = None
        self.saved_path = None
        self.best_metric = None
        self._rate = RateMeter()
        self._last_epoch_event = None
        self._plot.update(self.history)
        note = "".join(f"\n({text})" for text in job.notes)
        if job.output.exists() and not job.options["resume"]:
            note += f"\n({job.output.name} exists: replaced when the first epoch ends)"
        self._status.value = wrap_text("starting…" + note)
        worker = self._launch(run_training, job, description=job.description, on_result=self._on_result)
        shown = {k: v for k, v in job.options.items() if k != "preview_image"}  # not the whole array
        log.info("%s -> %s (%s)", job.description, job.output, shown)
        return worker

    def stop(self, *_: Any) -> None:
        """Stop training within one step; the checkpoints written so far stay."""
        if self._worker is not None:
            self._worker.quit()
            self._status.value = "stopping… (within one step)"

    # ------------------------------------------------------------------ worker callbacks
    def _set_running(self, running: bool) -> None:
        self._start_button.enabled = not running
        self._stop_button.enabled = running

    def _on_event(self, progress: TrainProgress) -> None:
        event = progress.event
        self.last_event = event
        kind = event.kind
        if kind == "start":
            notes = "".join(f"\n({text})" for text in (self._job.notes if self._job is not None else ()))
            self._status.value = wrap_text((event.message or "preparing data…") + notes)
        elif kind in ("step", "epoch"):
            if kind == "step":
                if event.loss is not None:
                    self.history.add_step(event.epoch, event.step, event.loss)
                self._rate.step(event)
            else:
                metric = event.metrics.get(self.history.metric_name) if event.val_loss is not None else None
                self.history.add_epoch(event.epoch, event.step, event.loss, event.val_loss, metric)
                self._last_epoch_event = event
            self._plot.update(self.history, force=False)
            rate = self._rate.rate(event, self._last_epoch_event)
            self._status.value = progress_text(event, self.history, self._last_epoch_event, rate)
        elif kind == "preview" and event.preview is not None:
            self._show_preview(np.asarray(event.preview))
        elif kind == "done":
            self._plot.update(self.history)

    def _show_preview(self, labels: np.ndarray) -> None:
        job = self._job
        if job is None or job.preview_layer is None:
            return
        self.preview_layer = show_preview(self._viewer, labels, job.preview_layer, job.preview_axes, self.preview_layer)
        self.preview_history.append(self.preview_layer)

    def _on_result(self, _model: Any) -> None:
        job = self._job
        if job is None:
            return
        path = job.output
        self.best_metric = self.history.best_metric()
        if not path.is_file():  # never report a file that is not there
            message = f"training ended, but no model file was written at {path}"
            self._status.value = wrap_text(message)
            show_error(f"{self.title}: {message}")
            return
        self.saved_path = path
        settings.add_recent_model(path)
        offered = offer_in_segment_widgets(self._viewer, path)
        score = done_text(self.history)
        where = "selected in the Segment widget" if offered else "added to the Segment widget's recent models"
        self._status.value = wrap_text(f"done: {score}\nsaved to {path}\n({where})")
        show_info(f"Train U-Net: model saved to {path} ({score}); {where}")

    def _on_aborted(self) -> None:
        output = self._job.output if self._job is not None else None
        self._status.value = wrap_text(stopped_text(output, self.last_event, self._last_epoch_event))

    # ------------------------------------------------------------------ GUI callbacks
    def _on_source_changed(self, *_: Any) -> None:
        layers = self._source.value == "layers"
        self._pairs_box.visible = layers
        self._pair_buttons.visible = layers
        self._folders_box.visible = not layers
        self._on_inputs_changed()

    def _on_ndim_changed(self, ndim: int) -> None:
        """Network 2D ↔ 3D: a patch size left at the other network's default takes this one's."""
        other = 5 - int(ndim)
        if self._patch.value == DEFAULT_PATCH_SIZE.get(other):
            self._patch.value = DEFAULT_PATCH_SIZE[int(ndim)]

    def _on_fine_tune_changed(self, value: Any) -> None:
        """A model to fine-tune keeps its network: show it in Network (read without torch)."""
        ndim = model_network(value)
        if ndim is not None and ndim != self._ndim.value:
            self._ndim.value = ndim

    def _on_val_last_changed(self, checked: bool) -> None:
        self._val_fraction.enabled = not checked

    def _on_layers_changed(self, *_: Any) -> None:
        self._pair_rows.refresh()
        self._on_inputs_changed()

    def _on_inputs_changed(self, *_: Any) -> None:
        self._labels_watch.watch(self._pair_rows.labels)
        self._update_default_output()
        self._update_classes()

    def _on_output_edited(self, *_: Any) -> None:
        current = self.output_path
        if current is not None and self._auto_output is not None and current != self._auto_output:
            self._auto_output = None  # typed by the user: keep it

    def _update_default_output(self) -> None:
        """Follow the first image (folders: the images folder) until the user types a file."""
        current = self.output_path
        if current is not None and current != self._auto_output:
            return
        if self._source.value == "layers":
            image = self._pair_rows.pairs[0][0] if self._pair_rows.rows else None
            name = image.name if image is not None else None
        else:
            folder = path_or_none(self._images_dir.value)
            name = folder.name if folder is not None else None
        if not name:
            return
        default = default_output(name)
        self._auto_output = default
        if current != default:
            self._output.value = default
            self._auto_output = default

    def _schedule_classes_update(self, *_: Any) -> None:
        """Recount the classes a moment from now (painting sends many events)."""
        self._classes_timer.start()

    def _update_classes(self, *_: Any) -> None:
        """Show the classes the model will learn (labels read from a subsample of big layers)."""
        if self._source.value == "folders":
            labels_data = None
        else:
            labels_data = [layer.data for layer in self._pair_rows.labels]
        self._classes.value = wrap_text(classes_text(self._mode.value, labels_data))
