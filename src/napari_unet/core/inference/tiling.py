"""Tile grids, halos and blending weights (numpy only).

A U-Net pads its input at the far end to a multiple of ``2**depth``. The tiler lays its
tiles over that *padded* extent, with tile starts on multiples of ``2**depth``, and reads
the pixels beyond the image with the same reflection the network would use. Neighbouring
tiles overlap by at least ``2 * halo``; each tile's prediction is weighted by a window that
is zero within ``halo / 2`` of an inner tile edge, rises as ``sin**2`` over the next
``halo`` pixels and is flat at the image border. The windows of regular neighbours sum
to one. With ``halo >= 2 * receptive radius`` the stitched result equals the untiled one
up to rounding; smaller halos still give seam-free, smoothly blended output.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from itertools import product

import numpy as np


def border_pad_mode(shape: Sequence[int], multiple: int) -> str:
    """numpy pad mode the network uses to pad ``shape`` up to ``multiple``.

    ``"reflect"`` when every axis is longer than its padding, else ``"edge"``.
    """
    extra = [(-s) % multiple for s in shape]
    return "reflect" if all(e < s for s, e in zip(shape, extra)) else "edge"


def round_up(value: int, multiple: int) -> int:
    return int(math.ceil(value / multiple) * multiple)


@dataclass(frozen=True)
class Tile:
    """One tile of a grid.

    Attributes
    ----------
    start : tuple of int
        First pixel of the tile in (padded) image coordinates, per spatial axis.
    size : tuple of int
        Tile size per axis (the same for every tile of a grid).
    """

    start: tuple[int, ...]
    size: tuple[int, ...]


class TileGrid:
    """Tiles covering an image of spatial ``shape`` for a network that needs sizes ``multiple``.

    Parameters
    ----------
    shape : sequence of int
        Spatial shape of the image, e.g. (Y, X) or (Z, Y, X).
    tile_size : int or sequence of int
        Requested tile size per axis; rounded up to ``multiple`` and shrunk to the padded
        image where the image is smaller.
    halo : int or sequence of int
        Context each tile carries beyond the part of it that is used at full weight.
    multiple : int
        Tile sizes and starts are multiples of this (``2**depth``).
    """

    def __init__(
        self, shape: Sequence[int], tile_size: int | Sequence[int], halo: int | Sequence[int], multiple: int = 1
    ) -> None:
        self.shape = tuple(int(s) for s in shape)
        nd = len(self.shape)
        if nd == 0 or min(self.shape) < 1:
            raise ValueError(f"image shape must have positive sizes, got {self.shape}")
        tiles = _per_axis("tile_size", tile_size, nd)
        halos = _per_axis("halo", halo, nd, minimum=0)
        self.multiple = int(multiple)
        self.padded = tuple(round_up(s, self.multiple) for s in self.shape)
        self.pad_mode = border_pad_mode(self.shape, self.multiple)
        self.halo = halos
        size, starts = [], []
        for axis, (extent, t, h) in enumerate(zip(self.padded, tiles, halos)):
            t = min(round_up(t, self.multiple), extent)
            if t >= extent:
                size.append(extent)
                starts.append([0])
                continue
            if t - 2 * h >= self.multiple:
                # Fewest tiles of at most ``t`` that cover the axis, then shrink them to share
                # the axis evenly: less recomputation than a last tile that barely sticks out.
                n = math.ceil((extent - 2 * h) / (t - 2 * h))
                t = min(t, round_up(math.ceil((extent + 2 * h * (n - 1)) / n), self.multiple))
            stride = ((t - 2 * h) // self.multiple) * self.multiple
            if stride < self.multiple:
                raise ValueError(
                    f"tile_size {t} is too small for halo {h} on axis {axis} "
                    f"(image {self.shape[axis]} px): need tile_size >= 2 * halo + {self.multiple}"
                    f" = {2 * h + self.multiple}"
                )
            s = list(range(0, extent - t, stride)) + [extent - t]
            size.append(t)
            starts.append(s)
        self.tile_size = tuple(size)
        self._starts = starts

    def __len__(self) -> int:
        return math.prod(len(s) for s in self._starts)

    def __iter__(self) -> Iterator[Tile]:
        for start in product(*self._starts):
            yield Tile(tuple(start), self.tile_size)

    # ------------------------------------------------------------------ reading
    def read(self, image: np.ndarray, tile: Tile) -> np.ndarray:
        """Pixels of ``tile`` from ``image`` (..., *spatial), padded past the border like the network.

        Only the rows/columns the tile needs are read, so memory-mapped and dask arrays stay lazy.
        """
        lead = image.ndim - len(self.shape)
        index: list[slice] = []
        gathers: list[np.ndarray | None] = []
        for start, size, n in zip(tile.start, tile.size, self.shape):
            pos = np.arange(start, start + size)
            if pos[-1] < n:
                index.append(slice(start, start + size))
                gathers.append(None)
                continue
            if self.pad_mode == "reflect":
                src = np.where(pos < n, pos, 2 * (n - 1) - pos)
            else:
                src = np.minimum(pos, n - 1)
            lo, hi = int(src.min()), int(src.max()) + 1
            index.append(slice(lo, hi))
            gathers.append(src - lo)
        block = np.asarray(image[(slice(None),) * lead + tuple(index)])
        for axis, g in enumerate(gathers):
            if g is not None:
                block = np.take(block, g, axis=lead + axis)
        return block

    def valid(self, tile: Tile) -> tuple[tuple[slice, ...], tuple[slice, ...]]:
        """(image slices, tile slices) of the part of ``tile`` inside the unpadded image."""
        img, til = [], []
        for start, size, n in zip(tile.start, tile.size, self.shape):
            stop = min(start + size, n)
            img.append(slice(start, stop))
            til.append(slice(0, stop - start))
        return tuple(img), tuple(til)

    # ------------------------------------------------------------------ blending
    def window(self, tile: Tile, dtype: np.dtype | type = np.float32) -> np.ndarray:
        """Blending weights of ``tile`` (shape ``tile.size``): zero near inner edges, flat at borders."""
        w = np.ones((), dtype=dtype)
        for axis, (start, size, h) in enumerate(zip(tile.start, tile.size, self.halo)):
            ramp = np.ones(size, dtype=np.float64)
            if h > 0:
                d = np.arange(size) + 0.5
                rise = np.sin(0.5 * np.pi * np.clip((d - h / 2) / h, 0.0, 1.0)) ** 2
                if start > 0:
                    ramp = ramp * rise
                if start + size < self.padded[axis]:
                    ramp = ramp * rise[::-1]
            w = np.multiply.outer(w, ramp.astype(dtype))
        return w

    def weight_sum(self, dtype: np.dtype | type = np.float32) -> np.ndarray:
        """Sum of every tile's window over the unpadded image (shape ``self.shape``), all > 0."""
        total = np.zeros(self.shape, dtype=dtype)
        for tile in self:
            img, til = self.valid(tile)
            total[img] += self.window(tile, dtype)[til]
        return total


