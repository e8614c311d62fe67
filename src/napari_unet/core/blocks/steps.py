"""Steps of a block-wise run besides the blocks themselves (:mod:`.run`): the global statistics,
the model's bytes, the scratch array of instances and the stitching pass."""

from __future__ import annotations

import math
from collections.abc import Generator
from pathlib import Path
from typing import Any

import numpy as np

from ..model.unet import UNet
from ..progress import Progress
from .plan import BlockPlan, require
from .resume import read_record


def percentiles(client: Any, darr: Any, layout: Any, low: float, high: float) -> tuple[np.ndarray, np.ndarray]:
    """:func:`~napari_unet.core.image.normalize.compute_percentiles` with the strided sample read on the cluster."""
    import dask

    from ..image.normalize import compute_percentiles

    with dask.config.set(scheduler=client.get):
        return compute_percentiles(layout.arrange(darr), layout, low, high)


def network_halo(darr: Any, layout: Any, model: UNet, lo: np.ndarray, hi: np.ndarray) -> int:
    from ..inference.halo import auto_halo
    from ..inference.runner import probe

    return int(auto_halo(model, probe(layout.arrange(darr), layout, lo, hi), device=next(model.parameters()).device))


def object_margin(mode: str, min_size: int, max_object: int | None, object_size: Any, model: UNet) -> int:
    """Context for whole objects: ``max_object``, default twice the object size (none for probabilities,
    nor for semantic labels without ``min_size``)."""
    if mode == "probabilities" or (mode == "semantic" and min_size == 0):
        return 0
    if max_object is not None:
        return int(max_object)
    size = object_size or model.spec.object_size or 32
    return int(math.ceil(2 * float(size)))


def torch_float64() -> Any:
    import torch

    return torch.float64


def model_bytes(model: UNet) -> bytes:
    import tempfile

    from ..model.file import save_model

    with tempfile.TemporaryDirectory() as tmp:
        path = save_model(model, Path(tmp) / "model.safetensors")
        return Path(path).read_bytes()


def scratch_array(records: Path, plan: BlockPlan) -> tuple[str, str]:
    """The scratch array of temporary ids (kept when resuming)."""
    zarr = require("zarr")
    path = records / "scratch.zarr"
    if not path.exists():
        dtype = np.uint32 if plan.n_blocks * plan.stride < 2**32 else np.uint64
        zarr.create_array(str(path), shape=plan.shape, chunks=plan.block, dtype=dtype, fill_value=0)
    return str(path), ""


def stitch(
    client: Any, plan: BlockPlan, records: Path, out: Any, base: dict[str, Any]
) -> Generator[Progress, None, int]:
    """Merge graph over the faces, then one relabelling pass over the blocks; returns the object count."""
    from .worker import relabel_block

    bases, final, n = yield from merge_faces(plan, records, out)
    bases_f, final_f = client.scatter([bases, final], broadcast=True)
    import distributed

    futures = [
        client.submit(relabel_block, {**base, **block_task(b)}, bases_f, final_f, pure=False) for b in plan.blocks()
    ]
    for k, future in enumerate(distributed.as_completed(futures, loop=client.loop), 1):
        future.result()
        yield Progress(k, len(futures), "relabel", f"block {k}/{len(futures)} relabelled")
    return n


def merge_faces(
    plan: BlockPlan, records: Path, out: Any
) -> Generator[Progress, None, tuple[np.ndarray, np.ndarray, int]]:
    """The merge graph over the faces (:func:`.stitch.merge`): ``(bases, final ids, object count)``."""
    from .stitch import check_fits, face_edges, merge

    yield Progress(0, 1, "stitch", "matching objects across block faces")
    cache: dict[int, dict[str, np.ndarray]] = {}

    def record(block_id: int) -> dict[str, np.ndarray]:
        if block_id not in cache:
            cache[block_id] = read_record(records, block_id)
        return cache[block_id]

    counts = np.array([int(record(b.id)["count"]) for b in plan.blocks()], np.int64)
    edges = face_edges(plan, record)
    bases, final, n = merge(counts, edges, plan.stride)
    check_fits(n, out.dtype)
    yield Progress(1, 1, "stitch", f"{int(counts.sum())} block objects, {len(edges)} face matches: {n} objects")
    return bases, final, n


def block_task(block: Any) -> dict[str, Any]:
    def pairs(slices: tuple[slice, ...]) -> list[tuple[int, int]]:
        return [(s.start, s.stop) for s in slices]

    return {"id": block.id, "core": pairs(block.core), "inner": pairs(block.inner)}
