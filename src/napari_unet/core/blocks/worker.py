"""What runs on a dask worker: the model loaded once per worker, one block segmented per task.

:class:`ModelPlugin` (a ``distributed.WorkerPlugin``) carries the model file's bytes to every
worker once (also to workers that join or are restarted later) and loads the network there, keyed
by the file's SHA-256, so a task only names the checksum. It also picks the worker's device:
``device="auto"`` on a machine with GPUs is ``cuda:<k mod GPUs>`` for the worker's number ``k``
(the trailing digits of its name: LocalCluster and dask-jobqueue number them), so one worker per
GPU uses every GPU; a worker started with ``CUDA_VISIBLE_DEVICES`` set to one GPU sees only that
one. Torch uses the worker's thread count, and a worker runs one block at a time.

:func:`segment_block` runs the in-memory pipeline (:func:`~napari_unet.core.segment.iter_segment`,
or :func:`~napari_unet.core.inference.run.iter_predict` for probabilities) on the block read with
its halo, normalised with the run's global percentiles, keeps the core, writes it, and records
the block as done (:mod:`.resume`).
"""

from __future__ import annotations

import os
import re
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from distributed import WorkerPlugin

from ..image.normalize import apply_range
from ..inference.planning import plan_for
from ..inference.run import iter_predict
from ..progress import drain
from ..segment import iter_segment
from .resume import write_record

#: Per process: checksum -> (model, device); how many times a model file was loaded here.
_MODELS: dict[str, tuple[Any, str]] = {}
LOADS: dict[str, int] = {}
_LOCK = threading.Lock()


def worker_number(name: Any) -> int:
    """The number of a worker from its name (``3``, ``"SLURMCluster-3"``, ``"worker-3"``); 0 when none."""
    if isinstance(name, int):
        return name
    found = re.search(r"(\d+)$", str(name))
    return int(found.group(1)) if found else 0


def pick_device(device: str, name: Any) -> str:
    """``device`` for the worker called ``name``: "auto" → one GPU per worker, else the CPU."""
    import torch

    if device != "auto":
        return device
    if torch.cuda.is_available():
        return f"cuda:{worker_number(name) % torch.cuda.device_count()}"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def load_bytes(
    data: bytes, checksum: str, device: str, name: Any = 0, threads: int = 0, double: bool = False
) -> tuple[Any, str]:
    """The model in ``data`` (a model file's bytes), loaded once per process and ``checksum``;
    ``double``: in float64, like a float64 model given to the driver (files load as float32)."""
    with _LOCK:
        hit = _MODELS.get(checksum)
        if hit is not None:
            return hit
        import torch

        from ..model.file import load_model

        fd, tmp = tempfile.mkstemp(suffix=".safetensors")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            model = load_model(tmp)
        finally:
            Path(tmp).unlink(missing_ok=True)
        dev = pick_device(device, name)
        model.to(dev, torch.float64 if double else None).eval()
        if threads > 0:
            torch.set_num_threads(threads)
        _MODELS[checksum] = (model, dev)
        LOADS[checksum] = LOADS.get(checksum, 0) + 1
        return model, dev


class ModelPlugin(WorkerPlugin):
    """Sends the model file's bytes to each worker once and loads the network there."""

    def __init__(self, data: bytes, checksum: str, device: str, double: bool = False) -> None:
        self.data, self.checksum, self.device, self.double = data, checksum, device, double
        self.name = f"napari-unet-model-{checksum[:16]}-{device}"

    def setup(self, worker: Any) -> None:
        load_bytes(self.data, self.checksum, self.device, worker.name, worker.state.nthreads, self.double)


def worker_info() -> dict[str, Any]:
    """Model loads and devices (``client.run(worker_info)``)."""
    return {"pid": os.getpid(), "loads": dict(LOADS), "devices": {k: d for k, (_, d) in _MODELS.items()}}


def _open(target: tuple[str, str]) -> Any:
    import zarr

    root, path = target
    return zarr.open_array(root, path=path or None, mode="r+")


def write_out(task: dict[str, Any], region: tuple[slice, ...], block: np.ndarray) -> None:
    """Write ``block`` into ``region`` of the output: through the OME-Zarr labels writer (chunk-aligned
    regions) when the run writes OME-Zarr labels, else into the zarr array."""
    if task.get("writer"):
        from ..image.zarr_write import LabelsWriter

        LabelsWriter.open(task["writer"]).write(region, block)
    else:
        out = _open(task["out"])
        out[region] = block.astype(out.dtype, copy=False)


