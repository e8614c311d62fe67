"""The tiled inference loop: host tiles in, blended bands out, all arithmetic on the device.

Per batch of tiles: the raw pixels (uint8/uint16/... as stored; uint16 travels as 2 bytes)
are read on a background thread while the device works on the previous batch, uploaded
(pinned memory on CUDA), converted and normalised on the device, run through the network,
turned into probabilities and multiplied by their blending windows into a *band*
accumulator on the device that holds one row of tiles (``tile[0]`` rows of the plane).
When the next row of tiles starts, the rows above it are final: they are divided by the
summed weights and handed to a *sink*, which keeps float probabilities
(:class:`ProbabilitySink`) or only the 1–2 byte label features
(:class:`FeatureSink`, :mod:`~napari_unet.core.inference.features`). Device memory is therefore
bounded by the tile, the batch and one band, never by the image; host memory by the sink.
"""

from __future__ import annotations

import logging
from collections.abc import Generator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

import numpy as np
import torch

from ..image.layout import Layout
from ..image.normalize import NONFINITE_TO, exact_in_float32, shift_to_float
from .features import label_features
from .tiling import Tile, TileGrid

log = logging.getLogger(__name__)


class TileOutOfMemory(Exception):
    """One tile alone does not fit on the GPU."""


def is_oom(err: BaseException) -> bool:
    oom = getattr(torch.cuda, "OutOfMemoryError", None)
    if oom is not None and isinstance(err, oom):
        return True
    return isinstance(err, RuntimeError) and "out of memory" in str(err).lower()


# ---------------------------------------------------------------------------- sinks
class Sink(Protocol):
    """Where :class:`BandBlender` (and so :func:`run_grid`) writes finished rows of blended
    probabilities: :class:`ProbabilitySink`, :class:`FeatureSink`."""

    def put(self, loop: tuple[int, ...], rows: slice, probs: torch.Tensor) -> None:
        """Keep ``probs`` (``(n_outputs, len(rows), *rest of the plane)``, on the device) for
        plane ``loop``, image rows ``rows``."""

    @property
    def result(self) -> Any:
        """What the sink kept, once every row is in (returned by the tiled run)."""


class ProbabilitySink:
    """Keeps blended probabilities, float32 (float64 for float64 models), layout order
    ``(n_classes, *loop, *spatial)``."""

    def __init__(self, n_classes: int, loop_shape: Sequence[int], spatial_shape: Sequence[int], dtype: Any) -> None:
        self.result = np.zeros((n_classes, *loop_shape, *spatial_shape), dtype=dtype)

    def put(self, loop: tuple[int, ...], rows: slice, probs: torch.Tensor) -> None:
        self.result[(slice(None), *loop, rows)] = probs.cpu().numpy()


class FeatureSink:
    """Keeps only label features: ``codes`` and, for instance models with a boundary class,
    ``landscape`` (uint8, layout order ``(*loop, *spatial)``)."""

    def __init__(
        self,
        loop_shape: Sequence[int],
        spatial_shape: Sequence[int],
        *,
        boundary_class: int | None = None,
        threshold: float = 0.5,
        seed_threshold: float | None = None,
        distance_channel: int | None = None,
        foreground_threshold: float | None = None,
    ) -> None:
        shape = (*loop_shape, *spatial_shape)
        self.codes = np.zeros(shape, dtype=np.uint8)
        self.landscape = np.zeros(shape, dtype=np.uint8) if boundary_class is not None else None
        self.options = dict(
            boundary_class=boundary_class,
            threshold=threshold,
            seed_threshold=seed_threshold,
            distance_channel=distance_channel,
            foreground_threshold=foreground_threshold,
        )

    def put(self, loop: tuple[int, ...], rows: slice, probs: torch.Tensor) -> None:
        codes, landscape = label_features(probs, **self.options)
        self.codes[(*loop, rows)] = codes.cpu().numpy()
        if landscape is not None:
            self.landscape[(*loop, rows)] = landscape.cpu().numpy()

    @property
    def result(self) -> tuple[np.ndarray, np.ndarray | None]:
        return self.codes, self.landscape


