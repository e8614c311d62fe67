"""The input and output arrays of a block-wise run, and the cluster it runs on.

The input becomes a dask array (a zarr array or its path is read chunk by chunk by the workers;
numpy arrays travel inside the task graph, fine for tests and small images). The output is a
zarr array stored in a folder (workers open it by path); a path that does not exist yet is
created with the expected shape, chunks and dtype under a hidden ``.<name>.partial`` name beside
it (:func:`staged_output`) and moved into place when the run is complete (:func:`publish`), so a
killed run never leaves an array that looks finished.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from .plan import require

#: Output chunk edge when napari-unet creates the output array.
DEFAULT_CHUNK = 1024


def as_dask(image: Any) -> tuple[Any, dict[str, Any]]:
    """``image`` (numpy, dask, zarr array or the path of one) as a dask array, and its identity
    for the run signature."""
    da = require("dask.array")
    zarr = require("zarr")
    from dask.base import tokenize

    if isinstance(image, (str, os.PathLike)):
        path = Path(image)
        if not path.exists():
            raise FileNotFoundError(f"image {str(image)!r} does not exist (expected a zarr array)")
        try:
            image = zarr.open_array(str(path), mode="r")
        except Exception as err:  # zarr raises several kinds for a folder that is not an array
            raise ValueError(f"image {str(path)!r} is not a zarr array ({err})") from None
    if isinstance(image, zarr.Array):
        root, path = target_of(image, "image")
        ident = {"zarr": os.path.abspath(root), "path": path, "chunks": list(image.chunks)}
        array = da.from_zarr(image)
    elif isinstance(image, da.Array):
        ident, array = {"dask": image.name}, image
    elif hasattr(image, "shape") and hasattr(image, "dtype"):
        array = np.asarray(image)
        ident = {"array": tokenize(array)}
        array = da.from_array(array, chunks=array.shape)
    else:
        raise TypeError(f"image must be a numpy, dask or zarr array or a zarr path, got {type(image).__name__}")
    ident.update(shape=[int(s) for s in array.shape], dtype=str(array.dtype))
    return array, ident


def target_of(array: Any, what: str = "out") -> tuple[str, str]:
    """``(store folder, array path)`` of a zarr array stored in a folder."""
    root = getattr(getattr(array, "store", None), "root", None)
    if root is None:
        raise ValueError(
            f"{what} must be a zarr array stored in a folder (every worker opens it by path), "
            f"got one in {type(getattr(array, 'store', None)).__name__}"
        )
    return str(root), str(getattr(array, "path", "") or "")


def open_output(out: Any, shape: tuple[int, ...], dtype: Any, chunks: tuple[int, ...]) -> Any:
    """The output zarr array: ``out`` itself, opened from its path, or created there."""
    zarr = require("zarr")
    if isinstance(out, (str, os.PathLike)):
        if Path(out).exists():
            out = zarr.open_array(str(out), mode="r+")
        else:
            return zarr.create_array(str(out), shape=shape, chunks=chunks, dtype=dtype, fill_value=0)
    if not isinstance(out, zarr.Array):
        raise TypeError(f"out must be a zarr array or the path of one, got {type(out).__name__}")
    if tuple(out.shape) != tuple(shape):
        raise ValueError(f"out has shape {tuple(out.shape)}, but the result has shape {tuple(shape)}")
    kind = np.dtype(dtype).kind
    if (kind == "f") != (np.dtype(out.dtype).kind == "f"):
        raise ValueError(f"out has dtype {out.dtype}, but the result is {np.dtype(dtype)}")
    target_of(out)
    return out


def partial_path(final: str | os.PathLike) -> Path:
    """Where a new output array is written until its run is complete."""
    final = Path(final)
    return final.with_name(f".{final.name}.partial")


def staged_output(out: Any, resume: bool) -> tuple[Any, Path | None]:
    """``(what to open, final path)``: a path that does not exist yet is written at its
    :func:`partial_path` (kept by ``resume``, started afresh otherwise); anything else is used as
    it is (final path None)."""
    if not isinstance(out, (str, os.PathLike)) or Path(out).exists():
        return out, None
    partial = partial_path(out)
    if partial.exists() and not resume:
        shutil.rmtree(partial)
    return partial, Path(out)


def publish(out: Any, final: Path | None) -> Any:
    """Move a complete output from its partial name to ``final``; the array opened there (``out``
    itself when there is no final path)."""
    if final is None:
        return out
    zarr = require("zarr")
    os.replace(target_of(out)[0], final)
    return zarr.open_array(str(final), mode="r+")


def discard_partial(final: Path | None, records: Path) -> None:
    """After a failure: a new output with no finished block (nothing to resume) is removed, with its records."""
    from .resume import done_blocks

    if final is not None and not (records.exists() and done_blocks(records)):
        shutil.rmtree(partial_path(final), ignore_errors=True)
        shutil.rmtree(records, ignore_errors=True)


def connect(scheduler: Any, client: Any, workers: int | None) -> tuple[Any, bool]:
    """A ``distributed.Client``: ``client`` itself; ``scheduler`` an address (``"tcp://host:8786"``);
    or ``"local"``/None: a new ``LocalCluster`` of ``workers`` processes (default: one per GPU,
    else one), the machine's cores shared among them. Returns it and whether it is ours to close."""
    distributed = require("distributed")
    if client is not None:
        if not isinstance(client, distributed.Client):
            raise TypeError(f"client must be a distributed.Client, got {type(client).__name__}")
        return client, False
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    if scheduler in (None, "local"):
        n = workers or _gpu_count() or 1
        threads = max(1, (os.cpu_count() or 1) // n)
        cluster = distributed.LocalCluster(
            n_workers=n, threads_per_worker=threads, processes=True, dashboard_address=":0"
        )
        return distributed.Client(cluster, set_as_default=False), True
    if isinstance(scheduler, str) and "://" in scheduler:
        if workers is not None:
            raise ValueError(f"workers={workers} applies to scheduler='local'; {scheduler} has its own workers")
        return distributed.Client(scheduler, set_as_default=False), True
    raise ValueError(f"scheduler must be 'local' or an address like 'tcp://host:8786', got {scheduler!r}")


def _gpu_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def close(client: Any) -> None:
    cluster = getattr(client, "cluster", None)
    client.close()
    if cluster is not None:
        cluster.close()
