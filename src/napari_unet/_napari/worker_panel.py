"""What a dock panel that runs one worker at a time shares: start it, refuse to, and tidy up after it.

:class:`WorkerPanel` is a mixin for a magicgui Container with a ``_status`` Label. The panel
names itself (:attr:`~WorkerPanel.title`, used in notifications) and provides
``_set_running(running)`` (which buttons are enabled) and the callbacks ``_on_event`` and
``_on_aborted``; it passes its result callback to :meth:`~WorkerPanel._launch`. Errors follow
the project's rule: one notification, and the reason in the status line.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Generator
from typing import Any

from napari.utils.notifications import show_error, show_info

from .segment_form import wrap_text
from .workers import UNetWorker, error_message, log_failure, start_worker

__all__ = ["WorkerPanel"]

log = logging.getLogger(__name__)


class WorkerPanel:
    """Mixin: the worker of a panel, its start and its end (see the module's notes)."""

    #: The panel's name in notifications, e.g. ``"Train U-Net"``.
    title = "napari-unet"
    #: What the panel's stop button does, for "already running; stop it first".
    stop_verb = "stop"
    _worker: UNetWorker | None = None
    _status: Any

    @property
    def running(self) -> bool:
        """Whether the panel's worker is running."""
        return self._worker is not None

    @property
    def worker(self) -> UNetWorker | None:
        """The running worker, if any."""
        return self._worker

    def _set_running(self, running: bool) -> None:
        raise NotImplementedError

    def _on_event(self, event: Any) -> None:
        raise NotImplementedError

    def _on_aborted(self) -> None:
        raise NotImplementedError

    def _busy(self) -> bool:
        """True (with a note) when a worker runs already."""
        if self._worker is None:
            return False
        show_info(f"{self.title} is already running; {self.stop_verb} it first")
        return True

    def _refuse(self, exc: BaseException) -> None:
        """Say why nothing started: one error notification, and the reason in the status line."""
        message = error_message(exc, self.title)
        log_failure(message, exc)
        show_error(message)
        self._status.value = wrap_text(f"not started: {error_message(exc)}")

    def _launch(
        self,
        function: Callable[..., Generator[Any, None, Any]],
        *args: Any,
        description: str,
        on_result: Callable[[Any], Any],
    ) -> UNetWorker:
        """Start ``function(*args)`` in a worker wired to the panel's callbacks."""
        self._set_running(True)
        try:
            self._worker = start_worker(
                function,
                *args,
                description=description,
                on_result=on_result,
                on_event=self._on_event,
                on_error=self._on_error,
                on_aborted=self._on_aborted,
                on_finished=self._on_finished,
                error_prefix=f"{self.title} failed",
            )
        except Exception:
            self._set_running(False)
            raise
        return self._worker

    def _on_error(self, exc: BaseException) -> None:
        self._status.value = wrap_text(f"failed: {error_message(exc)}")

    def _on_finished(self) -> None:
        self._worker = None
        self._set_running(False)
