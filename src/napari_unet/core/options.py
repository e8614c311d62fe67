"""Options as users give them (Python values, command-line text, panel values), checked in one place.

Every public entry point (:mod:`napari_unet.api`, the ``napari-unet`` command, the napari panels,
:func:`~napari_unet.core.training.loop.iter_train`, :func:`~napari_unet.core.model.file.load_model`)
runs its options through these functions before any work starts, so a bad value is refused
with one ``ValueError`` that names the parameter, the value (and its type) and what was expected,
e.g. ``tile_size must be an integer >= 1 or a sequence of integers >= 1 (one per spatial axis), got '64'
(str)``. Each checker returns the value normalised (``64.0`` -> ``64``, ``np.int64(2)`` -> ``2``); a device
is only checked for its spelling here (``device=1`` is torch's ``"cuda:1"``), :func:`resolve_device`
then finds it.

Importing this module does not import torch; :func:`resolve_device` imports it when called.
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

__all__ = [
    "PRECISIONS",
    "Z_MODES",
    "check_anisotropy",
    "check_bool",
    "check_channels",
    "check_choice",
    "check_compile",
    "check_device",
    "check_inference_options",
    "check_int",
    "check_ints",
    "check_number",
    "check_training_options",
    "resolve_device",
]

PRECISIONS = ("auto", "float32", "bfloat16", "float16")
#: How a 2D instance model's planes of a z-stack become labels (see :mod:`napari_unet.core.labels.zstack`);
#: the first is the default.
Z_MODES = ("3d", "stitch", "planes", "3d-ortho")
_DEVICES_HINT = "use 'auto', 'cpu', 'cuda', 'cuda:N' (or the integer N) or 'mps'"
_DEVICE_NAME = re.compile(r"|auto|(cpu|gpu|cuda|mps)(:\d+)?|\d+")


def _got(value: Any) -> str:
    """``'64' (str)``: the value and its type, for messages."""
    return f"{value!r} ({type(value).__name__})"


def _is_integral(value: Any) -> bool:
    """An int (numpy ints included) or an integral float; never a bool or a string."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return False
    if isinstance(value, numbers.Integral):
        return True
    return math.isfinite(float(value)) and float(value).is_integer()


def check_int(
    name: str, value: Any, minimum: int | None = None, maximum: int | None = None, *, optional: bool = False
) -> int | None:
    """``value`` as an int in ``minimum..maximum``; None passes when ``optional``."""
    if value is None and optional:
        return None
    if (
        not _is_integral(value)
        or (minimum is not None and value < minimum)
        or (maximum is not None and value > maximum)
    ):
        if minimum is not None and maximum is not None:
            bounds = f" in {minimum}..{maximum}"
        elif minimum is not None:
            bounds = f" >= {minimum}"
        else:
            bounds = ""
        raise ValueError(f"{name} must be an integer{bounds}, got {_got(value)}")
    return int(value)


def check_ints(name: str, value: Any, minimum: int, *, optional: bool = True) -> int | tuple[int, ...] | None:
    """An int ``>= minimum`` or a sequence of them (one per spatial axis), e.g. ``tile_size``."""
    if value is None and optional:
        return None
    items = tuple(value) if isinstance(value, (list, tuple)) or _is_array(value) else None
    values = items if items is not None else (value,)
    if not values or not all(_is_integral(v) and v >= minimum for v in values):
        raise ValueError(
            f"{name} must be an integer >= {minimum} or a sequence of integers >= {minimum} (one per spatial "
            f"axis), got {_got(value)}"
        )
    return tuple(int(v) for v in values) if items is not None else int(value)


def _is_array(value: Any) -> bool:
    return hasattr(value, "ndim") and hasattr(value, "shape") and getattr(value, "ndim", 0) == 1


def check_number(
    name: str,
    value: Any,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    positive: bool = False,
    optional: bool = False,
    what: str = "a number",
) -> float | None:
    """``value`` as a finite float (``> 0`` when ``positive``, within the bounds given)."""
    if value is None and optional:
        return None
    ok = not isinstance(value, bool) and isinstance(value, numbers.Real) and math.isfinite(float(value))
    if ok:
        v = float(value)
        ok = (not positive or v > 0) and (minimum is None or v >= minimum) and (maximum is None or v <= maximum)
    if not ok:
        expected = what if what != "a number" else ("a positive number" if positive else "a finite number")
        if minimum is not None and maximum is not None:
            expected += f" in {minimum:g}..{maximum:g}"
        elif minimum is not None:
            expected += f" (>= {minimum:g})"
        raise ValueError(f"{name} must be {expected}, got {_got(value)}")
    return float(value)


