"""Progress events of the core's long computations, and a text progress bar for them.

The core's long computations (prediction, segmentation, training, evaluation) are generators:
they yield :class:`Progress` events (training yields its own events) and ``return`` their
result. :func:`drain` runs one to the end; :class:`TextProgress` draws the events for the CLI
and the console API. No dependencies beyond the standard library.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any, TextIO


@dataclass(frozen=True)
class Progress:
    """One progress event of a long computation.

    Attributes
    ----------
    step, total : int
        Work done so far and in all (tiles for ``stage == "tiles"``).
    stage : str
        ``"size"`` (estimating the object size), ``"rescale"``, ``"normalise"``, ``"tiles"``,
        ``"retry"`` (smaller tiles after running out of GPU memory), ``"postprocess"``, ``"track"``
        (time-lapses: labels matched across frames, ``step`` = frames done) or ``"done"``.
    message : str
        Short human-readable text.
    value : float or None
        A number the stage produced: the object diameter (pixels) at the end of ``"size"``.
    """

    step: int
    total: int
    stage: str
    message: str = ""
    value: float | None = None

    @property
    def fraction(self) -> float:
        return self.step / self.total if self.total else 1.0


def drain(gen: Generator[Any, None, Any], progress: Callable[[Any], Any] | None = None) -> Any:
    """Run a core generator to the end, passing each event to ``progress``; return its value."""
    while True:
        try:
            event = next(gen)
        except StopIteration as stop:
            return stop.value
        if progress is not None:
            progress(event)


class TextProgress:
    """Callable that draws :class:`~napari_unet.core.progress.Progress` events on a stream.

    On a terminal it redraws one line; elsewhere (logs, CI) it prints at most one line per
    10 % of each stage so logs stay short.
    """

    def __init__(self, stream: TextIO | None = None, width: int = 30, prefix: str = "") -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.width = width
        self.prefix = prefix
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._stage = None
        self._last_decile = -1
        self._start = time.perf_counter()

    def __call__(self, event: Any) -> None:
        if event.stage != self._stage:
            self._stage, self._last_decile, self._start = event.stage, -1, time.perf_counter()
        frac = min(1.0, max(0.0, event.fraction))
        filled = int(round(frac * self.width))
        bar = "#" * filled + "-" * (self.width - filled)
        elapsed = time.perf_counter() - self._start
        line = f"{self.prefix}{event.stage:<11} [{bar}] {event.step}/{event.total} {elapsed:5.1f}s"
        if self.tty:
            end = "\n" if frac >= 1.0 else ""
            self.stream.write("\r" + line + end)
            self.stream.flush()
            return
        decile = int(frac * 10)
        if decile > self._last_decile:
            self._last_decile = decile
            self.stream.write(line + "\n")
            self.stream.flush()


class StepProgress:
    """A training step event (``TrainEvent`` of kind ``"step"``) seen as a Progress event within its epoch.

    Lets :class:`TextProgress` draw training: ``bar(StepProgress(event))``.
    """

    def __init__(self, event: Any) -> None:
        per_epoch = max(1, event.total_steps // max(1, event.epochs))
        self.stage = f"epoch {event.epoch}"
        self.step = event.step - (event.epoch - 1) * per_epoch
        self.total = per_epoch
        self.fraction = self.step / self.total
