"""``napari-unet``: segment images and inspect model files from a shell.

    napari-unet segment INPUT... --model FILE --output DIR [--axes] [--channels] [--mode]
                        [--device] [--tile-size] [--min-size] [--tta] [--no-track] [--z-mode]
                        [--anisotropy] [--level] [--scheduler local|none|tcp://HOST:PORT] [--workers N]
                        [--resume] [--block PX] [--max-object PX]
    napari-unet info MODEL_FILE
    napari-unet demo [--output DIR]
    napari-unet train --images DIR --masks DIR --output FILE [--epochs] [--patch-size] [--mode]
                      [--device] [--resume] [--from FILE] ...
    napari-unet evaluate --model FILE --images DIR --masks DIR [--tta]
    napari-unet doctor [--json] [--no-gui]
    napari-unet export MODEL --format bioimageio|torchscript|onnx --output FILE [--overwrite]

Errors print one line on stderr (``napari-unet: error: ...``) and exit with status 1
(2 for bad command-line usage, 130 when interrupted with Ctrl+C); no partial output file is
left behind. Unexpected errors (a bug, a torch error) are one line too, naming their type;
``napari-unet --debug ...`` or ``NAPARI_UNET_DEBUG=1`` prints their traceback as well.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ._cli_errors import CLIError, report
from ._cli_export import cmd_export
from ._cli_parser import build_parser
from ._cli_warnings import warnings_as_lines
from ._cli_zarr import check_zarr_args, read_input, zarr_targets
from .core.image.axes import parse_channels
from .core.image.files import file_stem as output_stem
from .core.image.provenance import build_provenance

log = logging.getLogger("napari_unet")


def _parse_channels(text: str | None) -> list[int | str] | None:
    try:
        return parse_channels(text, strict=True)
    except ValueError:
        raise CLIError(f"--channels {text!r}: empty entry; use e.g. --channels 0,2 or --channels DAPI") from None


def cmd_train(args: argparse.Namespace) -> int:
    from .core.model.bundled import resolve_model_file
    from .core.options import resolve_device
    from .core.progress import StepProgress, TextProgress, drain
    from .core.training.data import pairs_from_folders
    from .core.training.loop import iter_train

    resolve_device(args.device)
    if (args.val_images is None) != (args.val_masks is None):
        raise CLIError("--val-images and --val-masks go together")
    if args.resume and args.from_model:
        raise CLIError("--resume continues a run; --from starts a new one from a model: use one")
    if args.from_model is not None:  # a model file, or a built-in model by name (--from nuclei)
        try:
            args.from_model = resolve_model_file(args.from_model)
        except ValueError as err:
            raise CLIError(f"--from: {err}") from None
    pairs = pairs_from_folders(args.images, args.masks)
    val = pairs_from_folders(args.val_images, args.val_masks) if args.val_images else None
    bar = None if args.no_progress else TextProgress()

    def show(event: Any) -> None:
        if event.kind == "step" and bar is not None:
            bar(StepProgress(event))
        elif event.kind == "epoch":
            print(event.message + (" (best, saved)" if event.improved else ""), flush=True)
        elif event.kind in ("start", "done"):
            print(event.message, flush=True)

    drain(
        iter_train(
            pairs,
            val_pairs=val,
            val_fraction=args.val_fraction,
            mode=args.mode,
            output=args.output,
            model=args.from_model,
            resume=args.resume,
            depth=args.depth,
            base_features=args.features,
            ndim=args.ndim,
            epochs=args.epochs,
            steps_per_epoch=args.steps_per_epoch,
            patch_size=args.patch_size,
            batch_size=args.batch_size,
            lr=args.lr,
            patience=args.patience,
            elastic=args.elastic,
            device=args.device,
            precision=args.precision,
            seed=args.seed,
            axes=args.axes,
            channels=_parse_channels(args.channels),
            description=args.description,
            data_description=args.data_description or f"{len(pairs)} images from {args.images}",
            object_size=args.object_size,
            scale_jitter=args.scale_jitter,
            distance_head=not args.no_distance_head,
            noise=not args.no_noise,
        ),
        show,
    )
    if not args.output.is_file():  # never report a file that is not there
        raise CLIError(f"training finished but no model file was written to {args.output}")
    print(f"model written to {args.output}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Segment the bundled nuclei sample with the bundled model; write labels + overlay; score it."""
    from .core.image.io import read_image, write_labels
    from .core.image.overlay import write_overlay_png
    from .core.image.samples import SAMPLES, sample_path
    from .core.model.bundled import DEFAULT_MODEL_NAME, bundled_model_path
    from .core.model.file import load_model
    from .core.options import resolve_device
    from .core.progress import drain
    from .core.segment import iter_segment
    from .core.training.metrics import average_precision

    device = resolve_device(args.device)
    model_path = bundled_model_path()
    model = load_model(model_path)
    image = read_image(sample_path("nuclei"))
    truth = read_image(sample_path("nuclei_masks")).data
    start = time.perf_counter()
    labels = drain(iter_segment(image.data, model, axes=image.axes, device=device, image_name="the nuclei sample"))
    seconds = time.perf_counter() - start
    args.output.mkdir(parents=True, exist_ok=True)
    stem = output_stem(image.path)
    out = write_labels(
        args.output / f"{stem}_labels.tif",
        labels,
        axes=image.axes,
        scale=image.scale,
        units=image.units,
        provenance=build_provenance(
            command="napari-unet demo",
            model=DEFAULT_MODEL_NAME,
            model_description=model.spec.description,
            input=SAMPLES["nuclei"].file,
            axes=image.axes,
            device=device,
        ),
    )
    png = write_overlay_png(args.output / f"{stem}_overlay.png", np.asarray(image.data), labels)
    ap = average_precision(truth, labels, thresholds=(0.5,))[0.5]
    n_truth = len(np.unique(truth)) - 1
    print(
        f"segmented the bundled sample ({image.data.shape[0]}x{image.data.shape[1]}, DSB2018, CC0) with "
        f"the bundled model on {device} in {seconds:.1f} s"
    )
    print(f"{int(labels.max())} nuclei found ({n_truth} in the ground truth), AP at IoU 0.5 = {ap:.3f}")
    print(f"labels: {out}")
    print(f"overlay: {png}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .core.model.bundled import model_label, resolve_model_file
    from .core.model.file import load_model
    from .core.options import resolve_device
    from .core.progress import drain
    from .core.training.data import pairs_from_folders
    from .core.training.evaluate import iter_evaluate

    resolve_device(args.device)
    try:
        model_file = resolve_model_file(args.model)
    except ValueError as err:
        raise CLIError(f"--model: {err}") from None
    model = load_model(model_file)
    pairs = pairs_from_folders(args.images, args.masks)
    result = drain(
        iter_evaluate(
            model,
            pairs,
            axes=args.axes,
            channels=_parse_channels(args.channels),
            min_size=args.min_size,
            device=args.device,
            tta=args.tta,
        )
    )
    tta = " with test-time augmentation" if args.tta else ""
    name = model_label(model_file)
    name = model_file.name if name == str(model_file) else name
    print(f"{name} on {result['n_images']} images from {args.images}{tta}")
    if "mAP" in result:
        keys = [k for k in result if k.startswith("AP")]
        print("IoU threshold  " + "  ".join(f"{k[2:]:>5}" for k in keys) + "   mean")
        print("AP (pooled)    " + "  ".join(f"{result[k]:5.3f}" for k in keys) + f"  {result['mAP']:5.3f}")
        per = result["per_image"]
        print("AP (per image) " + "  ".join(f"{per[k]:5.3f}" for k in keys) + f"  {per['mAP']:5.3f}")
    print(f"mean IoU       {result['mIoU']:.3f}")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from .core.model.file import describe_model

    print(describe_model(args.model))
    return 0


@warnings_as_lines()
def cmd_segment(args: argparse.Namespace) -> int:
    from .core.image.calibration import anisotropy_from_scale
    from .core.image.io import write_labels
    from .core.inference.planning import plan_for
    from .core.labels.tracking import tracking_applies, tracking_settings, tracks_from_labels, write_tracks_csv
    from .core.model.file import load_model
    from .core.options import check_anisotropy, resolve_device
    from .core.progress import TextProgress, drain
    from .core.segment import iter_segment

    channels = _parse_channels(args.channels)
    check_anisotropy(args.anisotropy)  # a bad --anisotropy fails once, not once per input
    device = resolve_device(args.device)  # a bad or absent device fails once, not once per input
    from .core.model.bundled import model_label, resolve_model_file

    try:
        model_file = resolve_model_file(args.model)  # a file, a built-in name, or None: the default
    except ValueError as err:
        raise CLIError(f"--model: {err}") from None
    model_name = model_label(model_file)  # what the provenance records: "nuclei" for the built-in model
    model = load_model(model_file)
    targets = zarr_targets(args)  # OME-Zarr outputs (--output OUT.zarr, --into-input), else None
    if targets:
        outputs = [t.labels_path for t in targets]
    else:
        outputs = [args.output / f"{output_stem(p)}_labels.tif" for p in args.inputs]
        seen: dict[Path, Path] = {}
        for path, out in zip(args.inputs, outputs):
            if out in seen:
                raise CLIError(f"inputs {seen[out]} and {path} have the same name: both would be written to {out}")
            seen[out] = path
        args.output.mkdir(parents=True, exist_ok=True)
    failures = 0
    for i, (path, out) in enumerate(zip(args.inputs, outputs)):
        start = time.perf_counter()
        try:
            if targets:
                targets[i].check()  # an existing output or labels name fails before segmenting
            img = read_input(path, args)
            axes = args.axes.upper() if args.axes else img.axes
            anisotropy = args.anisotropy
            if anisotropy is None and len(axes) == len(img.scale):
                anisotropy = anisotropy_from_scale(axes, img.scale)
            progress = None if args.no_progress else TextProgress(prefix=f"{path.name}: ")
            gen = iter_segment(
                img.data,
                model,
                mode=args.mode,
                min_size=args.min_size,
                axes=axes,
                channels=channels,
                channel_names=img.channel_names,
                image_name=str(path),
                tile_size=args.tile_size,
                halo=args.halo,
                batch_size=args.batch_size,
                device=args.device,
                precision=args.precision,
                object_size=args.object_size,
                compile={"yes": True, "no": False}.get(args.compile, "auto"),
                tta=args.tta,
                track=args.track,
                z_mode=args.z_mode,
                anisotropy=anisotropy,
            )
            layout = plan_for(
                img.data, model, axes=axes, channels=channels, channel_names=img.channel_names, image_name=str(path)
            )
            found: dict[str, float] = {}

            def watch(event: Any, bar: Any = progress, found: dict[str, float] = found) -> None:
                if event.stage == "size" and event.value is not None:
                    found["object_size"] = event.value
                if bar is not None:
                    bar(event)

            labels = drain(gen, watch)
            out_axes = layout.out_axes
            keep = [i for i, a in enumerate(layout.axes) if a != layout.channel_axis]
            scale = [img.scale[i] for i in keep] if len(img.scale) == len(axes) else None
            units = [img.units[i] for i in keep] if len(img.units) == len(axes) else None
            provenance = build_provenance(
                command="napari-unet segment",
                model=model_name,
                model_description=model.spec.description,
                input=str(path),
                axes=axes,
                device=device,
                flat=True,
                options={
                    "mode": args.mode,
                    "min_size": args.min_size,
                    "axes": axes,
                    "channels": channels,
                    "device": str(device),
                    "tile_size": args.tile_size,
                    "halo": args.halo,
                    "precision": args.precision,
                    "object_size": args.object_size,
                    "object_size_estimated": found.get("object_size"),
                    "tta": args.tta,
                    **tracking_settings(args.track, args.mode, out_axes),
                    "z_mode": args.z_mode,
                    "anisotropy": anisotropy,
                    **({"level": img.metadata["level"]} if "level" in img.metadata else {}),  # zarr inputs
                },
            )
            if targets:  # OME-Zarr labels, block by block (_cli_zarr.py)
                kw = {"image_axes": axes, "axes": out_axes, "scale": scale, "units": units}
                targets[i].write(img, labels, **kw, provenance=provenance)
            else:
                write_labels(out, labels, axes=out_axes, scale=scale, units=units, provenance=provenance)
            tracks_csv = None
            if tracking_applies(args.track, args.mode, out_axes):  # time-lapse: <stem>_tracks.csv beside
                beside = targets[i].container if targets else out
                tracks_csv = beside.with_name(f"{output_stem(path)}_tracks.csv")
                write_tracks_csv(tracks_csv, tracks_from_labels(labels, axes=out_axes), out_axes)
        except Exception as err:  # noqa: BLE001 - one line per failed input, then the next input
            failures += 1
            report(err, args, f"{path}: ")
            continue
        n = int(labels.max()) if labels.size else 0
        what = "objects" if args.mode == "instances" else "classes max"
        what = "tracks" if tracks_csv else what
        size = f", object size {found['object_size']:.0f} px (estimated)" if "object_size" in found else ""
        if args.mode == "instances" and "Z" in layout.loop_axes:  # a z-stack with a 2D model
            what = f"{'tracks' if tracks_csv else 'objects'} (z-mode {args.z_mode})"
        tracks = f", tracks {tracks_csv}" if tracks_csv else ""
        print(
            f"{path} -> {out}: {n} {what}, shape {labels.shape} ({out_axes}){size}{tracks}, "
            f"{time.perf_counter() - start:.1f} s"
        )
    return 1 if failures else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "segment":
        check_zarr_args(parser, args)  # --output or --into-input
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="napari-unet: %(levelname)s: %(message)s"
    )
    try:
        commands = {
            "info": cmd_info,
            "segment": cmd_segment,
            "train": cmd_train,
            "evaluate": cmd_evaluate,
            "demo": cmd_demo,
            "export": cmd_export,
        }
        if args.command == "segment":  # block-wise on dask.distributed, or in memory (_cli_blocks.py)
            from ._cli_blocks import cmd_segment_routed

            commands["segment"] = cmd_segment_routed
        if args.command == "doctor":  # napari_unet/_doctor: checks the installation
            from ._doctor.cli import cmd_doctor

            return cmd_doctor(args)
        return commands[args.command](args)
    except KeyboardInterrupt:
        print("napari-unet: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # noqa: BLE001 - never a traceback unless asked for (--debug)
        report(err, args)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
