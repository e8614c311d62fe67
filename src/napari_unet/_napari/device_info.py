"""The Segment panel's "Runs on" line: the device a run will use and, when a GPU is present but the CPU is
used (or the GPU will fail), why, with "see napari-unet doctor" (the reason is in the line's tooltip).

The note comes from :func:`napari_unet._doctor.device_note.device_note`, which imports torch and may run
``nvidia-smi``: it runs in a worker thread, started when the Device box changes and once the panel is shown
(with the warm-up), never while the panel is built.
"""

from __future__ import annotations

from typing import Any

from .segment_form import wrap_text


class DeviceInfo:
    """Keeps ``label`` in step with the ``device_box`` (a ComboBox of device choices)."""

    def __init__(self, device_box: Any, label: Any) -> None:
        self._box, self._label = device_box, label
        self._worker: Any = None
        self.note: Any = None  #: the last :class:`~napari_unet._doctor.device_note.DeviceNote` shown
        label.value = "(checked when the panel is shown)"
        device_box.changed.connect(self.refresh)

    def refresh(self, *_: Any) -> Any:
        """Work out the note for the current choice in a worker thread; returns the worker."""
        from napari.qt.threading import create_worker

        from .._doctor.device_note import device_note

        worker = create_worker(device_note, self._box.value, _start_thread=False)
        worker.returned.connect(self.show)
        worker.errored.connect(lambda err: self.show(None, error=err))
        self._worker = worker
        worker.start()
        return worker

    def show(self, note: Any, error: BaseException | None = None) -> None:
        """Put ``note`` (a DeviceNote) on the label; its reason, when there is one, in the tooltip."""
        try:
            if note is None:
                self._label.value = wrap_text(f"⚠ could not check the device ({error}); see `napari-unet doctor`")
                self._label.tooltip = None
                return
            self.note = note
            self._label.value = wrap_text(note.text + (f"\n{note.reason}" if note.reason else ""))
            self._label.tooltip = note.reason or f"Runs on {note.device}; `napari-unet doctor` checks every device."
        except RuntimeError:  # the panel was closed before the worker returned
            pass
