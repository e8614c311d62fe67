"""The driver of a block-wise run: global statistics once, blocks on dask.distributed, stitching.

:func:`iter_segment_blocks` yields :class:`~napari_unet.core.progress.Progress` events and returns
a :class:`BlocksResult`; :func:`segment_blocks` runs it to the end. Steps:

1. the image's layout (:func:`~napari_unet.core.inference.planning.plan_for`), the output opened or
   created, the block grid (:mod:`.plan`): blocks = whole output chunks;
2. on the cluster, the normalisation percentiles over the whole image
   (:func:`~napari_unet.core.image.normalize.compute_percentiles`, the in-memory function), then the
   object size (:func:`~napari_unet.core.inference.sizing.iter_object_size`) and the network's
   halo, once;
3. the run signature and its completion records (:mod:`.resume`): with ``resume`` only the blocks
   without a record run;
4. one task per block (:func:`~.worker.segment_block`), the model sent once per worker
   (:class:`~.worker.ModelPlugin`);
5. instances: merge graph over the block faces and one relabelling pass (:mod:`.stitch`); with loop
   axes (T, or Z with a 2D model; blocks of one plane), the driver's pass over the planes instead:
   final ids, z-linking, tracking (:mod:`.loops`);
6. OME-Zarr labels (:mod:`.ome`): the workers wrote through the labels writer; the driver finishes
   it once (pyramid, metadata, provenance with the run's statistics) and removes the records.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..image.rescale import zoom_factor
from ..inference.planning import plan_for
from ..inference.sizing import auto_zoom_size, can_estimate_size, iter_object_size
from ..labels.postprocess import MODES
from ..labels.zlink import DEFAULT_LINK_IOU
from ..labels.zstack import DEFAULT_Z_MODE
from ..model.unet import UNet
from ..options import check_inference_options
from ..progress import Progress, drain
from .arrays import (
    DEFAULT_CHUNK,
    as_dask,
    close,
    connect,
    discard_partial,
    open_output,
    publish,
    staged_output,
    target_of,
)
from .loops import default_out_chunks, input_index, loop_settings
from .ome import abandon_if_empty, finish_labels, is_labels_output, open_labels_output, run_record
from .plan import BlockPlan, choose_block, model_checksum, read_halo, require, run_signature
from .resume import default_records, start_records
from .steps import (
    block_task,
    merge_faces,
    model_bytes,
    network_halo,
    object_margin,
    scratch_array,
    stitch,
    torch_float64,
)
from .steps import percentiles as global_percentiles

log = logging.getLogger(__name__)

#: Block-wise output modes: the label modes and the class probabilities.
BLOCK_MODES = (*MODES, "probabilities")


@dataclass
class BlocksResult:
    """What a block-wise run did.

    Attributes
    ----------
    out : zarr.Array
        The output (labels, or probabilities with the classes first); OME-Zarr labels: level 0,
        opened read-only.
    n_objects : int or None
        Instances: objects after stitching.
    run, skipped : list of int
        Ids of the blocks segmented now, and of those already done (resume).
    devices : dict
        Worker name → device it ran on.
    path : Path or None
        OME-Zarr outputs: the labels group written (``out`` is its level 0, opened read-only).
    """

    out: Any
    n_blocks: int
    run: list[int]
    skipped: list[int]
    n_objects: int | None
    lo: np.ndarray
    hi: np.ndarray
    object_size: float | None
    halo: tuple[int, ...]
    records: Path
    dashboard: str | None = None
    devices: dict[str, str] = field(default_factory=dict)
    path: Path | None = None

    def levels(self) -> list[Any]:
        """OME-Zarr labels: every pyramid level as a dask array, full resolution first
        (``viewer.add_labels(result.levels())``); other outputs: ``[out]`` as a dask array."""
        from .ome import pyramid_levels

        return pyramid_levels(self.path) if self.path is not None else [require("dask.array").from_zarr(self.out)]


def iter_segment_blocks(
    image: Any,
    model: UNet,
    *,
    out: Any,
    axes: str | None = None,
    channels: Any = None,
    channel_names: Sequence[str] | None = None,
    mode: str = "instances",
    min_size: int = 0,
    block: int | Sequence[int] | None = None,
    max_object: int | None = None,
    scheduler: str | None = None,
    client: Any = None,
    workers: int | None = None,
    resume: bool = False,
    records: str | Path | None = None,
    object_size: float | None = None,
    estimate_size: bool = True,
    percentiles: tuple[float, float] | None = None,
    halo: int | None = None,
    image_name: str = "image",
    track: bool = True,
    z_mode: str = DEFAULT_Z_MODE,
    link_iou: float = DEFAULT_LINK_IOU,
    **predict_options: Any,
) -> Generator[Progress, None, BlocksResult]:
    """Segment ``image`` block by block on a dask.distributed cluster into the zarr array ``out``.

    Parameters
    ----------
    image : numpy, dask or zarr array, or the path of a zarr array
        A 2D image (with channels) for a 2D model, or a volume for a 3D model; axes ``axes``.
        Loop axes (T, or Z with a 2D model) are segmented plane by plane (frame by frame): blocks
        never span them (the output's chunks along them must be 1), then the driver streams over
        the output once (:mod:`.loops`).
    model : UNet
        The network (sent to each worker once, as its model file).
    out : zarr.Array, path, OmeLabels or LabelsWriter
        Labels (``image``'s shape without channels) or, for ``mode="probabilities"``,
        ``(n_classes, *spatial)``; created (uint32 / uint8 / float32, chunks of 1024) when the
        path does not exist. Its chunks are the blocks. OME-Zarr labels (:class:`.ome.OmeLabels`,
        or a :class:`~napari_unet.core.image.zarr_write.LabelsWriter` of the result's shape and
        spatial axes): the workers write through the writer and the run finishes it (pyramid,
        metadata, provenance with the run's statistics); the records are kept beside the
        unfinished labels, and a run that finished no block leaves nothing.
    mode : {"instances", "semantic", "probabilities"}
    block : int or sequence of int, optional
        Block edges, whole output chunks; default the output's chunks.
    max_object : int, optional
        Largest object diameter (pixels) a block's halo must hold (instances, and semantic
        regions with ``min_size``); default twice the object size.
    scheduler : "local" or str, optional
        ``"local"`` (default): a ``LocalCluster`` of ``workers`` processes; ``"tcp://host:8786"``:
        a running scheduler. ``client``: a ``distributed.Client`` to use instead.
    resume : bool
        Continue the run recorded in ``records`` (default ``<out store>.blocks/``): only blocks
        without a completion record run; the run signature must match (ValueError).
    track : bool
        Instances of a time-lapse (T): the same object keeps its id in every frame, as in memory.
    z_mode : {"3d", "stitch", "planes", "3d-ortho"}
        Instances of a z-stack with a 2D model: ``"stitch"`` links the planes' objects by IoU
        (``link_iou``), ``"planes"`` keeps them apart; ``"3d"`` and ``"3d-ortho"`` need the whole
        stack's features, so block-wise runs link the planes (``"stitch"``) instead, with a
        UserWarning. The result's provenance records the mode used.
    object_size, estimate_size, percentiles, halo, axes, channels, channel_names, **predict_options
        As for :func:`~napari_unet.core.segment.iter_segment` (``tile_size``, ``batch_size``,
        ``device``, ``precision``, ``compile``, ``tta``).
    """
    require("dask.array")
    distributed = require("distributed")
    if mode not in BLOCK_MODES:
        raise ValueError(f"mode must be one of {BLOCK_MODES}, got {mode!r}")
    if isinstance(min_size, bool) or not isinstance(min_size, (int, np.integer)) or min_size < 0:
        raise ValueError(f"min_size must be a non-negative integer (pixels), got {min_size!r}")
    if max_object is not None and (isinstance(max_object, bool) or not isinstance(max_object, int) or max_object < 0):
        raise ValueError(f"max_object must be a non-negative integer (pixels), got {max_object!r}")
    checked = check_inference_options(object_size=object_size, halo=halo, **predict_options)
    object_size, halo = checked.pop("object_size"), checked.pop("halo")
    device = checked.pop("device", "auto")
    device = "auto" if device is None else str(device)
    darr, source = as_dask(image)
    layout = plan_for(darr, model, axes=axes, channels=channels, channel_names=channel_names, image_name=image_name)
    loops = loop_settings(layout, model, mode, track, z_mode, link_iou, image_name)
    out_axes = layout.out_axes
    if "".join(a for a in out_axes if a not in layout.loop_axes) != layout.spatial_axes:
        raise ValueError(f"block-wise output axes must be {layout.spatial_axes} (after loop axes), got {out_axes}")
    loop = tuple(a in layout.loop_axes for a in out_axes)
    if mode == "probabilities":
        out_shape, dtype = (model.n_classes, *layout.out_shape), np.float32
    else:
        out_shape, dtype = layout.out_shape, (np.uint32 if mode == "instances" else np.uint8)
    lead = 1 if mode == "probabilities" else 0
    default_chunks = (model.n_classes,) * lead + default_out_chunks(block, loop, layout.out_shape, DEFAULT_CHUNK)
    out, writer, ome, resume, records, edges, final = _open_out(
        out, out_shape, dtype, default_chunks, out_axes, lead, block, resume, mode, records, loop
    )
    out_target = target_of(out)
    given = client
    client, owned = connect(scheduler, client, workers)
    futures: list[Any] = []
    try:
        # -- global statistics, once, with the in-memory functions
        yield Progress(0, 1, "normalise", "computing per-channel percentiles over the whole image")
        low, high = percentiles if percentiles is not None else model.spec.percentiles
        lo, hi = global_percentiles(client, darr, layout, low, high)
        if object_size is None and estimate_size and can_estimate_size(model):
            size = yield from iter_object_size(darr, model, layout, percentiles=percentiles)
            object_size = auto_zoom_size(size, model)
        factor = zoom_factor(model.spec.object_size, object_size)
        zoomed = abs(factor - 1.0) > 0.02
        net_halo = int(halo) if halo is not None else network_halo(darr, layout, model, lo, hi)
        margin = object_margin(mode, min_size, max_object, object_size, model)
        context = read_halo(math.ceil(net_halo / factor) if zoomed else net_halo, margin, model.size_multiple)
        if mode == "instances":
            context = max(context, model.size_multiple)  # faces need one layer of the neighbour
        halos = tuple(0 if is_loop else context for is_loop in loop)
        plan = BlockPlan(
            layout.out_shape, edges, halos, 1 if zoomed else model.size_multiple, loop if any(loop) else ()
        )
        data = model_bytes(model)
        double = next(model.parameters()).dtype == torch_float64()
        checksum = model_checksum(model)
        options = {
            "mode": mode,
            "min_size": int(min_size),
            "axes": layout.axes,
            "channels": list(layout.channels),
            "to_gray": layout.to_gray,
            "max_object": margin,
            **loops["options"],
            **{k: repr(v) for k, v in checked.items()},
        }
        signature = run_signature(
            source=source,
            model_sha=checksum,
            plan=plan,
            net_halo=net_halo,
            lo=lo,
            hi=hi,
            object_size=object_size,
            options=options,
        )
        done = start_records(records, signature, resume=bool(resume))
        scratch = scratch_array(records, plan) if mode == "instances" else None

        # -- the blocks
        from .worker import ModelPlugin, segment_block

        client.register_plugin(ModelPlugin(data, checksum, device, double))
        base = {
            "checksum": checksum,
            "axes": "".join(a for a in layout.axes if a not in layout.loop_axes),
            "loop_at": [i for i, is_loop in enumerate(loop) if is_loop],
            "channels": channels,
            "channel_names": channel_names,
            "mode": mode,
            "min_size": int(min_size),
            "lo": lo,
            "hi": hi,
            "net_halo": net_halo,
            "object_size": object_size,
            "predict": checked,
            "out": out_target,
            "writer": None if writer is None else str(writer.path),
            "scratch": scratch,
            "records": str(records),
            "stride": plan.stride,
            "shape": plan.shape,
        }
        todo = [b for b in plan.blocks() if b.id not in done]
        dashboard = getattr(client, "dashboard_link", None)
        result = BlocksResult(
            out, plan.n_blocks, [], sorted(done), None, lo, hi, object_size, plan.halo, records, dashboard
        )
        yield Progress(
            len(done),
            plan.n_blocks,
            "blocks",
            f"{plan.n_blocks} blocks of {list(edges)} px, halo {context} px, {len(done)} done already"
            + (f"; dashboard {dashboard}" if dashboard else ""),
        )
        import dask

        run_block = dask.delayed(segment_block, pure=False)
        tasks = [run_block(darr[input_index(layout, b.ext)], {**base, **block_task(b)}) for b in todo]
        futures = client.compute(tasks)
        for n, future in enumerate(distributed.as_completed(futures, loop=client.loop), 1):
            info = future.result()
            result.run.append(info["id"])
            result.devices[info["worker"]] = info["device"]
            yield Progress(
                len(done) + n,
                plan.n_blocks,
                "blocks",
                f"block {info['id']} on worker {info['worker']} ({info['device']}), {info['seconds']:.1f} s",
            )
        futures = []
        if mode == "instances" and not any(loop):
            result.n_objects = yield from stitch(client, plan, records, out, base)
        elif mode == "instances":
            from .loops import iter_loop_pass
            from .worker import _open

            merged = yield from merge_faces(plan, records, out)
            result.n_objects = yield from iter_loop_pass(out, writer, _open(scratch), plan, merged, **loops["pass"])
        if writer is not None:
            info = {"percentiles": [low, high], "network_halo": net_halo, "resumed_blocks": len(done)}
            info.update(loops["options"])
            scheduler_name = "client" if given is not None else (scheduler or "local")
            run = run_record(result, client, edges, scheduler_name, **info)
            result.out, result.path = finish_labels(writer, ome, records, run)
        result.out = publish(result.out, final)
        yield Progress(1, 1, "done", f"{plan.n_blocks} blocks written to {result.path or final or out_target[0]}")
        return result
    except BaseException:
        abandon_if_empty(ome, writer, records)  # nothing finished: nothing to resume, nothing left
        discard_partial(final, records)
        raise
    finally:
        if futures:
            client.cancel(futures)
        if owned:
            close(client)


def segment_blocks(
    image: Any, model: UNet, *, progress: Callable[[Progress], Any] | None = None, **options: Any
) -> BlocksResult:
    """Run :func:`iter_segment_blocks` to the end; ``progress`` gets every event."""
    return drain(iter_segment_blocks(image, model, **options), progress)


def _open_out(
    out: Any,
    shape: tuple[int, ...],
    dtype: Any,
    chunks: tuple[int, ...],
    axes: str,
    lead: int,
    block: Any,
    resume: bool,
    mode: str,
    records: Any,
    loop: tuple[bool, ...],
) -> tuple[Any, Any, Any, bool, Path, tuple[int, ...], Path | None]:
    """``(output array, writer, OmeLabels, resume, records, block edges, final path)``; OME-Zarr
    labels are opened through their writer (a new one removed again when the blocks do not fit); a
    new array path is written under its partial name (:func:`.arrays.staged_output`) until
    :func:`.arrays.publish` moves it to the final path."""
    writer = ome = None
    out, final = staged_output(out, resume)
    if final is not None:
        records = records or default_records(final)
    if is_labels_output(out):  # written through the LabelsWriter, finished at the end
        writer, ome, resume, own = open_labels_output(
            out, shape=shape, axes=axes, dtype=dtype, chunks=chunks, resume=resume, mode=mode
        )
        out, records = writer.array, records or own
    try:
        out = open_output(out, shape, dtype, chunks)
        chunks = tuple(out.chunks[lead:])
        if any(c != 1 for c, is_loop in zip(chunks, loop) if is_loop):
            raise ValueError(
                f"out has chunks {chunks} ({axes}): block-wise runs need chunks of 1 along the loop axes "
                f"{''.join(a for a, is_loop in zip(axes, loop) if is_loop)} (one plane or frame per block)"
            )
        spatial = [i for i, is_loop in enumerate(loop) if not is_loop]
        edges = iter(choose_block([shape[lead + i] for i in spatial], [chunks[i] for i in spatial], block))
        records = Path(records or default_records(*target_of(out)))
        return out, writer, ome, resume, records, tuple(1 if is_loop else next(edges) for is_loop in loop), final
    except BaseException:
        if ome is not None and not ome.reopened:
            ome.abandon(writer)
        if final is not None and not resume:
            discard_partial(final, Path(records))
        raise
