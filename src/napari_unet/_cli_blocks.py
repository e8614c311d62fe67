"""``napari-unet segment --scheduler ...``: block-wise segmentation on dask.distributed from the shell.

Used when ``--scheduler`` is given (TIFF or zarr / OME-Zarr inputs, read lazily); writes
``<stem>_labels.zarr`` (a zarr array, chunks = blocks) into the output folder, with the run's
completion records beside it (``<stem>_labels.zarr.blocks``) so ``--resume`` can continue it.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from ._cli_errors import CLIError


def input_array(path: Path, level: int | None = None) -> tuple[Any, str | None, Any]:
    """``(array, axes, channel names)`` of one input: ``read_image`` (TIFF, or zarr / OME-Zarr read
    lazily as a dask array, ``--level``)."""
    import warnings

    from .core.image.axes import AxesGuessWarning
    from .core.image.io import read_image

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AxesGuessWarning)  # a plain zarr array: --axes or the guess
        img = read_image(path, level=level)
    return img.data, img.axes, img.channel_names


def segment_files_blocks(args: argparse.Namespace, model: Any, channels: Any) -> int:
    from .core.blocks.run import iter_segment_blocks
    from .core.progress import TextProgress, drain

    if args.mode not in ("instances", "semantic"):
        raise CLIError(f"--mode {args.mode!r}: block-wise runs write instances or semantic labels")
    failures = 0
    for path in args.inputs:
        start = time.perf_counter()
        out = args.output / f"{path.name.removesuffix('.zarr') if path.suffix == '.zarr' else path.stem}_labels.zarr"
        try:
            image, file_axes, names = input_array(path, getattr(args, "level", None))
            axes = args.axes.upper() if args.axes else file_axes
            gen = iter_segment_blocks(
                image,
                model,
                out=out,
                axes=axes,
                channels=channels,
                channel_names=names,
                mode=args.mode,
                min_size=args.min_size,
                block=args.block,
                max_object=args.max_object,
                scheduler=args.scheduler or "local",
                workers=args.workers,
                resume=args.resume,
                object_size=args.object_size,
                halo=args.halo,
                tile_size=args.tile_size,
                batch_size=args.batch_size,
                device=args.device,
                precision=args.precision,
                tta=args.tta,
                image_name=str(path),
            )
            result = drain(gen, None if args.no_progress else TextProgress(prefix=f"{path.name}: "))
        except (ValueError, TypeError, OSError, ImportError) as err:
            if len(args.inputs) == 1:
                raise CLIError(f"{path}: {err}") from None
            print(f"napari-unet: error: {path}: {err}")
            failures += 1
            continue
        objects = f", {result.n_objects} objects" if result.n_objects is not None else ""
        print(
            f"{path} -> {out} ({result.n_blocks} blocks, {len(result.run)} run, {len(result.skipped)} resumed"
            f"{objects}, {time.perf_counter() - start:.1f} s)"
        )
    return 1 if failures else 0


def cmd_segment_blocks(args: argparse.Namespace) -> int:
    """``segment --scheduler``: block-wise on dask.distributed (:mod:`napari_unet._cli_blocks`)."""
    from .cli import _parse_channels
    from .core.model.bundled import resolve_model_file
    from .core.model.file import load_model
    from .core.options import resolve_device

    channels = _parse_channels(args.channels)
    resolve_device(args.device)
    try:
        model_file = resolve_model_file(args.model)
    except ValueError as err:
        raise CLIError(f"--model: {err}") from None
    args.output.mkdir(parents=True, exist_ok=True)
    return segment_files_blocks(args, load_model(model_file), channels)
