"""Planning a prediction: the image's layout for a model, the autocast precision, and the
tile edge and batch size that fit the memory the device can give."""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from typing import Any

import torch

from ..image.axes import guess_axes
from ..image.checks import check_not_empty
from ..image.layout import Layout, plan_layout
from ..model.unet import UNet
from ..options import PRECISIONS, check_bool


# resolve_device (in napari_unet.core.options, where all option checks live) picks the device.
def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """Autocast dtype for ``precision`` on ``device``; None means the model's own dtype."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "float32":
        return None
    if precision == "auto":
        if device.type == "cpu":
            # measured on the DSB2018 validation split: same AP as float32, labels agreeing at
            # AP50 0.97, 1.7x faster on a 2-core AVX-512 BF16 CPU (benchmarks/cpu_precision.py)
            return torch.bfloat16 if cpu_has_native_bf16() else None
        if device.type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu" and precision == "float16":
        raise ValueError("precision 'float16' is not supported on the CPU; use 'bfloat16' or 'float32'")
    return torch.bfloat16 if precision == "bfloat16" else torch.float16


def check_tta(tta: Any) -> bool:
    """``tta`` (test-time augmentation) as a bool; anything but True/False raises ValueError."""
    return check_bool("tta", tta)


@functools.lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (x86 AVX-512 BF16 or AMX; read from
    ``/proc/cpuinfo`` on Linux). Elsewhere bfloat16 is emulated and slower than float32."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass
    return False


def _free_memory(device: torch.device) -> int:
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return 4 << 30


def free_memory(device: torch.device) -> int:
    """Bytes the memory plan counts as free on ``device``: free GPU memory on CUDA, else available host
    memory (4 GiB when the system does not say). ``napari-unet doctor`` shows it beside the plan."""
    return _free_memory(device)


#: ``compile="auto"`` compiles on CUDA for jobs of at least this many tile pixels: compiling takes
#: tens of seconds and saves a few milliseconds per megapixel, so it pays for big batch jobs only
#: (or when a compiled copy of the model is already cached from an earlier call).
COMPILE_WORTH_PIXELS = 4e9

#: Host memory a job may use beyond its input and output (label features + working memory).
HOST_EXTRA_BUDGET = 2 << 30
#: What the interpreter, torch and a model already hold (about 0.45 GiB measured with the CPU build).
PROCESS_BASE = 512 << 20


def default_tile_and_batch(
    model: UNet,
    device: torch.device,
    halo: int,
    autocast: torch.dtype | None,
    *,
    plane_width: int = 0,
    rows: int = 0,
    store_bytes: int = 0,
) -> tuple[int, int]:
    """Tile edge and batch size from the memory the device can give.

    The lean inference network (:class:`~napari_unet.core.inference.fastnet.LeanUNet`) peaks at about
    ``16.5 * base_features`` bytes per pixel in float32 (measured; 35 for the plain forward),
    budgeted as 18, half that in bf16/fp16; the band accumulator costs
    ``4 * (n_classes + 1) * min(tile, rows) * plane_width`` bytes (``plane_width``: pixels of
    one row of the image, a Z slice for 3D models; ``rows``: the image's extent along its first
    axis). The working budget is half the free GPU memory on CUDA; on the CPU a quarter of free memory and at most
    :data:`HOST_EXTRA_BUDGET` minus ``store_bytes`` (what the job keeps for the whole image) and
    :data:`PROCESS_BASE`, so huge images stay within input + output + 2 GiB.
    """
    bytes_per_value = 2 if autocast is not None else next(model.parameters()).element_size()
    per_px = model.config["base_features"] * 18 * bytes_per_value // 4
    if device.type == "cuda":
        budget = min(_free_memory(device) * 0.5, 40 << 30)
    else:
        budget = min(_free_memory(device) * 0.25, HOST_EXTRA_BUDGET - store_bytes - PROCESS_BASE)
    budget = max(budget, 256 << 20)
    minimum = 2 * halo + 4 * model.size_multiple
    band_per_row = 4 * (model.n_classes + 1) * max(plane_width, 1)
    cap = (4096 if device.type == "cuda" else 1536) if model.ndim == 2 else (256 if device.type == "cuda" else 128)
    multiple = model.size_multiple

    def band(t: int) -> int:  # the accumulator holds one row of tiles: t rows (slices) of the plane
        return band_per_row * min(t, rows) if rows else band_per_row * t

    tile = (cap // multiple) * multiple
    while tile > multiple and per_px * tile**model.ndim + band(tile) > budget:
        tile -= multiple
    tile = max(minimum, tile)
    tile = max(multiple, (tile // multiple) * multiple)
    tile_bytes = per_px * tile**model.ndim
    batch = int(max(1, min(16 if device.type == "cuda" else 4, (budget - band(tile)) // tile_bytes)))
    return tile, batch


# ---------------------------------------------------------------------------- planning
def plan_for(
    image: Any,
    model: UNet,
    *,
    axes: str | None = None,
    channels: int | str | Sequence[int | str] | None = None,
    channel_names: Sequence[str] | None = None,
    image_name: str = "image",
) -> Layout:
    """:func:`~napari_unet.core.image.layout.plan_layout` for ``image`` and ``model``.

    Axes are guessed, with a warning, when None.
    """
    if not hasattr(image, "shape") or not hasattr(image, "ndim"):
        raise TypeError(f"image must be an array (numpy, dask, memmap), got {type(image).__name__}")
    check_not_empty(image.shape, image_name)  # before any axes guess
    if axes is None:
        axes = guess_axes(image.shape)
    return plan_layout(
        image.shape,
        axes,
        model_channels=model.in_channels,
        model_ndim=model.ndim,
        channels=channels,
        channel_names=channel_names,
        model_channel_names=model.spec.channel_names,
        image_name=image_name,
    )