def check_bool(name: str, value: Any) -> bool:
    """True or False (numpy bools included); anything else raises."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise ValueError(f"{name} must be True or False, got {_got(value)}")


def check_choice(name: str, value: Any, choices: Sequence[str]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(repr(c) for c in choices)}, got {_got(value)}")
    return value


def check_compile(value: Any) -> bool | str:
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if value == "auto" and isinstance(value, str):
        return "auto"
    raise ValueError(f"compile must be True, False or 'auto', got {_got(value)}")


def check_channels(value: Any) -> Any:
    """None, a channel index or name, or a sequence of them (order kept)."""

    def one(v: Any) -> bool:
        return isinstance(v, str) or (isinstance(v, numbers.Integral) and not isinstance(v, bool))

    if value is None or one(value):
        return value
    if isinstance(value, (list, tuple)) and all(one(v) for v in value):
        return value
    raise ValueError(
        f"channels must be a channel index, a channel name or a list of them (e.g. [0, 2] or ['DAPI']), "
        f"got {_got(value)}"
    )


# ---------------------------------------------------------------------------- devices
def check_device(device: Any) -> Any:
    """``device`` as given when it is spelled like a device (no hardware is looked for).

    Accepted: None or ``"auto"``, a name (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"gpu"``, ``"mps"``),
    a torch.device, or an integer N >= 0, torch's spelling of ``"cuda:N"``. Bools, floats and other
    types raise ValueError naming ``device``.
    """
    if device is None:
        return device
    if isinstance(device, str):
        if not _DEVICE_NAME.fullmatch(device.strip().lower()):
            raise ValueError(f"unknown device {device!r}: {_DEVICES_HINT}")
        return device
    if type(device).__name__ == "device" and type(device).__module__.startswith("torch"):
        return device
    if isinstance(device, numbers.Integral) and not isinstance(device, bool):
        if device < 0:
            raise ValueError(f"device must be a CUDA device index >= 0 or a name ({_DEVICES_HINT}), got {_got(device)}")
        return int(device)
    raise ValueError(f"device must be a device name ({_DEVICES_HINT}), got {_got(device)}")


def resolve_device(device: Any = "auto") -> torch.device:
    """The torch.device for ``device``: ``"auto"`` picks CUDA, then Apple MPS, then the CPU;
    ``"gpu"`` means the first CUDA GPU; an integer N means ``cuda:N``.

    Raises ValueError naming ``device`` for unknown names, wrong types and a GPU that is not there.
    """
    import torch

    device = check_device(device)
    if isinstance(device, torch.device):
        return device
    name = device if isinstance(device, int) else (device or "auto").strip().lower() or "auto"
    if isinstance(device, int) or name.isdigit():  # torch's spelling of cuda:N (--device 1 on the command line)
        index = int(name)
        name, shown = f"cuda:{index}", f"device {device!r}: CUDA device {index} is not available"
        device = index
    else:
        name, shown = ("cuda" if name == "gpu" else name), f"device {device!r}"
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(name)
    except RuntimeError as err:
        raise ValueError(f"unknown device {device!r}: {_DEVICES_HINT}") from err
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            if isinstance(device, int):
                raise ValueError(f"{shown} (no CUDA GPU is available)")
            raise ValueError(f"{shown} asked for, but no CUDA GPU is available")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"device {device!r}: only {torch.cuda.device_count()} CUDA GPU(s) present")
    elif dev.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise ValueError(f"{shown} asked for, but Apple MPS is not available")
    elif dev.type != "cpu":
        raise ValueError(f"unknown device {device!r}: {_DEVICES_HINT}")
    return dev


# ---------------------------------------------------------------------------- option sets
def _check_progress(value: Any) -> Any:
    if value is None or isinstance(value, bool) or callable(value):
        return value
    raise ValueError(f"progress must be a callable, True (a text bar) or None, got {_got(value)}")


def _check_axes(value: Any) -> Any:
    if value is None or isinstance(value, str):
        return value
    raise ValueError(f"axes must be a string such as 'ZCYX' or None, got {_got(value)}")


def check_anisotropy(value: Any) -> float | None:
    """None (unknown) or the Z spacing over the XY spacing of a z-stack, a positive number."""
    return check_number(
        "anisotropy", value, positive=True, optional=True, what="a positive number (Z spacing / XY spacing)"
    )


_INFERENCE: dict[str, Callable[[Any], Any]] = {
    "device": check_device,
    "precision": lambda v: check_choice("precision", v, PRECISIONS),
    "tile_size": lambda v: check_ints("tile_size", v, 1),
    "halo": lambda v: check_ints("halo", v, 0),
    "batch_size": lambda v: check_int("batch_size", v, 1, optional=True),
    "object_size": lambda v: check_number(
        "object_size", v, positive=True, optional=True, what="a positive number of pixels"
    ),
    "compile": check_compile,
    "tta": lambda v: check_bool("tta", v),
    "min_size": lambda v: check_int("min_size", v, 0),
    "mode": lambda v: check_choice("mode", v, ("instances", "semantic")),
    "channels": check_channels,
    "axes": _check_axes,
    "progress": _check_progress,
    # time-lapses: labels matched across frames (core/labels/tracking.py)
    "track": lambda v: check_bool("track", v),
    "max_gap": lambda v: check_int("max_gap", v, 0),
    "min_iou": lambda v: check_number("min_iou", v, minimum=0, maximum=1, what="an IoU"),
    # z-stacks with a 2D instance model (core/labels/zstack.py)
    "z_mode": lambda v: check_choice("z_mode", v, Z_MODES),
    "anisotropy": check_anisotropy,
}


def check_inference_options(**options: Any) -> dict[str, Any]:
    """Check the options of ``predict``/``segment``/``evaluate`` that are given; returns them normalised.

    Known names: device, precision, tile_size, halo, batch_size, object_size, compile, tta,
    min_size, mode, channels, axes, progress, z_mode, anisotropy, and for time-lapses track, max_gap
    (frames an object may be missing) and min_iou. Other names pass through unchanged.
    """
    return {k: _INFERENCE[k](v) if k in _INFERENCE else v for k, v in options.items()}


_TRAINING: dict[str, Callable[[Any], Any]] = {
    "epochs": lambda v: check_int("epochs", v, 1),
    "steps_per_epoch": lambda v: check_int("steps_per_epoch", v, 1, optional=True),
    "patch_size": lambda v: check_int("patch_size", v, 8),
    "batch_size": lambda v: check_int("batch_size", v, 1),
    "lr": lambda v: check_number("lr", v, minimum=0, what="a learning rate such as 0.001"),
    "weight_decay": lambda v: check_number("weight_decay", v, minimum=0),
    "dice_weight": lambda v: check_number("dice_weight", v, minimum=0),
    "patience": lambda v: check_int("patience", v, 1, optional=True),
    "warmup_steps": lambda v: check_int("warmup_steps", v, 0),
    "val_fraction": lambda v: _check_fraction(v),
    "seed": lambda v: check_int("seed", v, 0),
    "preview_every": lambda v: check_int("preview_every", v, 0),
    "ndim": lambda v: check_int("ndim", v, 2, 3),
    "mode": lambda v: check_choice("mode", v, ("instances", "semantic")),
    "device": check_device,
    "precision": lambda v: check_choice("precision", v, PRECISIONS),
    "channels": check_channels,
    "axes": _check_axes,
    **{
        name: (lambda v, n=name: check_bool(n, v))
        for name in ("resume", "augmentation", "elastic", "noise", "distance_head")
    },
}


def _check_fraction(value: Any) -> float:
    v = check_number("val_fraction", value, minimum=0, what="a fraction")
    if v >= 1:  # type: ignore[operator]
        raise ValueError(f"val_fraction must be a fraction in 0..1 (below 1), got {_got(value)}")
    return v  # type: ignore[return-value]


def check_training_options(**options: Any) -> dict[str, Any]:
    """Check the options of ``iter_train`` that are given; returns them normalised.

    ``depth`` and ``base_features`` are checked with the architecture limits of
    :func:`~napari_unet.core.model.check.check_architecture`. Other names pass through unchanged.
    """
    from .model.check import LIMITS

    out = {k: _TRAINING[k](v) if k in _TRAINING else v for k, v in options.items()}
    for key in ("depth", "base_features"):
        if key in out:
            out[key] = check_int(key, out[key], *LIMITS[key])
    return out