def _current_worker_name() -> Any:
    try:
        from distributed import get_worker

        return get_worker().name
    except ValueError:
        return 0


def segment_block(data: np.ndarray, task: dict[str, Any]) -> dict[str, Any]:
    """Segment one block read with its halo (``data``: the input's axes, extended region) and write
    its core; returns its id, object count, device and worker."""
    t0 = time.perf_counter()
    name = _current_worker_name()
    model, device = _MODELS.get(task["checksum"]) or (None, None)
    if model is None:
        raise RuntimeError(
            f"the model {task['checksum'][:12]} is not loaded on worker {name}; was the ModelPlugin registered?"
        )
    layout = plan_for(data, model, axes=task["axes"], channels=task["channels"], channel_names=task["channel_names"])
    block = layout.select(np.asarray(layout.arrange(data)), raw=True)  # (C_model, *spatial)
    dtype = np.float64 if next(model.parameters()).dtype.itemsize == 8 else np.float32
    block = apply_range(block, task["lo"], task["hi"], dtype)
    options = dict(task["predict"], device=device, normalized=True, halo=task["net_halo"])
    options.update(axes="C" + layout.spatial_axes, object_size=task["object_size"], estimate_size=False)
    inner = tuple(slice(*s) for s in task["inner"])
    core = tuple(slice(*s) for s in task["core"])
    with _LOCK:
        if task["mode"] == "probabilities":
            result = drain(iter_predict(block, model, **options))
        else:
            result = drain(iter_segment(block, model, mode=task["mode"], min_size=task["min_size"], **options))
    del block
    if task.get("loop_at"):  # a plane / frame of a stack: its loop axes back, of size 1
        lead = 1 if task["mode"] == "probabilities" else 0
        result = np.expand_dims(result, tuple(lead + a for a in task["loop_at"]))
    record: dict[str, np.ndarray] = {"count": np.asarray(0)}
    if task["mode"] == "probabilities":
        _open(task["out"])[(slice(None), *core)] = result[(slice(None), *inner)]
    elif task["mode"] == "semantic":
        write_out(task, core, result[inner])
    else:
        record = _instances(result, inner, task)
    write_record(Path(task["records"]), task["id"], **record)
    return {
        "id": task["id"],
        "count": int(record["count"]),
        "device": device,
        "worker": str(name),
        "seconds": time.perf_counter() - t0,
    }


def _instances(labels: np.ndarray, inner: tuple[slice, ...], task: dict[str, Any]) -> dict[str, np.ndarray]:
    """Write the core's objects with temporary ids ``id * stride + 1..count`` to the scratch array;
    the record holds the count and the id strips at each face (:mod:`.stitch`)."""
    core = labels[inner]
    ids = np.unique(core)
    ids = ids[ids > 0]
    lut = np.zeros(int(labels.max()) + 1, np.uint64)
    lut[ids] = np.arange(1, len(ids) + 1, dtype=np.uint64) + np.uint64(task["id"] * task["stride"])
    scratch = _open(task["scratch"])
    target = tuple(slice(*s) for s in task["core"])
    scratch[target] = lut[core].astype(scratch.dtype, copy=False)
    record = {"count": np.asarray(len(ids))}
    for axis, (first, last, shape) in enumerate(zip(inner, inner, task["shape"])):
        cross = list(inner)
        core_start, core_stop = task["core"][axis]
        if axis in task.get("loop_at", ()):  # no faces across planes / frames
            continue
        if core_stop < shape:  # the face with the next block: own last layer, and its first layer as seen here
            record[f"own_next_{axis}"] = lut[labels[_layer(cross, axis, last.stop - 1)]]
            record[f"seen_next_{axis}"] = lut[labels[_layer(cross, axis, last.stop)]]
        if core_start > 0:
            record[f"own_prev_{axis}"] = lut[labels[_layer(cross, axis, first.start)]]
            record[f"seen_prev_{axis}"] = lut[labels[_layer(cross, axis, first.start - 1)]]
    return record


def _layer(cross: list[slice], axis: int, at: int) -> tuple[Any, ...]:
    index: list[Any] = list(cross)
    index[axis] = at
    return tuple(index)


def relabel_block(task: dict[str, Any], bases: np.ndarray, final: np.ndarray) -> int:
    """Final ids for one block: scratch ids → merged, consecutive ids, written to the output."""
    from .stitch import final_ids

    core = tuple(slice(*s) for s in task["core"])
    temp = np.asarray(_open(task["scratch"])[core])
    write_out(task, core, final_ids(temp, task["stride"], bases, final))
    return task["id"]
