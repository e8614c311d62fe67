"""``napari-unet segment --scheduler ...``: block-wise segmentation on dask.distributed from the shell.

Used for zarr inputs (a zarr array's folder) and whenever ``--scheduler`` is given; writes
``<stem>_labels.zarr`` (a zarr array, chunks = blocks) into the output folder, with the run's
completion records beside it (``<stem>_labels.zarr.blocks``) so ``--resume`` can continue it.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from ._cli_errors import CLIError


def input_array(path: Path) -> tuple[Any, str | None, Any]:
    """``(array or zarr path, axes from the file or None, channel names)`` for one input."""
    if path.suffix == ".zarr" or (path / "zarr.json").is_file() or (path / ".zarray").is_file():
        return str(path), None, None
    from .core.image.io import read_image

    img = read_image(path)
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
            image, file_axes, names = input_array(path)
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