# ---------------------------------------------------------------------------- blending
class BandBlender:
    """Accumulates weighted tile probabilities of one row of tiles of one plane on the device."""

    def __init__(self, grid: TileGrid, n_classes: int, device: torch.device, dtype: torch.dtype, sink: Sink) -> None:
        self.grid, self.sink, self.device, self.dtype = grid, sink, device, dtype
        self.height = min(grid.tile_size[0], grid.shape[0])
        self.acc = torch.zeros((n_classes, self.height, *grid.shape[1:]), device=device, dtype=dtype)
        self.weight = torch.zeros((self.height, *grid.shape[1:]), device=device, dtype=dtype)
        self.loop: tuple[int, ...] | None = None
        self.row0 = 0
        self._windows: dict[tuple, torch.Tensor] = {}

    def _window(self, tile: Tile) -> torch.Tensor:
        key = tuple((s > 0, s + n < p) for s, n, p in zip(tile.start, tile.size, self.grid.padded))
        if key not in self._windows:
            w = self.grid.window(tile, np.float64)
            self._windows[key] = torch.from_numpy(w).to(self.device, self.dtype)
        return self._windows[key]

    def add(self, loop: tuple[int, ...], tile: Tile, probs: torch.Tensor) -> None:
        start0 = tile.start[0]
        if loop != self.loop:
            self.finish()
            self.loop, self.row0 = loop, start0
        elif start0 != self.row0:
            self._advance(start0)
        img, til = self.grid.valid(tile)
        w = self._window(tile)[til]
        rows = slice(img[0].start - self.row0, img[0].stop - self.row0)
        self.acc[(slice(None), rows, *img[1:])] += probs[(slice(None), *til)] * w
        self.weight[(rows, *img[1:])] += w

    def _emit(self, n: int) -> None:
        n = min(n, self.grid.shape[0] - self.row0)
        if n > 0:
            probs = self.acc[:, :n] / self.weight[:n]
            self.sink.put(self.loop, slice(self.row0, self.row0 + n), probs)

    def _advance(self, start0: int) -> None:
        n = start0 - self.row0
        self._emit(n)
        keep = self.height - n
        if keep > 0:
            self.acc[:, :keep] = self.acc[:, n:].clone()
            self.weight[:keep] = self.weight[n:].clone()
        self.acc[:, max(keep, 0) :] = 0
        self.weight[max(keep, 0) :] = 0
        self.row0 = start0

    def finish(self) -> None:
        """Emit the rows still held (end of a plane)."""
        if self.loop is not None:
            self._emit(self.height)
            self.acc.zero_()
            self.weight.zero_()
            self.loop = None


# ---------------------------------------------------------------------------- upload
def _host_batch(
    view: Any,
    layout: Layout,
    grid: TileGrid,
    chunk: Sequence[tuple[tuple[int, ...], Tile]],
    pad_to: int,
    lo: np.ndarray,
    wide_dtype: Any = np.float32,
) -> tuple[np.ndarray, bool]:
    """The raw pixels of ``chunk`` as one batch (N, C, ...), and whether ``lo`` was subtracted
    already: values that float32 cannot hold exactly (:func:`~napari_unet.core.image.normalize.exact_in_float32`,
    e.g. uint32 around 4e9) are shifted by ``lo`` in float64 here and sent as ``wide_dtype``."""
    blocks = [layout.select(grid.read(view[loop], t), raw=True) for loop, t in chunk]
    x = np.stack(blocks)
    if x.dtype.kind not in "biuf":
        raise TypeError(f"image dtype {x.dtype} is not numeric")
    shifted = not exact_in_float32(x.dtype)
    if shifted:
        x = shift_to_float(x, lo, wide_dtype, channel_axis=1)
    elif not x.dtype.isnative:  # ImageJ TIFFs are big-endian
        x = x.astype(x.dtype.newbyteorder("="))
    if x.dtype.kind == "b":
        x = x.astype(np.float32)
    if len(x) < pad_to:  # compiled networks see one batch shape only
        x = np.concatenate([x, np.zeros((pad_to - len(x), *x.shape[1:]), x.dtype)])
    return x, shifted


