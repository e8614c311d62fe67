"""The tiled run with its out-of-memory retries: normalise, plan tiles, run the engine into a sink,
and on a GPU out-of-memory error retry with a smaller plan (:func:`~.tiling.smaller_plan`).

:func:`iter_tiled` is what :func:`~napari_unet.core.inference.run.iter_predict` and
:func:`~napari_unet.core.inference.run.iter_features` call once the image, the layout and the
sink are known; planning itself is pure (:mod:`.tiling`, :mod:`.planning`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Generator
from typing import Any

import numpy as np
import torch

from ..image.checks import warn_nonfinite
from ..image.layout import Layout
from ..image.normalize import apply_range, compute_percentiles
from ..model.unet import UNet
from ..options import resolve_device
from ..progress import Progress
from .engine import Sink, TileOutOfMemory, run_grid
from .fastnet import has_compiled, inference_network, memory_format
from .halo import auto_halo
from .planning import COMPILE_WORTH_PIXELS, check_tta, default_tile_and_batch, resolve_precision
from .tiling import TilePlan, fits_one_tile, plan_tiles, smaller_plan

log = logging.getLogger(__name__)


def engine_options(
    model: UNet, layout: Layout, precision: str, device: Any, batch_size: Any
) -> tuple[torch.device, torch.dtype | None, torch.dtype]:
    dev = resolve_device(device)
    autocast = resolve_precision(precision, dev)
    if batch_size is not None and (isinstance(batch_size, bool) or int(batch_size) < 1):
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    param_dtype = next(model.parameters()).dtype
    dtype = torch.float64 if param_dtype == torch.float64 else torch.float32
    if precision == "auto" and dev.type == "cpu" and param_dtype != torch.float32:
        autocast = None  # a float64 model asks for exactness
    return dev, autocast, dtype


def iter_tiled(
    image: Any,
    model: UNet,
    layout: Layout,
    make_sink: Callable[[], Sink],
    *,
    tile_size: Any,
    halo: Any,
    batch_size: Any,
    device: Any,
    precision: str,
    percentiles: Any,
    normalized: bool,
    image_name: str,
    compile: bool | str,
    store_bytes: int,
    tta: bool = False,
) -> Generator[Progress, None, Any]:
    """Normalise, plan tiles, run the engine into ``make_sink()``; returns the sink's result.
    ``tta``: average every tile over its 8 flips and quarter turns (see
    :func:`~napari_unet.core.inference.engine.forward_probs`)."""
    tta = check_tta(tta)
    dev, autocast, dtype = engine_options(model, layout, precision, device, batch_size)
    low, high = percentiles if percentiles is not None else model.spec.percentiles
    view = layout.arrange(image)
    if normalized:
        lo, hi = np.zeros(layout.n_channels), np.ones(layout.n_channels)
    else:
        yield Progress(0, 1, "normalise", "computing per-channel percentiles over the whole image")
        warn_nonfinite(view, layout, image_name)
        lo, hi = compute_percentiles(view, layout, low, high)
    log.debug("%s: %s; percentiles %s..%s", image_name, layout.describe(), lo, hi)

    spatial = layout.spatial_shape
    loops = math.prod(layout.loop_shape)
    auto_tile, auto_batch = default_tile_and_batch(
        model,
        dev,
        int(max(np.atleast_1d(halo if halo is not None else 0))),
        autocast,
        plane_width=math.prod(spatial[1:]),
        rows=spatial[0],
        store_bytes=store_bytes,
    )

    def measured_halo() -> int:
        return auto_halo(model, probe(view, layout, lo, hi), device=next(model.parameters()).device)

    needed_halo = None
    if halo is None and not fits_one_tile(spatial, auto_tile if tile_size is None else tile_size, model.size_multiple):
        yield Progress(0, 1, "halo", "measuring how much context the network needs")
        needed_halo = measured_halo()
    plan = plan_tiles(
        spatial,
        multiple=model.size_multiple,
        tile_size=tile_size,
        halo=halo,
        batch_size=batch_size,
        auto_tile=auto_tile,
        auto_batch=auto_batch,
        loops=loops,
        needed_halo=needed_halo,
    )
    if plan.note:
        log.warning("%s", plan.note)
    use_compile = compile is True
    if compile == "auto" and dev.type == "cuda":
        work = plan.n_tiles * math.prod(np.broadcast_to(plan.tile, (len(spatial),)))
        use_compile = work >= COMPILE_WORTH_PIXELS or has_compiled(model, dev)
    elif compile not in (True, False, "auto"):
        raise ValueError(f"compile must be True, False or 'auto', got {compile!r}")

    was_training = model.training
    model.eval()
    cudnn_autotune = torch.backends.cudnn.benchmark
    if dev.type == "cuda":  # every tile has the same shape: let cuDNN pick its fastest kernels once
        torch.backends.cudnn.benchmark = True
    try:
        net = inference_network(model, dev, compile=use_compile)
        fmt = memory_format(model, dev)
        while True:
            sink = make_sink()
            yield Progress(
                0,
                plan.n_tiles,
                "tiles",
                f"{plan.n_tiles} tiles of {plan.tile_size} px, halo {plan.halo}"
                + (", 8 flips/rotations each (test-time augmentation)" if tta else ""),
            )
            try:
                for done, total in run_grid(
                    view,
                    layout,
                    plan.grid,
                    net,
                    n_classes=model.n_classes,
                    n_outputs=model.n_outputs,
                    device=dev,
                    autocast=autocast,
                    batch=plan.batch,
                    lo=lo,
                    hi=hi,
                    dtype=dtype,
                    sink=sink,
                    memory_format=fmt,
                    fixed_batch=use_compile,
                    tta=tta,
                ):
                    yield Progress(done, total, "tiles", f"tile {done}/{total}")
                break
            except TileOutOfMemory:
                plan = retry_plan(plan, model.size_multiple, measured_halo)
                if dev.type == "cuda":
                    torch.cuda.empty_cache()
                yield Progress(0, 1, "retry", f"GPU out of memory: retrying with tiles of {list(plan.tile_size)}")
    finally:
        model.train(was_training)
        torch.backends.cudnn.benchmark = cudnn_autotune
    yield Progress(1, 1, "done", "prediction finished")
    return sink.result


def retry_plan(plan: TilePlan, multiple: int, measure_halo: Callable[[], int]) -> TilePlan:
    """:func:`~napari_unet.core.inference.tiling.smaller_plan`, its MemoryError without the OOM traceback."""
    try:
        return smaller_plan(plan, multiple, measure_halo)
    except MemoryError as err:
        raise MemoryError(str(err)) from None


def probe(view: Any, layout: Layout, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Centre of the first plane, normalised: the input :func:`auto_halo` measures with."""
    first = view[(0,) * len(layout.loop_shape)]
    centre = tuple(slice(max(0, s // 2 - 160), s // 2 + 160) for s in layout.spatial_shape)
    block = layout.select(np.asarray(first[(slice(None), *centre)]), raw=True)
    return apply_range(block, lo, hi)
