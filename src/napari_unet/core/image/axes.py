"""Axes strings and how an image's axes map onto what a model needs.

An axes string has one uppercase letter per array dimension, as tifffile writes them:
``T`` time, ``Z`` depth, ``C`` channel, ``Y``/``X`` the plane, ``S`` samples (RGB), and any
other letter (``I``, ``Q``, ...) for a generic leading axis that is iterated.

How an image with such axes feeds a model (:class:`~napari_unet.core.image.layout.Layout`) is
planned in :mod:`~napari_unet.core.image.layout`.
"""

from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

KNOWN_AXES = "TZCYXS"
GRAY_WEIGHTS = (0.299, 0.587, 0.114)  # ITU-R BT.601 luma


class AxesGuessWarning(UserWarning):
    """Raised as a warning when axes were guessed from an array's shape."""


def validate_axes(axes: str, shape: Sequence[int]) -> str:
    """Check ``axes`` against an array shape and return it upper-cased.

    Raises
    ------
    ValueError
        Wrong length, repeated letters, non-letters, or no ``Y``/``X``.
    """
    if not isinstance(axes, str):
        raise TypeError(f"axes must be a string such as 'ZCYX', got {type(axes).__name__} {axes!r}")
    up = axes.upper()
    if len(up) != len(shape):
        raise ValueError(
            f"axes {axes!r} name {len(up)} dimensions but the image has {len(shape)} (shape {tuple(shape)})"
        )
    if not up.isalpha() or not up.isascii():
        raise ValueError(f"axes {axes!r} must be letters only, e.g. 'TZCYX'")
    repeated = sorted({a for a in up if up.count(a) > 1})
    if repeated:
        raise ValueError(f"axes {axes!r} repeat {', '.join(repeated)}")
    if "Y" not in up or "X" not in up:
        raise ValueError(f"axes {axes!r} must contain both Y and X")
    return up


def guess_axes(shape: Sequence[int]) -> str:
    """Guess axes for an array without metadata, and warn that it is a guess.

    Rules: 2D ``YX``; 3D ``YXS`` when the last axis has 3 or 4 entries, ``CYX`` when the first
    has at most 4, else ``ZYX``; 4D ``ZCYX`` when the second axis has at most 4 entries,
    ``CZYX`` when the first has, else ``TZYX``; 5D ``TZCYX``.
    """
    shape = tuple(int(s) for s in shape)
    nd = len(shape)
    if nd == 2:
        return "YX"  # not a guess worth a warning
    if nd == 3:
        if shape[-1] in (3, 4) and shape[0] > 4:
            axes = "YXS"
        elif shape[0] <= 4:
            axes = "CYX"
        else:
            axes = "ZYX"
    elif nd == 4:
        axes = "ZCYX" if shape[1] <= 4 else "CZYX" if shape[0] <= 4 else "TZYX"
    elif nd == 5:
        axes = "TZCYX"
    else:
        raise ValueError(f"cannot guess axes for a {nd}D array of shape {shape}: pass axes=, e.g. 'YX'")
    warnings.warn(
        AxesGuessWarning(
            f"no axes given for an array of shape {shape}; guessed {axes!r}. "
            "Pass axes= (e.g. axes='ZCYX') if that is wrong."
        ),
        stacklevel=3,
    )
    return axes


#: Where :func:`choose_axes` took an image's axes from.
AXES_ORIGINS = ("given", "recorded", "rgb", "2D", "guessed", "unknown")


@dataclass(frozen=True)
class AxesChoice:
    """An image's axes and where they came from (see :func:`choose_axes`).

    Attributes
    ----------
    axes : str or None
        The axes string; None when ``origin`` is ``"unknown"``.
    origin : str
        One of :data:`AXES_ORIGINS`: ``"given"`` (passed by the caller), ``"recorded"`` (from the
        file or layer metadata), ``"rgb"`` (an RGB image), ``"2D"`` (two dimensions),
        ``"guessed"`` (from the shape) or ``"unknown"`` (not guessed).
    note : str
        Why recorded axes were ignored, if they were; else ``""``.
    """

    axes: str | None
    origin: str
    note: str = ""


def choose_axes(
    shape: Sequence[int], given: str | None = None, *, recorded: Any = None, rgb: bool = False, guess: bool = True
) -> AxesChoice:
    """Decide an image's axes from what is known about it, most explicit first.

    Order of precedence: ``given`` (validated; a bad value raises), ``recorded`` (e.g. a
    layer's ``metadata["axes"]``; ignored, with a note, when it does not fit ``shape``),
    ``...YXS`` for an RGB image of 3 or 4 dimensions, ``YX`` for 2 dimensions, else
    :func:`guess_axes` (its warning silenced: the origin says it was guessed).

    Parameters
    ----------
    shape : sequence of int
        The image's shape.
    given : str, optional
        Axes the user passed or typed; blank counts as not given.
    recorded : object, optional
        Axes stored with the image; used when it is a string that fits ``shape``.
    rgb : bool
        The image is RGB(A) with its samples last.
    guess : bool
        Guess from the shape when nothing else applies; with False the result is
        ``AxesChoice(None, "unknown")`` (the core guesses later, with a warning).

    Returns
    -------
    AxesChoice

    Raises
    ------
    ValueError
        ``given`` does not fit ``shape``, or a guess is needed for more than 5 dimensions.
    """
    shape = tuple(int(s) for s in shape)
    if isinstance(given, str):
        given = given.strip() or None
    if given is not None:
        return AxesChoice(validate_axes(given, shape), "given")
    note = ""
    if isinstance(recorded, str) and recorded:
        try:
            return AxesChoice(validate_axes(recorded, shape), "recorded")
        except ValueError as exc:
            note = f"metadata axes ignored: {exc}"
    if rgb and 3 <= len(shape) <= 4:
        return AxesChoice("TYXS"[-len(shape) :], "rgb", note)
    if len(shape) == 2:
        return AxesChoice("YX", "2D", note)
    if not guess:
        return AxesChoice(None, "unknown", note)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AxesGuessWarning)
        return AxesChoice(guess_axes(shape), "guessed", note)


def parse_channels(text: str | None, *, strict: bool = False) -> list[int | str] | None:
    """Parse a typed channel list: ``"0,1"`` → ``[0, 1]``, ``"DNA, membrane"`` → names.

    Parameters
    ----------
    text : str or None
        Comma-separated channel indices and/or names.
    strict : bool
        Raise on an empty entry (``"0,,1"``, ``""``) instead of skipping it.

    Returns
    -------
    list of int or str, or None
        None when ``text`` is None, or blank and not ``strict``.

    Raises
    ------
    ValueError
        ``strict`` and an entry is empty.
    """
    if text is None:
        return None
    items = [t.strip() for t in text.split(",")]
    if strict and not all(items):
        raise ValueError(f"channels {text!r}: empty entry")
    items = [t for t in items if t]
    if not items:
        return None
    return [int(t) if re.fullmatch(r"[+-]?\d+", t) else t for t in items]
