"""The "Segment with U-Net" dock widget: a thin form over :mod:`napari_unet.core`.

The widget only collects options, starts a worker (:func:`~napari_unet._napari.workers.start_worker`)
over :func:`~napari_unet._napari.segment_job.run_segment_job`, and adds the result as a layer
(:func:`~napari_unet._napari.result_layers.show_result`). What it owns is the form and its
callbacks; the pieces live beside it:

* :mod:`~napari_unet._napari.segment_form`: the controls themselves (no behaviour);
* :mod:`~napari_unet._napari.layer_inputs`: Image layer(s) → array, axes, channel names;
* :mod:`~napari_unet._napari.model_choice`: the Model box's entries and model descriptions;
* :mod:`~napari_unet._napari.segment_job`: one run's options, generator and console equivalent;
  large lazy images block-wise: :mod:`~napari_unet._napari.block_controls` / ``block_job``;
* :mod:`~napari_unet._napari.result_layers`: the calibrated result (and tracks) layer, replaced on re-runs;
* :mod:`~napari_unet._napari.worker_panel` and :mod:`~napari_unet._napari.layer_watch`: what it shares
  with the Train panel (start, refuse, tidy up a worker; hear layer changes).

See ``docs/segment-widget.md`` for the user's view. Nothing here imports torch: model files are
described from their header and the model is loaded inside the worker thread when Run is pressed.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Sequence
from typing import Any

import napari.viewer
from napari.layers import Image, Layer
from napari.utils.notifications import show_error, show_info

from ..core.image.axes import parse_channels
from ..core.model.file import describe_model, read_model_info, summarize_model
from ..core.options import check_inference_options
from . import settings
from .device_info import DeviceInfo
from .layer_inputs import ImageInput, combine_input, extra_channel_candidates, unwrap
from .layer_watch import LayerListWatch, LayerWatch
from .model_choice import ModelInfoCache, builtin_models, model_choices
from .result_layers import is_result_layer, result_layer_name, show_result, show_tracks
from .segment_form import SegmentForm, wrap_text
from .segment_job import DEVICES, OUTPUTS, PRECISIONS, SegmentJob, console_call, plan_job, run_segment_job
from .warmup import warm_up
from .worker_panel import WorkerPanel
from .workers import UNetWorker, error_message

__all__ = [
    "DEVICES",
    "OUTPUTS",
    "PRECISIONS",
    "ImageInput",
    "SegmentJob",
    "SegmentWidget",
    "builtin_models",
    "console_call",
    "parse_channels",
]

log = logging.getLogger(__name__)


class SegmentWidget(WorkerPanel, SegmentForm):
    """Dock widget: segment an Image layer with a U-Net model file.

    Parameters
    ----------
    viewer : napari.viewer.Viewer
        The viewer (injected by napari when opened from the Plugins menu).

    Notes
    -----
    **Result layers.** ``"<image> labels"`` (or ``"<image> probabilities"``), calibrated like
    the image; running again on the same image replaces its data (see
    :func:`~napari_unet._napari.result_layers.show_result`). To keep a result, rename its layer.

    **Threads.** Run starts a worker (see :mod:`napari_unet._napari.workers`); the Qt event
    loop is never blocked and torch is only imported inside the worker.

    Attributes
    ----------
    last_console_call : str or None
        The console line equivalent to the last successful run.
    last_event : object or None
        The last progress event received.
    result_layer, tracks_layer : napari.layers.Layer or None
        The layers written by the last successful run (a Tracks layer only when asked for).
    """

    title = "Segment with U-Net"
    stop_verb = "cancel"

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self._viewer = viewer
        self._worker: UNetWorker | None = None
        self._watched_layer: Image | None = None
        self._image_watch = LayerWatch(("data", "metadata"), self._update_axes_info)
        self._session_models: list[str] = []
        self._model_info_for = ModelInfoCache()
        self.last_console_call: str | None = None
        self.estimated_object_size: float | None = None  # pixels, when the model estimated it in the last run
        self.last_event: Any = None
        self.result_layer: Layer | None = None
        self.tracks_layer: Layer | None = None
        self._image.choices = self._image_choices
        self._extra.choices = self._extra_choices
        self._model.choices = self._model_choices

        # -- connections
        self._image.changed.connect(self._on_image_changed)
        self._extra.changed.connect(self._update_axes_info)
        self._axes.changed.connect(self._update_axes_info)
        self._channels.changed.connect(self._update_axes_info)
        self._model.changed.connect(self._on_model_changed)
        self.device_info = DeviceInfo(self._device, self._device_info)  # "Runs on": device, and why not the GPU
        self._browse.changed.connect(self.browse)
        self._run_button.changed.connect(self.run)
        self._cancel_button.changed.connect(self.cancel)
        self._layer_list_watch = LayerListWatch(viewer, self._on_layers_changed)
        viewer.layers.selection.events.active.connect(self._on_active_layer)

        active = viewer.layers.selection.active
        if isinstance(active, Image):
            self.select_image(active)
        self._on_image_changed()
        self._on_model_changed()

    # ------------------------------------------------------------------ choices
    def _image_layers(self) -> list[Image]:
        return [unwrap(layer) for layer in self._viewer.layers if isinstance(layer, Image)]

    def _image_choices(self, _widget: Any = None) -> list[tuple[str, Image]]:
        return [(layer.name, layer) for layer in self._image_layers()]

    def _extra_choices(self, _widget: Any = None) -> list[tuple[str, Image]]:
        main = self._image.value if hasattr(self, "_image") else None
        if main is None:
            return []
        return [(layer.name, layer) for layer in extra_channel_candidates(main, self._image_layers())]

    def _model_choices(self, _widget: Any = None) -> list[tuple[str, str]]:
        return model_choices(self._session_models)

    # ------------------------------------------------------------------ public API
    @property
    def image_layer(self) -> Image | None:
        """The selected Image layer."""
        return self._image.value

    @property
    def model_path(self) -> str | None:
        """The selected model file, or None."""
        return self._model.value

    def select_image(self, layer: Image, extra: Sequence[Image] | None = None) -> None:
        """Choose ``layer`` in the Image box and, when given, ``extra`` in the More channel layers box.

        Raises
        ------
        TypeError
            If ``layer`` is not an Image layer.
        ValueError
            If ``layer`` is not in the viewer, or an ``extra`` layer is not another Image layer of its shape.
        """
        layer = unwrap(layer)
        if not isinstance(layer, Image):
            raise TypeError(f"layer {layer.name!r} is a {type(layer).__name__} layer, not an Image layer")
        self._image.reset_choices()
        if not any(choice is layer for choice in self._image.choices):
            raise ValueError(f"layer {layer.name!r} is not an Image layer of this viewer")
        self._image.value = layer
        if extra is not None:
            self._refresh_extra()
            extra = [unwrap(e) for e in extra]
            bad = [e.name for e in extra if not any(choice is e for choice in self._extra.choices)]
            if bad:
                raise ValueError(f"layer(s) {bad} cannot be stacked after {layer.name!r} as channels")
            self._extra.value = extra

    def set_model(self, path: str | os.PathLike) -> None:
        """Select the model file ``path`` (read without torch) and remember it as recently used.

        Raises
        ------
        FileNotFoundError
            If ``path`` does not exist.
        napari_unet.core.model.file.ModelFileError
            If it is not a napari-unet model file this version can read.
        """
        path = os.path.abspath(os.path.expanduser(os.fspath(path)))
        read_model_info(path)  # validates; raises with a precise message
        if path not in self._session_models:
            self._session_models.insert(0, path)
        settings.add_recent_model(path)
        self._model.reset_choices()
        self._model.value = path

    def _choose_model(self, path: Any) -> None:  # configure(model=...)
        if path:
            self.set_model(path)
        else:
            self._model.value = path

    def browse(self, value: Any) -> None:
        """Add the model file ``value`` as the Browse… box does: select it, or show why it cannot be used."""
        if not value or os.fspath(value) in ("", ".") or os.path.isdir(value):
            return
        try:
            self.set_model(value)
        except (ValueError, OSError) as exc:
            message = error_message(exc, "Cannot use this model file")
            log.error("%s", message)
            show_error(message)

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
        if self._busy():
            return None
        try:
            job = self._make_job()
        except Exception as exc:  # noqa: BLE001 - anything: one notification, never a traceback
            self._refuse(exc)
            return None
        description = f"Segment {job.source.layer.name!r}"
        self.estimated_object_size = None
        self._status.value = "starting…"
        self.last_event = None
        worker = self._launch(
            run_segment_job, job, description=description, on_result=lambda result: self._on_result(job, result)
        )
        log.info("%s with %s (%s)", description, job.model_path, job.options())
        return worker

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

    def _make_job(self) -> SegmentJob:
        source = self._input()
        path = self._model.value
        if not path:
            raise ValueError("no model selected: choose a model file with Browse…")
        info = self._model_info_for(path)
        channels = parse_channels(self._channels.value)
        layout = plan_job(source, info, channels)
        object_size = float(self._object_size.value) or None
        if object_size is not None:
            from ..core.image.rescale import zoom_factor

            zoom_factor(info["spec"].get("object_size"), object_size)  # refuse early, with core's message
        job = SegmentJob(
            source=source,
            layout=layout,
            model_path=path,
            output=self._output.value,
            channels=channels,
            min_size=int(self._min_size.value),
            object_size=object_size,
            tile_size=int(self._tile_size.value) or None,
            halo=int(self._halo.value) or None,
            batch_size=int(self._batch_size.value) or None,
            device=self._device.value,
            precision=self._precision.value,
            tta=bool(self._tta.value),
            **self._stack_options(),
            class_names=list(info["spec"].get("class_names") or []),
            model_description=info["spec"].get("description") or None,
            blocks=self._blocks.settings(self._output.value),  # None: in memory (block_controls.py)
        )
        check_inference_options(**job.core_options())  # the API's checks, before the worker starts
        return job

    # ------------------------------------------------------------------ worker callbacks
    def _set_running(self, running: bool) -> None:
        self._run_button.enabled = not running
        self._cancel_button.enabled = running

    def _on_event(self, event: Any) -> None:
        self.last_event = event
        if getattr(event, "stage", None) == "size" and getattr(event, "value", None) is not None:
            self.estimated_object_size = float(event.value)
        message = getattr(event, "message", "") or getattr(event, "stage", "")
        self._status.value = wrap_text(str(message))

    def _on_aborted(self) -> None:
        self._status.value = wrap_text(self._blocks.cancelled_text())

    def _on_result(self, job: SegmentJob, result: Any) -> None:
        probabilities = job.output == "probabilities"
        result, tracks = result if job.makes_tracks else (result, None)
        where = {"image": job.source.layer, "image_axes": job.source.layer_axes, "out_axes": job.layout.out_axes}
        prov = job.provenance()
        target = show_result(
            self._viewer, result, **where, provenance=prov, probabilities=probabilities, class_names=job.class_names
        )
        if not probabilities:  # without tracks, our earlier tracks layer of this image goes
            self.tracks_layer = show_tracks(self._viewer, tracks, **where, provenance=prov)
        name, self.result_layer = result_layer_name(job.source.layer.name, probabilities), target
        settings.add_recent_model(job.model_path)
        summary = job.summary(result)
        if self.estimated_object_size is not None:
            summary += f", object size {self.estimated_object_size:.0f} px (estimated)"
        self._status.value = wrap_text(f"done: {name!r}, {summary}")
        self.last_console_call = console_call(job)
        log.info("equivalent console call: %s", self.last_console_call)
        show_info(f"Segment with U-Net: {name!r} ({summary}). Console equivalent: {self.last_console_call}")

    # ------------------------------------------------------------------ GUI callbacks
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
        if isinstance(layer, Image) and not is_result_layer(layer):
            with contextlib.suppress(ValueError):  # not among the Image box's layers
                self.select_image(layer)

    def _on_image_changed(self, *_: Any) -> None:
        layer = self._image.value
        if layer is not self._watched_layer:
            if self._watched_layer is not None and self._axes.value:
                self._axes.value = ""  # the axes typed for the previous image
            self._image_watch.watch([layer])
            self._watched_layer = layer
        self._refresh_extra()
        self._update_axes_info()

    def _on_model_changed(self, *_: Any) -> None:
        path = self._model.value
        if not path:
            self._model_info.value = wrap_text("No model yet: add a model file with Browse…")
            self._model_info.tooltip = None
        else:
            try:
                info = self._model_info_for(path)
                self._model_info.value = wrap_text(summarize_model(info))
                self._model_info.tooltip = describe_model(path)
            except (ValueError, OSError) as exc:
                self._model_info.value = wrap_text(f"⚠ {error_message(exc)}")
                self._model_info.tooltip = None
        self._update_axes_info()
        # once the panel is on screen: import torch and prepare this model in the background
        from qtpy.QtCore import QTimer

        QTimer.singleShot(300, self._warm_up)

    def _warm_up(self) -> None:
        try:
            path, device = self._model.value, self._device.value
        except RuntimeError:  # the panel was closed before the timer fired
            return
        if not self.running:  # a run prepares the model itself
            warm_up(path, device)
        self.device_info.refresh()

    def _update_axes_info(self, *_: Any) -> None:
        """Show how the layer will be read: with a model, ``plan_layout(...).describe()``."""
        try:
            source = self._input()
        except (ValueError, TypeError) as exc:
            self._axes_info.value = wrap_text(f"⚠ {error_message(exc)}")
            return
        text = source.describe()
        path = self._model.value
        if path:
            try:
                info = self._model_info_for(path)
                text = source.describe(plan_job(source, info, parse_channels(self._channels.value)))
            except (ValueError, TypeError, OSError) as exc:
                text = f"{text}\n⚠ {error_message(exc)}"
        self._axes_info.value = wrap_text(text)