# ---------------------------------------------------------------------------- planning
@dataclass(frozen=True)
class TilePlan:
    """How an image is cut into tiles: the result of :func:`plan_tiles` (no torch, no side effects).

    Attributes
    ----------
    grid : TileGrid
        The tiles (``grid.tile_size``, ``grid.halo``, ``len(grid)`` tiles per plane).
    batch : int
        Tiles per forward pass, evened out so the batches have (nearly) equal sizes.
    tile : int or tuple of int
        The tile edge asked of the grid (before it is rounded and fitted to the image).
    loops : int
        Planes (or stacks) the grid is run over; ``len(grid) * loops`` tiles in all.
    halo_pending : bool
        The halo was left to be measured but one tile holds the whole image, so none was
        needed (halo 0); a smaller plan (:func:`smaller_plan`) has to measure it.
    note : str or None
        Why the plan differs from what was asked (a user's tile too small for the needed halo),
        for the caller to log as a warning.
    """

    grid: TileGrid
    batch: int
    tile: int | tuple[int, ...]
    loops: int = 1
    halo_pending: bool = False
    note: str | None = None

    @property
    def tile_size(self) -> tuple[int, ...]:
        return self.grid.tile_size

    @property
    def halo(self) -> tuple[int, ...]:
        return self.grid.halo

    @property
    def n_tiles(self) -> int:
        """Tiles in all planes."""
        return len(self.grid) * self.loops


def fits_one_tile(shape: Sequence[int], tile_size: int | Sequence[int], multiple: int = 1) -> bool:
    """Whether one tile of ``tile_size`` (without halo) holds the whole image of spatial ``shape``."""
    return len(TileGrid(shape, tile_size, 0, multiple=multiple)) == 1


