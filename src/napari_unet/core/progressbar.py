"""A dependency-free text progress bar for the CLI and the console API."""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO


class TextProgress:
    """Callable that draws :class:`~napari_unet.core.inference.Progress` events on a stream.

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
