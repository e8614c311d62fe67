"""``napari-unet segment``: block-wise on dask.distributed, or in memory, per input (docs/big-data.md).

- ``--scheduler local|tcp://HOST:PORT``: every input block-wise.
- no ``--scheduler``: **zarr / OME-Zarr inputs written as OME-Zarr labels** (``--into-input``,
  ``--output OUT.zarr``) run block-wise on a ``LocalCluster`` (``--workers``); TIFF inputs and
  folder outputs (``<stem>_labels.tif``) in memory. Loop axes (T, or Z with a 2D model) run
  block-wise too, plane by plane, then tracked (``--track``) or linked along Z (``--z-mode
  stitch``; ``3d`` and ``3d-ortho`` become ``stitch`` with a note) streaming over the output.
- ``--scheduler none``: every input in memory (:func:`napari_unet.cli.cmd_segment`).

Block-wise OME-Zarr outputs go through :class:`~napari_unet.core.blocks.ome.OmeLabels` (the
labels writer; ``--resume`` continues a killed run); with ``--scheduler`` and a folder output,
``<stem>_labels.zarr`` is a plain zarr array (chunks = blocks) with its records beside it.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path
from typing import Any

from ._cli_errors import CLIError
from ._cli_zarr import wants_zarr, zarr_stem, zarr_targets

IN_MEMORY = ("none", "memory")


def cmd_segment_routed(args: argparse.Namespace) -> int:
    """``segment``: block-wise (:func:`cmd_segment_blocks`) or in memory, as the module docstring says."""
    from .cli import cmd_segment
    from .core.image.zarr_read import is_zarr_path

    choice = (args.scheduler or "").strip()
    if choice.lower() in IN_MEMORY:
        args.scheduler = None
        return cmd_segment(args)
    if not choice and (not wants_zarr(args) or not any(is_zarr_path(p) for p in args.inputs)):
        return cmd_segment(args)
    if not choice and importlib.util.find_spec("distributed") is None:
        print("napari-unet: note: dask.distributed is not installed: segmenting in memory", file=sys.stderr)
        return cmd_segment(args)
    return cmd_segment_blocks(args, explicit=bool(choice))


def _in_memory(args: argparse.Namespace, path: Path) -> int:
    from .cli import cmd_segment

    return cmd_segment(argparse.Namespace(**{**vars(args), "inputs": [path], "scheduler": None}))


def _labels_target(target: Any, img: Any, axes: str, provenance: dict[str, Any], overwrite: bool) -> Any:
    from .core.blocks.ome import OmeLabels

    calibrated = len(img.scale) == len(axes)
    scale = dict(zip(axes, img.scale)) if calibrated else None
    units = dict(zip(axes, img.units)) if len(img.units) == len(axes) else None
    image = None
    if target.new:  # a new OME-Zarr: the image copied, then the labels
        image = (img.data, axes, img.scale if calibrated else None, img.units if units else None)
    return OmeLabels(
        target.container, target.name, into=not target.new, scale=scale, units=units,
        provenance=provenance, image=image, overwrite=overwrite,
    )  # fmt: skip


def _provenance(args: argparse.Namespace, path: Path, axes: str, model: Any, model_name: str) -> dict[str, Any]:
    from .core.image.provenance import build_provenance

    options = {
        "mode": args.mode, "min_size": args.min_size, "axes": axes, "channels": args.channels,
        "device": args.device, "tile_size": args.tile_size, "halo": args.halo, "precision": args.precision,
        "object_size": args.object_size, "tta": args.tta, "level": args.level, "scheduler": args.scheduler or "local",
        "workers": args.workers, "block": args.block, "max_object": args.max_object, "resume": args.resume,
    }  # fmt: skip
    return build_provenance(
        command="napari-unet segment", model=model_name, model_description=model.spec.description,
        input=str(path), axes=axes, device=args.device, options=options, flat=True,
    )  # fmt: skip


def segment_one(args: argparse.Namespace, path: Path, model: Any, model_name: str, channels: Any, target: Any) -> int:
    """Segment one input block-wise (or in memory: a TIFF without --scheduler); 0 if done."""
    import warnings

    from .core.blocks.resume import default_records, done_blocks
    from .core.blocks.run import iter_segment_blocks
    from .core.image.axes import AxesGuessWarning
    from .core.image.io import read_image
    from .core.image.zarr_read import is_zarr_path
    from .core.progress import TextProgress, drain

    explicit = bool(args.scheduler)
    if not explicit and not is_zarr_path(path):  # TIFF inputs stay in memory unless --scheduler
        return _in_memory(args, path)
    start = time.perf_counter()
    if target is not None:
        target.check()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AxesGuessWarning)  # a plain zarr array: --axes or the guess
        img = read_image(path, level=args.level)
    axes = args.axes.upper() if args.axes else img.axes
    if target is not None:
        out = _labels_target(target, img, axes, _provenance(args, path, axes, model, model_name), args.overwrite)
        records = out.records()
    else:
        out = args.output / f"{zarr_stem(path)}_labels.zarr"
        records = default_records(out)
    bar = None if args.no_progress else TextProgress(prefix=f"{path.name}: ")

    def show(event: Any, shown: list[bool] = []) -> None:  # noqa: B006 - once per input
        if event.stage == "blocks" and " blocks of " in event.message and not shown:
            print(f"{path.name}: {event.message}", flush=True)
            shown.append(True)
        if bar is not None:
            bar(event)

    gen = iter_segment_blocks(
        img.data, model, out=out, axes=axes, channels=channels, channel_names=img.channel_names, mode=args.mode,
        min_size=args.min_size, block=args.block, max_object=args.max_object, scheduler=args.scheduler or "local",
        workers=args.workers, resume=args.resume, object_size=args.object_size, halo=args.halo,
        tile_size=args.tile_size, batch_size=args.batch_size, device=args.device, precision=args.precision,
        tta=args.tta, image_name=str(path), track=args.track, z_mode=args.z_mode,
    )  # fmt: skip
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", UserWarning)
            result = drain(gen, show)
        for note in caught:  # --z-mode 3d: the planes are linked instead (one note line); others as they were
            if "block-wise runs link the planes" in str(note.message):
                print(f"napari-unet: note: {path}: {note.message}", file=sys.stderr)
            else:
                warnings.showwarning(note.message, note.category, note.filename, note.lineno)
    except KeyboardInterrupt:
        done = len(done_blocks(records))
        if done:
            print(
                f"napari-unet: note: {path}: {done} blocks are done; run the same command with --resume to continue",
                file=sys.stderr,
            )
        raise
    tracks = _write_tracks(args, path, axes, result, target)
    objects = f", {result.n_objects} objects" if result.n_objects is not None else ""
    devices = ", ".join(f"{w} {d}" for w, d in sorted(result.devices.items()))
    print(
        f"{path} -> {result.path or out} ({result.n_blocks} blocks, {len(result.run)} run, {len(result.skipped)} "
        f"resumed{objects}, workers: {devices or 'none needed'}{tracks}, {time.perf_counter() - start:.1f} s)"
    )
    return 0


def _write_tracks(args: argparse.Namespace, path: Path, axes: str, result: Any, target: Any) -> str:
    """A tracked time-lapse: ``<stem>_tracks.csv`` beside the output, as in memory, read frame by frame."""
    from .core.image.files import file_stem
    from .core.labels.tracking import tracking_applies, tracks_from_frames, write_tracks_csv

    out_axes = "".join(a for a in axes if a not in "CS")
    if not tracking_applies(args.track, args.mode, out_axes) or len(out_axes) != result.out.ndim:
        return ""
    beside = target.container if target is not None else args.output / zarr_stem(path)
    csv = beside.with_name(f"{file_stem(path)}_tracks.csv")
    t = out_axes.index("T")
    frame = lambda i: result.out[tuple(i if a == t else slice(None) for a in range(result.out.ndim))]  # noqa: E731
    write_tracks_csv(csv, tracks_from_frames(frame, result.out.shape[t], result.out.ndim - 1), out_axes)
    return f", tracks {csv}"


def cmd_segment_blocks(args: argparse.Namespace, explicit: bool = True) -> int:
    """``segment`` block-wise: every input with ``--scheduler``, else the zarr ones (:func:`segment_one`)."""
    from .cli import _parse_channels
    from .core.model.bundled import model_label, resolve_model_file
    from .core.model.file import load_model
    from .core.options import resolve_device

    if args.mode not in ("instances", "semantic"):
        raise CLIError(f"--mode {args.mode!r}: block-wise runs write instances or semantic labels")
    channels = _parse_channels(args.channels)
    resolve_device(args.device)
    try:
        model_file = resolve_model_file(args.model)
    except ValueError as err:
        raise CLIError(f"--model: {err}") from None
    model = load_model(model_file)
    targets = zarr_targets(args)  # OME-Zarr labels (--into-input, --output OUT.zarr), else a folder
    if targets is None:
        args.output.mkdir(parents=True, exist_ok=True)
    if not explicit:
        args.scheduler = None
    failures = 0
    for i, path in enumerate(args.inputs):
        try:
            target = targets[i] if targets else None
            failures += bool(segment_one(args, path, model, model_label(model_file), channels, target))
        except (ValueError, TypeError, OSError, ImportError) as err:
            if len(args.inputs) == 1:
                raise CLIError(f"{path}: {err}") from None
            print(f"napari-unet: error: {path}: {err}", file=sys.stderr)
            failures += 1
    return 1 if failures else 0
