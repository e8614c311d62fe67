"""Across the planes and frames of a block-wise run with loop axes (T, or Z with a 2D model).

The blocks of such a run never span loop indices (blocks of 1 along the loop axes): each is the
2D (or, for a 3D model, 3D) problem it is, and the merge graph over the spatial faces gives ids
unique over the whole output. Then the driver streams over the output, one plane or frame at a
time, reading the temporary ids from the scratch array and writing the output:

1. each plane's final ids (:func:`~.stitch.final_ids`); instances of a z-stack with a 2D model
   and ``z_mode="stitch"`` are linked plane to plane as they go
   (:func:`~napari_unet.core.labels.zlink.link_plane`, the step of ``link_planes``);
2. time-lapses with ``track``: frames matched with
   :func:`~napari_unet.core.labels.tracking.iter_track_frames` (the logic of ``track_labels``),
   reading and writing the output frame by frame.

The pass always starts again from the scratch array (kept until the run is finished), so a run
killed during it is simply passed again on resume, with the same result.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Generator
from typing import Any

import numpy as np

from ..labels.tracking import tracking_applies, tracking_settings
from ..labels.zstack import plan_z
from ..model.unet import UNet
from ..options import Z_MODES, check_choice
from ..progress import Progress
from .plan import BlockPlan


def iter_loop_pass(
    out: Any,
    writer: Any,
    scratch: Any,
    plan: BlockPlan,
    merged: tuple[np.ndarray, np.ndarray, int],
    *,
    z_axis: int | None = None,
    link_iou: float | None = None,
    t_axis: int | None = None,
) -> Generator[Progress, None, int]:
    """Final ids plane by plane (linked along ``z_axis`` when ``link_iou`` is given), then tracks
    along ``t_axis`` (when given); returns the object (or track) count.

    Parameters
    ----------
    out, writer
        The output zarr array, and its LabelsWriter (OME-Zarr labels; None: write ``out``).
    scratch : zarr.Array
        The temporary ids of the blocks.
    plan : BlockPlan
        The run's plan (its loop axes).
    merged : tuple
        ``(bases, final, n)`` from the merge graph (:func:`.steps.merge_faces`).
    z_axis, t_axis : int, optional
        Output axes to link (Z, with ``link_iou``) and to track along (T).
    """
    from ..labels.tracking import iter_track_frames
    from ..labels.zlink import link_plane
    from .stitch import final_ids

    bases, final, n = merged
    loop_at = [a for a in range(len(plan.shape)) if plan.is_loop(a)]
    put = _putter(out, writer)
    link = z_axis is not None and link_iou is not None
    outer = [a for a in loop_at if not (link and a == z_axis)]
    n_outer = int(np.prod([plan.shape[a] for a in outer]))
    yield Progress(0, n_outer, "planes", "final ids plane by plane" + (", linked along Z" if link else ""))
    total = 0
    for k, index in enumerate(np.ndindex(*(plan.shape[a] for a in outer)), 1):
        at = dict(zip(outer, index))
        previous = None
        for z in range(plan.shape[z_axis]) if link else [None]:
            where = at if z is None else {**at, z_axis: z}
            region = tuple(where.get(a, slice(None)) for a in range(len(plan.shape)))
            plane = final_ids(np.asarray(scratch[region]), plan.stride, bases, final)
            if z is not None:
                plane, total = link_plane(previous, plane, total, link_iou)
                previous = plane
            put(where, plane)
        yield Progress(k, n_outer, "planes", f"{k}/{n_outer} written")
    count = total if link else n
    if t_axis is None:
        return count

    def frame(t: int) -> tuple[Any, ...]:
        return tuple(t if a == t_axis else slice(None) for a in range(len(plan.shape)))

    return (
        yield from iter_track_frames(
            lambda t: np.asarray(out[frame(t)]),
            lambda t, labels: put({t_axis: t}, labels),
            plan.shape[t_axis],
            out.dtype,
        )
    )


def _putter(out: Any, writer: Any) -> Callable[[dict[int, int], np.ndarray], None]:
    """``put({axis: index}, array)``: write ``array`` (the other axes whole) at those indices."""

    def put(at: dict[int, int], array: np.ndarray) -> None:
        region = tuple(slice(at[a], at[a] + 1) if a in at else slice(0, n) for a, n in enumerate(out.shape))
        block = np.expand_dims(array, tuple(sorted(at))).astype(out.dtype, copy=False)
        if writer is not None:
            writer.write(region, block)
        else:
            out[region] = block

    return put


def default_out_chunks(block: Any, loop: tuple[bool, ...], shape: tuple[int, ...], chunk: int) -> tuple[int, ...]:
    """Chunks of an output napari-unet creates: 1 along loop axes; along the others ``block``
    (an int or one per spatial axis) when given, else ``chunk``, at most the axis' size."""
    n_spatial = len(loop) - sum(loop)
    given = iter((block,) * n_spatial if block is None or isinstance(block, (int, np.integer)) else tuple(block))
    chunks = []
    for is_loop, size in zip(loop, shape):
        edge = None if is_loop else next(given, None)
        ok = isinstance(edge, (int, np.integer)) and not isinstance(edge, bool) and edge > 0
        chunks.append(1 if is_loop else min(int(edge) if ok else chunk, size))
    return tuple(chunks)


def input_index(layout: Any, ext: tuple[slice, ...]) -> tuple[slice, ...]:
    """Index of the input (its own axes) reading the extended region ``ext`` (output axes): loop
    axes by their index (dropped), the channel axis whole."""
    out_axes = layout.out_axes
    return tuple(
        (ext[out_axes.index(a)].start if a in layout.loop_axes else ext[out_axes.index(a)])
        if a in out_axes
        else slice(None)
        for a in layout.axes
    )


def loop_settings(
    layout: Any, model: UNet, mode: str, track: bool, z_mode: str, link_iou: float, image_name: str
) -> dict[str, Any]:
    """What happens across loop axes: the options recorded (signature, provenance) and the
    arguments of :func:`.loops.iter_loop_pass`."""
    z_mode = check_choice("z_mode", z_mode, Z_MODES)
    used = "stitch" if z_mode in ("3d", "3d-ortho") else z_mode
    zplan = plan_z(layout, model, mode=mode, z_mode=used, link_iou=link_iou, image_name=image_name)
    if zplan is not None and used != z_mode:
        warnings.warn(
            f"z_mode={z_mode!r} needs the whole stack's features at once; block-wise runs link the planes "
            f"instead (z_mode='stitch', IoU >= {zplan.link_iou:g}); use --scheduler none for {z_mode!r}",
            UserWarning,
            stacklevel=3,
        )
    tracked = tracking_applies(track, mode, layout.out_axes) and "T" in layout.loop_axes
    options: dict[str, Any] = {"z_mode": None if zplan is None else zplan.mode}
    options.update(tracking_settings(tracked, mode, layout.out_axes))
    if zplan is not None and zplan.mode == "stitch":
        options["link_iou"] = zplan.link_iou
    out_axes = layout.out_axes
    return {
        "options": options,
        "pass": {
            "z_axis": out_axes.index("Z") if zplan is not None else None,
            "link_iou": zplan.link_iou if zplan is not None and zplan.mode == "stitch" else None,
            "t_axis": out_axes.index("T") if tracked else None,
        },
    }