def upload(
    x: np.ndarray,
    device: torch.device,
    dtype: torch.dtype,
    lo: torch.Tensor,
    scale: torch.Tensor,
    memory_format: torch.memory_format | None,
) -> torch.Tensor:
    """Send raw pixels to ``device`` in their own width and normalise them there (non-finite
    values of float images become :data:`~napari_unet.core.image.normalize.NONFINITE_TO`)."""
    unsigned16 = x.dtype == np.uint16
    t = torch.from_numpy(np.ascontiguousarray(x.view(np.int16) if unsigned16 else x))
    if device.type == "cuda":
        t = t.pin_memory().to(device, non_blocking=True)
    else:
        t = t.to(device)
    if unsigned16:
        t = t.to(torch.int32).bitwise_and_(0xFFFF)
    t = t.to(dtype)
    t = (t - lo) * scale
    if x.dtype.kind == "f":
        t = torch.nan_to_num(t, **NONFINITE_TO)
    if memory_format is not None:
        t = t.contiguous(memory_format=memory_format)
    return t


def activate(logits: torch.Tensor, n_classes: int | None = None) -> torch.Tensor:
    """Network outputs (N, n_outputs, ...) to probabilities: softmax over the ``n_classes``
    class logits (sigmoid for one class), sigmoid for every head channel after them."""
    k = logits.shape[1] if n_classes is None else n_classes
    classes = logits[:, :k]
    probs = torch.sigmoid(classes) if k == 1 else torch.softmax(classes, dim=1)
    if logits.shape[1] == k:
        return probs
    return torch.cat([probs, torch.sigmoid(logits[:, k:])], dim=1)


#: The 8 symmetries of the square acting on the last two (Y, X) axes, as (quarter turns, flip X
#: first): identity, the 3 rotations, and each of those after a left-right flip.
DIHEDRAL = tuple((k, flip) for flip in (False, True) for k in range(4))


def dihedral(x: torch.Tensor, k: int, flip: bool) -> torch.Tensor:
    """Flip ``x`` along its last axis (X) when ``flip``, then rotate it by ``k`` quarter turns
    in its last two axes (YX). ``(N, C, [Z,] Y, X)``; the result is a copy (Y, X swapped for odd k)."""
    if flip:
        x = torch.flip(x, (-1,))
    return torch.rot90(x, k, (-2, -1)) if k % 4 else x


def undo_dihedral(x: torch.Tensor, k: int, flip: bool) -> torch.Tensor:
    """The inverse of :func:`dihedral`: ``undo_dihedral(dihedral(x, k, f), k, f) == x``."""
    if k % 4:
        x = torch.rot90(x, -k, (-2, -1))
    return torch.flip(x, (-1,)) if flip else x


