"""Block-wise runs of the Segment panel: when, where the labels go, the worker's generator, the console line.

A lazy layer (dask- or zarr-backed: napari-unet's zarr reader, napari-ome-zarr) whose labels would be
large is segmented block by block on a dask cluster (:func:`~napari_unet.core.blocks.run.iter_segment_blocks`,
what ``napari_unet.segment_blocks`` runs) into OME-Zarr labels on disk, and shown as a Labels layer
backed by their pyramid, so that neither the run nor the viewer holds the whole label image:

* :func:`wants_blocks`: the rule that ticks "Block-wise (dask)": the layer's level 0 is a dask or zarr
  array and the labels would have more than :data:`LARGE_RESULT_PIXELS` pixels;
* :func:`default_output`: ``<stem>_labels.zarr`` beside the layer's file, else
  ``~/napari-unet-results/<layer>_labels.zarr``; :func:`check_output` refuses an existing one (unless
  resuming an unfinished run);
* :func:`run_block_job`: the worker's generator (a local dask cluster, the blocks, the pyramid as
  :class:`PyramidLabels`); :func:`block_console_call`: the ``segment_blocks`` line that does the same.

Nothing here imports dask, distributed or torch at module level; the panel's controls are in
:mod:`~napari_unet._napari.block_controls`. User doc: docs/segment-widget.md and docs/big-data.md.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..core.blocks.ome import OmeLabels, labels_stem
from ..core.image.files import file_stem
from .layer_inputs import combine_input, layer_data

if TYPE_CHECKING:
    from ..core.progress import Progress
    from .segment_job import SegmentJob

__all__ = [
    "LARGE_RESULT_PIXELS",
    "RESULTS_FOLDER",
    "BlockSettings",
    "PyramidLabels",
    "block_console_call",
    "check_output",
    "default_output",
    "is_lazy",
    "result_pixels",
    "run_block_job",
    "wants_blocks",
]

#: Labels of more pixels than this (2**28: a 16384 x 16384 plane, 1 GiB of uint32 labels, several
#: GiB of working memory in memory) of a lazy layer are made block-wise.
LARGE_RESULT_PIXELS = 2**28
#: Under the user's home: where large results of layers that do not come from a file go.
RESULTS_FOLDER = "napari-unet-results"


def is_lazy(data: Any) -> bool:
    """Whether ``data`` is a dask or zarr array (read from disk as needed), not a numpy array."""
    return not isinstance(data, np.ndarray) and type(data).__module__.split(".")[0] in ("dask", "zarr")


def result_pixels(layer: Any) -> int:
    """Pixels of the labels of ``layer``: its level 0 without the channel (C) and RGB (S) axes (all of
    it when its axes cannot be told)."""
    shape = tuple(int(n) for n in layer_data(layer).shape)
    try:
        axes = combine_input(layer).layer_axes
    except (ValueError, TypeError):
        axes = ""
    if len(axes) != len(shape):
        return math.prod(shape)
    return math.prod(n for a, n in zip(axes, shape) if a not in "CS")


def wants_blocks(layer: Any) -> bool:
    """The panel's rule: block-wise when the layer is lazy and its labels have more than
    :data:`LARGE_RESULT_PIXELS` pixels."""
    return layer is not None and is_lazy(layer_data(layer)) and result_pixels(layer) > LARGE_RESULT_PIXELS


def _source_file(layer: Any) -> Path | None:
    """The local file or folder ``layer`` was read from (napari's ``layer.source.path``, or the
    ``metadata["path"]`` napari-unet's readers record), or None."""
    path = getattr(getattr(layer, "source", None), "path", None) or (layer.metadata or {}).get("path")
    if not path or "://" in str(path):
        return None
    return Path(path)


def default_output(layer: Any) -> Path:
    """Where the panel writes large results of ``layer`` unless told otherwise.

    Beside the layer's file when it came from one and that folder is writable:
    ``<stem>_labels.zarr`` (``cells.ome.zarr`` → ``cells_labels.zarr``), or
    ``<stem>_<layer name>_labels.zarr`` when the layer is named otherwise (one channel of the
    file). Else ``~/napari-unet-results/<layer name>_labels.zarr``. Never a temporary folder.
    """
    name = re.sub(r"[^\w.-]+", "_", str(layer.name)).strip("._") or "image"
    source = _source_file(layer)
    if source is not None and source.parent.is_dir() and os.access(source.parent, os.W_OK):
        stem = file_stem(source)
        return source.parent / f"{stem if name == stem else f'{stem}_{name}'}_labels.zarr"
    return Path.home() / RESULTS_FOLDER / f"{name}_labels.zarr"


def check_output(path: Any, resume: bool) -> Path:
    """``path`` as the place for new OME-Zarr labels, or ValueError saying why not.

    Refused: no path, a name not ending in ``.zarr``, an existing path (never overwritten; with
    ``resume`` too: a finished result has nothing to resume), and without ``resume`` the
    unfinished write of an interrupted run there.
    """
    if path is None or str(path).strip() in ("", "."):
        raise ValueError("no path in 'Large results to': choose where the block-wise labels go (a new .zarr)")
    path = Path(os.path.expanduser(str(path))).absolute()
    if not path.name.lower().endswith(".zarr"):
        raise ValueError(f"'Large results to' must name a new OME-Zarr folder ending in .zarr, got '{path}'")
    if path.exists():
        done = "it is complete, there is nothing to resume; " if resume else ""
        raise ValueError(
            f"'{path}' exists: {done}napari-unet never overwrites it. Choose another path in 'Large results to', "
            "or remove it first"
        )
    ome = OmeLabels(path, labels_stem(path))
    unfinished = [p for p in (ome.partial, ome.staging) if p.exists()]
    if unfinished and not resume:
        raise ValueError(
            f"an interrupted block-wise run into '{path}' left its blocks done (hidden beside it, "
            f"'{unfinished[0].name}'): tick Resume to continue it, or choose another path in 'Large results to'"
        )
    return path


@dataclass(frozen=True)
class BlockSettings:
    """How one block-wise run goes.

    Attributes
    ----------
    path : Path
        The new OME-Zarr labels (checked by :func:`check_output`).
    resume : bool
        Continue an interrupted run into ``path`` from its completion records.
    block : int or None
        Block edge in pixels (the labels' chunks); None: 1024.
    workers : int or None
        Worker processes of the local cluster; None: the API's default (one per GPU, else one).
    client : distributed.Client or None
        A cluster to use instead of starting a local one (not closed by the run).
    """

    path: Path
    resume: bool = False
    block: int | None = None
    workers: int | None = None
    client: Any = None

    def record(self) -> dict[str, Any]:
        """What the provenance records of these settings."""
        return {"path": str(self.path), "block": self.block, "resume": self.resume}


class PyramidLabels(list):
    """The result of a block-wise run: the label pyramid (dask arrays, full resolution first: napari's
    multiscale data) that also says where it was written and what the run did."""

    def __init__(self, levels: list[Any], result: Any) -> None:
        super().__init__(levels)
        self.path = Path(result.path)
        self.n_objects = result.n_objects
        self.n_blocks, self.run, self.skipped = result.n_blocks, list(result.run), list(result.skipped)

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of level 0."""
        return tuple(int(n) for n in self[0].shape)

    def summary(self) -> str:
        """E.g. ``24 objects, 12 blocks (4 resumed), written to '/data/cells_labels.zarr'``."""
        what = f"{self.n_objects} objects" if self.n_objects is not None else f"shape {self.shape}"
        return f"{what}, {self.n_blocks} blocks ({len(self.skipped)} resumed), written to '{self.path}'"


def _scale_units(job: SegmentJob) -> tuple[dict[str, float], dict[str, str | None]]:
    """Pixel size and unit per axis of the labels, from the layer (written into the OME-Zarr)."""
    from .result_layers import axis_transforms

    transforms = axis_transforms(job.source.layer, job.source.layer_axes)
    scale = {a: t[0] for a, t in transforms.items()}
    units = {a: (None if t[2] is None or str(t[2]) == "pixel" else str(t[2])) for a, t in transforms.items()}
    return scale, units


def run_block_job(job: SegmentJob) -> Generator[Progress, None, PyramidLabels]:
    """The worker's generator for a block-wise run: the model, a dask cluster, the blocks, the pyramid.

    Yields ``"load"``, ``"cluster"`` and then the engine's events, the ``"blocks"`` ones as
    ``"<done>/<total> blocks: <what happened>; dashboard <link>"``. Closed (Cancel), the engine
    stops its blocks and keeps those done, for Resume; the local cluster is closed in every case.
    """
    from ..core.blocks.arrays import close, connect
    from ..core.blocks.run import iter_segment_blocks
    from ..core.model.cache import cached_model
    from ..core.progress import Progress

    settings = job.blocks
    assert settings is not None
    name = Path(job.model_path).name
    yield Progress(0, 1, "load", f"loading model {name}")
    model = cached_model(job.model_path)
    yield Progress(1, 1, "load", f"model {name} loaded")
    yield Progress(0, 0, "cluster", "connecting to the dask cluster" if settings.client else "starting a dask cluster")
    settings.path.parent.mkdir(parents=True, exist_ok=True)
    scale, units = _scale_units(job)
    target = OmeLabels(settings.path, labels_stem(settings.path), scale=scale, units=units, provenance=job.provenance())
    client, owned = connect(None, settings.client, settings.workers)
    try:
        link = getattr(client, "dashboard_link", None) or "none"
        workers = len(client.scheduler_info().get("workers", {}))
        yield Progress(1, 1, "cluster", f"dask cluster of {workers} worker(s); dashboard {link}")
        gen = iter_segment_blocks(
            job.source.data, model, out=target, mode=job.output, min_size=job.min_size, block=settings.block,
            client=client, resume=settings.resume, track=job.track, z_mode=job.z_mode, **job.core_options(),
        )  # fmt: skip
        try:
            while True:
                event = next(gen)
                if event.stage == "blocks":
                    said = re.sub(r"; dashboard \S+$", "", event.message)  # said once, at the end
                    message = f"{event.step}/{event.total} blocks: {said}"
                    event = Progress(event.step, event.total, "blocks", f"{message}; dashboard {link}")
                yield event
        except StopIteration as stop:
            result = stop.value
        finally:
            gen.close()  # cancelled: the engine stops its blocks, keeps those done
        yield Progress(0, 0, "open", f"opening the label pyramid in {settings.path}")
        return PyramidLabels(result.levels(), result)
    finally:
        if owned:
            close(client)


def block_console_call(job: SegmentJob, imports: list[str], args: list[str]) -> str:
    """The console line of a block-wise run: ``napari_unet.segment_blocks`` with ``args`` (the
    image and the options shared with ``segment``), the output and block options, then the layer."""
    from .result_layers import axis_transforms

    settings = job.blocks
    assert settings is not None
    args = [*args, f"out={str(settings.path)!r}"]
    if settings.block is not None:
        args.append(f"block={settings.block!r}")
    if settings.workers is not None:
        args.append(f"workers={settings.workers!r}")
    if settings.resume:
        args.append("resume=True")
    layer = job.source.layer
    transforms = axis_transforms(layer, job.source.layer_axes)
    scale = [transforms.get(a, (1.0, 0.0))[0] for a in job.layout.out_axes]
    translate = [transforms.get(a, (1.0, 0.0))[1] for a in job.layout.out_axes]
    add = [f"name={f'{layer.name} labels'!r}"]
    if any(s != 1.0 for s in scale):
        add.append(f"scale={scale!r}")
    if any(t != 0.0 for t in translate):
        add.append(f"translate={translate!r}")
    line = f"result = napari_unet.segment_blocks({', '.join(args)})"
    return "; ".join([*imports, "import napari_unet", line, f"viewer.add_labels(result.levels(), {', '.join(add)})"])
