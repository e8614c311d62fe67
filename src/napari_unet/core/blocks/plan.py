"""The block grid of a distributed run: blocks aligned to the output chunks, each read with a halo.

A *block* is one cell of a regular grid over the spatial axes of the output (its chunks, or a
multiple of them), so each block writes whole chunks and no two blocks write the same chunk.
It is *read* with a margin (:attr:`BlockPlan.halo` per side, clipped at the image border) whose
start is rounded down to a multiple of the network's size multiple, so the network's max-pool
grid is the one of the whole image. The run signature (:func:`run_signature`) names everything
the result depends on; resuming requires it unchanged (:mod:`.resume`).
"""

from __future__ import annotations

import hashlib
import importlib
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

#: What to install for block-wise runs.
EXTRA_HINT = 'pip install "napari-unet[zarr]"'


def require(module: str) -> Any:
    """Import ``module`` (dask, distributed, zarr) or raise ImportError saying how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ImportError(f"block-wise segmentation needs {module.split('.')[0]}: {EXTRA_HINT}") from err


@dataclass(frozen=True)
class Block:
    """One block: its index in the grid, its core (written) and extended (read) regions."""

    id: int
    index: tuple[int, ...]
    core: tuple[slice, ...]
    ext: tuple[slice, ...]

    @property
    def inner(self) -> tuple[slice, ...]:
        """The core inside the extended region (what is kept of the block's result)."""
        return tuple(slice(c.start - e.start, c.stop - e.start) for c, e in zip(self.core, self.ext))

    @property
    def key(self) -> str:
        return "_".join(str(i) for i in self.index)


@dataclass(frozen=True)
class BlockPlan:
    """A grid of blocks over a spatial ``shape``.

    Attributes
    ----------
    shape : tuple of int
        Spatial shape of the output (YX or ZYX).
    block : tuple of int
        Block edge per axis (the last block of an axis may be shorter).
    halo : tuple of int
        Context read on each side of a block, per axis (before rounding its start down to
        ``multiple``).
    multiple : int
        The network's size multiple (``2 ** depth``).
    loop : tuple of bool
        Per axis: a loop axis (T, or Z with a 2D model) — blocks of 1, no halo, no faces to
        stitch; empty: none.
    """

    shape: tuple[int, ...]
    block: tuple[int, ...]
    halo: tuple[int, ...]
    multiple: int = 1
    loop: tuple[bool, ...] = ()

    def is_loop(self, axis: int) -> bool:
        return bool(self.loop) and self.loop[axis]

    @property
    def grid(self) -> tuple[int, ...]:
        return tuple(-(-s // b) for s, b in zip(self.shape, self.block))

    @property
    def n_blocks(self) -> int:
        return math.prod(self.grid)

    @property
    def stride(self) -> int:
        """Temporary ids of block ``b`` are ``b * stride + 1 .. b * stride + count`` (count ≤ its pixels)."""
        return math.prod(self.block)

    def block_at(self, index: Sequence[int]) -> Block:
        index = tuple(int(i) for i in index)
        core, ext = [], []
        for axis, (i, n, b, h) in enumerate(zip(index, self.shape, self.block, self.halo)):
            start, stop = i * b, min(n, (i + 1) * b)
            core.append(slice(start, stop))
            if self.is_loop(axis):
                ext.append(slice(start, stop))
                continue
            lo = max(0, start - h)
            lo -= lo % self.multiple
            ext.append(slice(lo, min(n, stop + h)))
        return Block(int(np.ravel_multi_index(index, self.grid)), index, tuple(core), tuple(ext))

    def blocks(self) -> Iterator[Block]:
        for index in np.ndindex(*self.grid):
            yield self.block_at(index)

    def neighbour(self, block: Block, axis: int) -> Block | None:
        """The block after ``block`` along ``axis`` (None at the end)."""
        index = list(block.index)
        index[axis] += 1
        return self.block_at(index) if index[axis] < self.grid[axis] else None


def choose_block(shape: Sequence[int], chunks: Sequence[int], block: Any) -> tuple[int, ...]:
    """Block edges: ``block`` (an int or one per axis) checked to be whole chunks; default the chunks."""
    chunks = tuple(int(c) for c in chunks)
    if block is None:
        return chunks
    edges = (block,) * len(shape) if isinstance(block, (int, np.integer)) else tuple(block)
    if len(edges) != len(shape) or any(isinstance(e, bool) or not isinstance(e, (int, np.integer)) for e in edges):
        raise ValueError(f"block must be an integer or {len(shape)} integers (pixels), got {block!r}")
    for e, c, n in zip(edges, chunks, shape):
        if e < 1 or (e % c and e < n):
            raise ValueError(
                f"block {tuple(int(x) for x in edges)} must be whole output chunks {chunks} "
                "(each block writes its own chunks)"
            )
    return tuple(int(min(e, n)) for e, n in zip(edges, shape))


def read_halo(net_halo: int, object_margin: int, multiple: int) -> int:
    """The context read around a block: the network's halo plus the object margin, rounded up to
    ``multiple``."""
    halo = int(net_halo) + int(object_margin)
    return -(-halo // multiple) * multiple


def model_checksum(model: Any) -> str:
    """SHA-256 of a network's weights, architecture and spec (a model file's bytes also hold the
    time it was written, so two saves of one network differ)."""
    import dataclasses
    import json

    digest = hashlib.sha256()
    digest.update(json.dumps(model.config, sort_keys=True, default=str).encode())
    digest.update(json.dumps(dataclasses.asdict(model.spec), sort_keys=True, default=str).encode())
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode() + str(tensor.dtype).encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def run_signature(
    *,
    source: dict[str, Any],
    model_sha: str,
    plan: BlockPlan,
    net_halo: int,
    lo: np.ndarray,
    hi: np.ndarray,
    object_size: float | None,
    options: dict[str, Any],
) -> dict[str, Any]:
    """Everything a block's result depends on, as plain JSON values."""
    from ... import __version__

    return {
        "input": source,
        "model_sha256": model_sha,
        "shape": list(plan.shape),
        "block": list(plan.block),
        "halo": list(plan.halo),
        "network_halo": int(net_halo),
        "percentiles": [np.asarray(lo, np.float64).tolist(), np.asarray(hi, np.float64).tolist()],
        "object_size": None if object_size is None else float(object_size),
        "options": {k: options[k] for k in sorted(options)},
        "version": __version__,
    }
