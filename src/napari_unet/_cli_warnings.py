"""How the ``napari-unet`` command shows a warning: one ``napari-unet: warning: ...`` line on stderr.

Python's own format (``file.py:123: NonFiniteWarning: ...`` plus the source line) is for
programmers. The core's warnings name the input they are about (e.g. ``cells.tif: 3 of 1517
pixel values are not finite ...``), so each becomes one line, shown every time (not once per
process), while a command runs.
"""

from __future__ import annotations

import contextlib
import sys
import warnings
from collections.abc import Iterator
from typing import Any

__all__ = ["warnings_as_lines"]


def _show(message: Any, category: type, filename: str, lineno: int, file: Any = None, line: Any = None) -> None:
    text = " ".join(str(message).split()) or category.__name__
    print(f"napari-unet: warning: {text}", file=sys.stderr)


@contextlib.contextmanager
def warnings_as_lines() -> Iterator[None]:
    """Within the block (or the decorated function), every warning is one line on stderr."""
    from .core.image.checks import NonFiniteWarning

    with warnings.catch_warnings():
        warnings.simplefilter("always", NonFiniteWarning)  # once per input, even for the same name twice
        warnings.showwarning = _show
        yield
