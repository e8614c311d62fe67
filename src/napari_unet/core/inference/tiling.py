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
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
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
        self,
        shape: Sequence[int],
        tile_size: int | Sequence[int],
        halo: int | Sequence[int],
        multiple: int = 1,
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
