"""Run a core generator in a thread, with napari's progress bar, notifications and cancel.

The core's long computations (:func:`~napari_unet.core.inference.run.iter_predict`,
:func:`~napari_unet.core.segment.iter_segment`, training later) are generators: they yield
small progress events (objects with ``step``, ``total``, ``stage`` and ``message``
attributes) and *return* their result. :func:`start_worker` runs such a generator in a
worker thread with napari's own :func:`napari.qt.threading.create_worker` (the function
behind ``@thread_worker``) and adapts it to the GUI:

* every yielded event updates one :class:`napari.utils.progress` bar (shown in napari's
  activity dock): the bar's total and position follow the event's ``total``/``step``, and
  restart when the ``stage`` changes; its description is ``"<description>: <message>"``;
* the generator's return value goes to ``on_result`` (in the main thread);
* an exception shows as **one** line with :func:`napari.utils.notifications.show_error`
  (logged at ERROR as that line; its traceback at DEBUG, or at ERROR with ``NAPARI_UNET_DEBUG=1``:
  never on the console unless asked for); napari's default error relay, which would add a second
  notification with a traceback, is switched off;
* a warning the generator emits (e.g. the core's
  :class:`~napari_unet.core.image.checks.NonFiniteWarning`) shows as one line with
  :func:`napari.utils.notifications.show_warning`, each time, and is logged;
* ``worker.quit()`` cancels: the generator is stopped (closed) at its next ``yield``,
  ``on_result`` is not called, ``on_aborted`` is;
* the progress bar is closed whatever happens, then ``on_finished`` runs;
* callbacks run in the main thread, in the order the worker emitted them, one at a time
  (see :class:`SerialDispatcher`: napari's progress bar re-enters the Qt event loop).

Nothing here imports torch; the generator function imports what it needs when it runs.

Example
-------
>>> worker = start_worker(
...     my_generator_function, image, model_path,
...     description="Segment 'nuclei'",
...     on_result=add_layer, on_event=lambda ev: status.set(ev.message),
... )
>>> worker.quit()   # e.g. from a Cancel button
"""

from __future__ import annotations

import logging
import os
from collections import deque
from collections.abc import Callable, Generator
from typing import Any, TypeVar

from napari.qt.threading import GeneratorWorker, create_worker
from napari.utils import progress
from napari.utils.notifications import show_error, show_warning

from .._cli_errors import DEBUG_ENV

__all__ = ["ProgressAdapter", "SerialDispatcher", "UNetWorker", "error_message", "log_failure", "start_worker"]

log = logging.getLogger(__name__)


def log_failure(message: str, exc: BaseException) -> None:
    """Log ``message`` at ERROR; the traceback only at DEBUG, or at ERROR when ``NAPARI_UNET_DEBUG`` is set.

    Python's last-resort handler prints ERROR records with their traceback on the console, so
    a traceback attached at ERROR would show there whenever no logging is configured.
    """
    exc_info = (type(exc), exc, exc.__traceback__)
    if os.environ.get(DEBUG_ENV, "").strip() not in ("", "0"):
        log.error("%s", message, exc_info=exc_info)
        return
    log.error("%s", message)
    log.debug("traceback of: %s", message, exc_info=exc_info)


R = TypeVar("R")


def error_message(exc: BaseException, prefix: str = "") -> str:
    """One line describing ``exc`` for a notification.

    Parameters
    ----------
    exc : BaseException
        The error.
    prefix : str
        Put in front, e.g. ``"Segment with U-Net failed"`` (joined with ``": "``).

    Returns
    -------
    str
        ``"<prefix>: <message>"``. The exception's own text is used as is for ``ValueError``,
        ``TypeError``, ``FileNotFoundError`` and ``MemoryError`` (the core's messages are
        written for users); other exceptions are prefixed with their class name. Line breaks
        are folded into spaces.
    """
    text = " ".join(str(exc).split())
    plain = (ValueError, TypeError, FileNotFoundError, MemoryError)
    if not text:
        text = type(exc).__name__
    elif not isinstance(exc, plain):
        text = f"{type(exc).__name__}: {text}"
    return f"{prefix}: {text}" if prefix else text