def even_batch(total: int, batch: int) -> int:
    """At most ``batch`` tiles per pass in equal passes: 9 tiles in batches of at most 8 run as
    5 + 4, not 8 + 1 (which a compiled network, seeing one batch shape only, would pad to 8 + 8)."""
    return math.ceil(total / math.ceil(total / batch))


def plan_tiles(
    shape: Sequence[int],
    *,
    multiple: int,
    tile_size: int | Sequence[int] | None,
    halo: int | Sequence[int] | None,
    batch_size: int | None,
    auto_tile: int | Sequence[int],
    auto_batch: int,
    loops: int = 1,
    needed_halo: int | None = None,
) -> TilePlan:
    """The tile plan for an image of spatial ``shape`` and a network whose sizes are multiples
    of ``multiple``: pure, no torch.

    ``tile_size``, ``halo``, ``batch_size``: what the user asked (None: choose).
    ``auto_tile``, ``auto_batch``: what the memory budget allows (see
    :func:`~napari_unet.core.inference.planning.default_tile_and_batch`). ``needed_halo``: the
    context the network needs (:func:`~napari_unet.core.inference.halo.auto_halo`), used when
    ``halo`` is None and the image needs more than one tile (:func:`fits_one_tile`); automatic
    tiles grow to hold it, a user's ``tile_size`` keeps its size and the halo is clipped to the
    room it leaves (explained in ``note``). ``loops``: planes the grid runs over (for the batch).
    """
    tile = auto_tile if tile_size is None else tile_size
    batch = int(auto_batch if batch_size is None else batch_size)
    pending, note = False, None
    if halo is None:
        if fits_one_tile(shape, tile, multiple):
            halo, pending = 0, True  # one tile holds the whole image: nothing to blend
        else:
            if needed_halo is None:
                raise ValueError("the image needs more than one tile: give the halo the network needs")
            halo = int(needed_halo)
            if tile_size is None:
                tile = max(tile, 2 * halo + 4 * multiple)  # type: ignore[call-overload]
            else:  # the user's tiles win: as much context as they can hold
                room = (min(np.atleast_1d(tile)) - multiple) // 2
                if halo > room:
                    room = max(int(room), 0)
                    note = f"tile_size {tile} leaves room for a halo of {room} px only (the network needs {halo})"
                    halo = room
    grid = TileGrid(shape, tile, halo, multiple=multiple)
    tile = tile if np.isscalar(tile) else tuple(int(t) for t in tile)  # type: ignore[union-attr]
    return TilePlan(grid, even_batch(len(grid) * loops, batch), tile, loops, pending, note)


def smaller_plan(plan: TilePlan, multiple: int, measure_halo: Callable[[], int] | None = None) -> TilePlan:
    """The plan to retry with after the device ran out of memory: tiles of half the edge,
    one per batch. A pending halo (:attr:`TilePlan.halo_pending`) is measured now with
    ``measure_halo()`` (there will be seams to hide). Raises MemoryError when the tiles cannot
    shrink any more."""
    grid = plan.grid
    smaller = [round_up(t // 2, multiple) for t in grid.tile_size]
    too_small = any(s < 2 * h + multiple for s, h in zip(smaller, grid.halo))
    if too_small or smaller == list(grid.tile_size):
        raise MemoryError(
            f"the GPU ran out of memory on a single tile of {grid.tile_size} px with "
            f"halo {grid.halo}; use device='cpu' or a smaller halo"
        )
    tile: list[int] = smaller
    halo: int | tuple[int, ...] = grid.halo
    pending = plan.halo_pending
    if pending and measure_halo is not None:
        halo, pending = int(measure_halo()), False
        tile = [max(t, 2 * halo + 4 * multiple) for t in tile]
    new = TileGrid(grid.shape, tile, halo, multiple=multiple)
    return replace(plan, grid=new, batch=1, tile=tuple(tile), halo_pending=pending, note=None)


def _per_axis(name: str, value: int | Sequence[int], nd: int, minimum: int = 1) -> tuple[int, ...]:
    values = (value,) * nd if np.isscalar(value) else tuple(value)  # type: ignore[arg-type]
    if len(values) != nd:
        raise ValueError(f"{name} needs 1 or {nd} values, got {value!r}")
    out = []
    for v in values:
        if isinstance(v, bool) or not float(v).is_integer() or int(v) < minimum:
            raise ValueError(f"{name} must be integer(s) >= {minimum}, got {value!r}")
        out.append(int(v))
    return tuple(out)