def _same_format(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``t`` made contiguous in ``like``'s memory format (rot90 leaves transposed strides)."""
    if like.dim() == 4 and like.is_contiguous(memory_format=torch.channels_last):
        return t.contiguous(memory_format=torch.channels_last)
    if like.dim() == 5 and like.is_contiguous(memory_format=torch.channels_last_3d):
        return t.contiguous(memory_format=torch.channels_last_3d)
    return t.contiguous()


def _probs(
    net: torch.nn.Module, x: torch.Tensor, autocast: torch.dtype | None, out_dtype: torch.dtype, n_classes: int | None
) -> torch.Tensor:
    if autocast is not None:
        with torch.autocast(device_type=x.device.type, dtype=autocast):
            logits = net(x)
    else:
        logits = net(x)
    return activate(logits.to(out_dtype), n_classes)


def _tta_probs(
    net: torch.nn.Module, x: torch.Tensor, autocast: torch.dtype | None, out_dtype: torch.dtype, n_classes: int | None
) -> torch.Tensor:
    """Mean of the probabilities of the 8 :data:`DIHEDRAL` views of ``x``, each mapped back.
    One view at a time: device memory stays that of a plain batch plus one accumulator."""
    total: torch.Tensor | None = None
    for k, flip in DIHEDRAL:
        view = _same_format(dihedral(x, k, flip), x) if (k or flip) else x
        probs = undo_dihedral(_probs(net, view, autocast, out_dtype, n_classes), k, flip)
        total = probs if total is None else total.add_(probs)  # probs: a fresh tensor
    return total.div_(len(DIHEDRAL))


def forward_probs(
    net: torch.nn.Module,
    x: torch.Tensor,
    autocast: torch.dtype | None,
    out_dtype: torch.dtype,
    n_classes: int | None = None,
    tta: bool = False,
) -> torch.Tensor:
    """Probabilities (N, n_outputs, ...) on the device (see :func:`activate`). On a GPU
    out-of-memory error the batch is split in halves; one tile that does not fit raises
    :class:`TileOutOfMemory`.

    ``tta``: test-time augmentation, the mean of the probabilities (class softmax/sigmoid and
    head sigmoids) of the 8 flips and quarter turns of each tile in its YX plane
    (:data:`DIHEDRAL`), each mapped back; 8 forward passes. Rotating a non-square tile swaps
    its Y and X sizes, which the network accepts (it pads to its size multiple itself). An
    out-of-memory error in any of the 8 passes splits the batch, and each half runs all 8.
    """
    try:
        if tta:
            return _tta_probs(net, x, autocast, out_dtype, n_classes)
        return _probs(net, x, autocast, out_dtype, n_classes)
    except Exception as err:  # noqa: BLE001 - only OOM is handled, the rest re-raised
        if not is_oom(err):
            raise
        if x.device.type == "cuda":
            torch.cuda.empty_cache()
        if len(x) == 1:
            raise TileOutOfMemory() from err
        half = len(x) // 2
        log.info("GPU out of memory with %d tiles per batch; trying %d", len(x), half)
        return torch.cat(
            [
                forward_probs(net, x[:half], autocast, out_dtype, n_classes, tta),
                forward_probs(net, x[half:], autocast, out_dtype, n_classes, tta),
            ]
        )


# ---------------------------------------------------------------------------- the loop
def run_grid(
    view: Any,
    layout: Layout,
    grid: TileGrid,
    net: torch.nn.Module,
    *,
    n_classes: int,
    device: torch.device,
    autocast: torch.dtype | None,
    batch: int,
    lo: np.ndarray,
    hi: np.ndarray,
    dtype: torch.dtype,
    sink: Sink,
    memory_format: torch.memory_format | None = None,
    fixed_batch: bool = False,
    n_outputs: int | None = None,
    tta: bool = False,
) -> Generator[tuple[int, int], None, None]:
    """Run every tile of every plane of ``view`` through ``net`` into ``sink``; yields
    (tiles done, total) after each batch. ``n_outputs``: the network's output channels
    (``n_classes`` plus its heads; default ``n_classes``). ``tta``: average over the 8 flips and
    quarter turns of every tile (see :func:`forward_probs`)."""
    shape = (1, -1) + (1,) * len(grid.shape)
    lo_t = torch.as_tensor(np.asarray(lo, dtype=np.float64), device=device).to(dtype).reshape(shape)
    scale_t = (
        torch.as_tensor(1.0 / (np.asarray(hi, np.float64) - np.asarray(lo, np.float64)), device=device)
        .to(dtype)
        .reshape(shape)
    )
    lo_host, zero_t = np.asarray(lo, np.float64), torch.zeros_like(lo_t)  # zero: shifted on the host already
    wide = np.float64 if dtype == torch.float64 else np.float32
    blender = BandBlender(grid, n_classes if n_outputs is None else n_outputs, device, dtype, sink)
    jobs = [(loop, t) for loop in np.ndindex(*layout.loop_shape) for t in grid]
    chunks = [jobs[i : i + batch] for i in range(0, len(jobs), batch)]
    pad_to = batch if fixed_batch else 0
    done = 0
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="napari-unet-tiles") as reader, torch.inference_mode():
        pending = reader.submit(_host_batch, view, layout, grid, chunks[0], pad_to, lo_host, wide)
        for i, chunk in enumerate(chunks):
            x_host, shifted = pending.result()
            if i + 1 < len(chunks):
                pending = reader.submit(_host_batch, view, layout, grid, chunks[i + 1], pad_to, lo_host, wide)
            x = upload(x_host, device, dtype, zero_t if shifted else lo_t, scale_t, memory_format)
            probs = forward_probs(net, x, autocast, dtype, n_classes, tta)
            for (loop, t), p in zip(chunk, probs):
                blender.add(loop, t, p)
            done += len(chunk)
            yield done, len(jobs)
        blender.finish()