class UNetWorker(GeneratorWorker):
    """napari's :class:`~napari.qt.threading.GeneratorWorker`, minus its error notification.

    napari's worker relays every exception to ``notification_manager.receive_error``, which
    shows a notification carrying the full traceback. :func:`start_worker` shows its own
    one-line message instead, so that relay is a no-op here; warnings likewise (one
    ``show_warning`` line each).

    On :meth:`quit` the generator is closed as soon as the worker loop notices the request
    (at the generator's next ``yield``), so its ``finally`` blocks run in the worker thread.
    """

    def __init__(self, func: Callable[..., Generator[Any, Any, Any]], *args: Any, **kwargs: Any) -> None:
        super().__init__(func, *args, **kwargs)
        self._gen = _surfacing_runtime_errors(self._gen)

    def _relay_error(self, exc: BaseException) -> None:
        """Do nothing: :func:`start_worker` reports errors itself, once."""

    def _relay_warning(self, show_warn_args: tuple) -> None:
        """Do nothing: :func:`start_worker` shows warnings itself, once each."""

    def work(self) -> Any:
        """Run the generator; close it when the run was aborted."""
        try:
            return super().work()
        finally:
            gen = getattr(self, "_gen", None)
            if self.abort_requested and gen is not None:
                try:
                    gen.close()
                except Exception:  # noqa: BLE001 - cleanup errors must not mask the abort
                    log.debug("error while closing an aborted generator", exc_info=True)


class GeneratorRuntimeError(Exception):
    """Carries a ``RuntimeError`` raised by a worker's generator (torch's errors are RuntimeErrors).

    superqt's worker loop takes any ``RuntimeError`` for a sign that the worker was deleted: it
    drops it with a warning and emits neither ``errored`` nor ``finished``, so a panel would wait
    for its run forever. Wrapped, it is reported like any other error; :func:`start_worker` hands
    the original (:attr:`error`) to the notification and to ``on_error``.
    """

    def __init__(self, error: RuntimeError) -> None:
        super().__init__(str(error))
        self.error = error


def _surfacing_runtime_errors(gen: Generator[Any, Any, Any]) -> Generator[Any, Any, Any]:
    try:
        return (yield from gen)
    except RuntimeError as err:
        raise GeneratorRuntimeError(err) from err


class SerialDispatcher:
    """Run callbacks one at a time, in the order they were queued, never nested.

    napari's activity-dock progress bar calls ``QApplication.processEvents()`` whenever its
    value or description changes. Inside a ``yielded`` handler that lets Qt deliver the
    worker's *later* queued signals (more events, ``returned``, ``finished``) before the
    handler is done, so callbacks would interleave and run out of order (a stale message
    could overwrite "done"). Every worker signal goes through one dispatcher: a call made
    while another is running is queued and run right after it.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._queue: deque[tuple[Callable[..., Any], tuple[Any, ...]]] = deque()
        self._busy = False

    def __call__(self, function: Callable[..., Any], *args: Any) -> None:
        """Run ``function(*args)`` now, or after the callback that is running."""
        self._queue.append((function, args))
        if self._busy:
            return
        self._busy = True
        try:
            while self._queue:
                func, fargs = self._queue.popleft()
                try:
                    func(*fargs)
                except Exception as exc:  # noqa: BLE001 - one broken callback must not stall the others
                    message = error_message(exc, f"{self.name}: internal error")
                    log_failure(message, exc)
                    show_error(message)
        finally:
            self._busy = False

    def bind(self, function: Callable[..., Any]) -> Callable[..., None]:
        """A slot that dispatches ``function`` through this dispatcher."""

        def slot(*args: Any) -> None:
            self(function, *args)

        return slot


class ProgressAdapter:
    """Drive one :class:`napari.utils.progress` bar from progress events.

    Parameters
    ----------
    description : str
        Shown before each event's message, e.g. ``"Segment 'nuclei'"``.

    Notes
    -----
    Events are duck-typed: ``step`` and ``total`` (int), ``stage`` (str) and ``message``
    (str) are read when present. A ``total`` of 0 makes the bar indeterminate. When
    ``stage`` or ``total`` changes the bar restarts at the event's step.
    """

    def __init__(self, description: str) -> None:
        self.description = description
        self._stage: str | None = None
        self._closed = False
        self.bar = progress(total=0, desc=f"{description}: starting")

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def update(self, event: Any) -> None:
        """Move the bar to ``event.step`` of ``event.total`` and show ``event.message``."""
        if self._closed:
            return
        step = getattr(event, "step", None)
        total = getattr(event, "total", None)
        stage = getattr(event, "stage", None)
        message = getattr(event, "message", None) or stage
        if isinstance(step, int) and isinstance(total, int):
            if stage != self._stage or total != self.bar.total:
                self._stage = stage
                self.bar.reset(total=max(total, 0))
            delta = step - self.bar.n
            if delta:
                self.bar.update(delta)
        if message:
            self.bar.set_description(f"{self.description}: {message}")

    def close(self) -> None:
        """Remove the bar from napari's activity dock (idempotent)."""
        if not self._closed:
            self._closed = True
            self.bar.close()


def start_worker(  # noqa: C901
    function: Callable[..., Generator[Any, Any, R]],
    *args: Any,
    description: str,
    on_result: Callable[[R], Any] | None = None,
    on_event: Callable[[Any], Any] | None = None,
    on_error: Callable[[BaseException], Any] | None = None,
    on_aborted: Callable[[], Any] | None = None,
    on_finished: Callable[[], Any] | None = None,
    error_prefix: str | None = None,
    show_progress: bool = True,
    start: bool = True,
    **kwargs: Any,
) -> UNetWorker:
    """Run the generator function ``function(*args, **kwargs)`` in a worker thread.

    Parameters
    ----------
    function : callable
        A generator function. It runs in the worker thread: import heavy modules (torch)
        inside it. It yields progress events and returns the result.
    *args, **kwargs
        Passed to ``function``.
    description : str
        Names the job in the progress bar (e.g. ``"Segment 'nuclei'"``).
    on_result : callable, optional
        Called in the main thread with the generator's return value, unless the run was
        cancelled. An exception it raises is reported like one from the worker.
    on_event : callable, optional
        Called in the main thread with every yielded event (after the progress bar moved).
    on_error : callable, optional
        Called in the main thread with the exception, after the error notification.
    on_aborted : callable, optional
        Called in the main thread when the run was cancelled with ``worker.quit()``.
    on_finished : callable, optional
        Called last in every case (success, error, cancel), after the bar was closed.
    error_prefix : str, optional
        Start of the error notification; default ``"<description> failed"``.
    show_progress : bool
        Show a progress bar in napari's activity dock.
    start : bool
        Start the thread now. With False, connect more signals, then call ``worker.start()``.

    Returns
    -------
    UNetWorker
        The worker; ``worker.quit()`` cancels it. Its ``progress_adapter`` attribute is the
        :class:`ProgressAdapter` (None when ``show_progress`` is False).
    """
    prefix = f"{description} failed" if error_prefix is None else error_prefix
    worker: UNetWorker = create_worker(
        function, *args, _worker_class=UNetWorker, _start_thread=False, _ignore_errors=True, **kwargs
    )
    adapter = ProgressAdapter(description) if show_progress else None
    worker.progress_adapter = adapter  # type: ignore[attr-defined]
    state = {"failed": False, "aborted": False}

    def _report(exc: BaseException) -> None:
        exc = exc.error if isinstance(exc, GeneratorRuntimeError) else exc
        state["failed"] = True
        message = error_message(exc, prefix)
        log_failure(message, exc)
        show_error(message)
        if on_error is not None:
            try:
                on_error(exc)
            except Exception:  # noqa: BLE001 - a broken callback must not hide the first error
                log.exception("on_error callback failed")

    def _yielded(event: Any) -> None:
        if adapter is not None:
            adapter.update(event)
        if on_event is not None:
            on_event(event)

    def _returned(result: Any) -> None:
        # quit() may arrive after the worker emitted its result but before we got here
        if worker.abort_requested:
            log.debug("%s: result discarded, the run was cancelled", description)
            return
        if on_result is None:
            return
        try:
            on_result(result)
        except Exception as exc:  # noqa: BLE001 - shown as a notification like worker errors
            _report(exc)

    def _warned(show_warn_args: tuple) -> None:
        text = " ".join(str(show_warn_args[0]).split())
        log.warning("%s: %s", description, text)
        show_warning(text)

    def _aborted() -> None:
        state["aborted"] = True
        log.info("%s: cancelled", description)

    def _finished() -> None:
        if adapter is not None:
            adapter.close()
        if worker.abort_requested and not state["failed"]:
            if not state["aborted"]:
                log.info("%s: cancelled", description)
            if on_aborted is not None:
                on_aborted()
        if on_finished is not None:
            on_finished()

    serial = SerialDispatcher(description)
    worker.yielded.connect(serial.bind(_yielded))
    worker.returned.connect(serial.bind(_returned))
    worker.errored.connect(serial.bind(_report))
    worker.warned.connect(serial.bind(_warned))
    worker.aborted.connect(serial.bind(_aborted))
    worker.finished.connect(serial.bind(_finished))
    if start:
        try:
            worker.start()
        except BaseException:
            if adapter is not None:
                adapter.close()
            raise
    return worker
