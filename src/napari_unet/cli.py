"""``napari-unet``: segment images and inspect model files from a shell.

    napari-unet segment INPUT... --model FILE --output DIR [--axes] [--channels] [--mode]
                        [--device] [--tile-size] [--min-size]
    napari-unet info MODEL_FILE

Errors print one line on stderr (``napari-unet: error: ...``) and exit with status 1
(2 for bad command-line usage); no partial output file is left behind.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from ._version import __version__

log = logging.getLogger("napari_unet")


class CLIError(Exception):
    """An expected failure: printed as one line, exit status 1."""


def _parse_channels(text: str | None) -> list[int | str] | None:
    if text is None:
        return None
    out: list[int | str] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            raise CLIError(f"--channels {text!r}: empty entry; use e.g. --channels 0,2 or --channels DAPI")
        out.append(int(part) if part.lstrip("-").isdigit() else part)
    return out


def _int_at_least(minimum: int) -> Any:
    """argparse type: an integer >= ``minimum`` (bad values are usage errors, status 2)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    parse.__name__ = "int"
    return parse


# Core messages name Python keyword arguments; on the command line the options are meant.
_CLI_WORDING = (("channels=[...]", "--channels"), ("pick one with channels=", "pick one with --channels"))


def _cli_message(err: BaseException) -> str:
    text = _one_line(err)
    for api_text, cli_text in _CLI_WORDING:
        text = text.replace(api_text, cli_text)
    return text


def output_stem(path: Path) -> str:
    """File name without its (possibly double) image extension: ``a.ome.tif`` → ``a``."""
    name = path.name
    for ext in (".ome.tiff", ".ome.tif", ".tiff", ".tif"):
        if name.lower().endswith(ext):
            return name[: -len(ext)]
    return path.stem


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="napari-unet", description="Segment microscopy images with a U-Net."
    )
    parser.add_argument("--version", action="version", version=f"napari-unet {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log details to stderr")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    seg = sub.add_parser("segment", help="segment image files, writing <stem>_labels.tif")
    seg.add_argument("inputs", nargs="+", type=Path, metavar="INPUT", help="TIFF image file(s)")
    seg.add_argument("--model", "-m", type=Path, required=True, help="model file (.safetensors)")
    seg.add_argument("--output", "-o", type=Path, required=True, help="output folder (created if needed)")
    seg.add_argument("--axes", help="axes of the input when its file has none, e.g. ZCYX")
    seg.add_argument("--channels", help="channels to feed the model, by index or name: 0,2 or DAPI")
    seg.add_argument("--mode", choices=("instances", "semantic"), default="instances")
    seg.add_argument("--min-size", type=_int_at_least(0), default=0,
                     help="drop objects smaller than this many pixels")
    seg.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default auto)")
    seg.add_argument("--tile-size", type=_int_at_least(1), default=None,
                     help="tile edge in pixels (default: from memory)")
    seg.add_argument("--halo", type=_int_at_least(0), default=None,
                     help="tile context in pixels (default: from the network)")
    seg.add_argument("--batch-size", type=_int_at_least(1), default=None, help="tiles per forward pass")
    seg.add_argument("--precision", default="auto", choices=("auto", "float32", "bfloat16", "float16"))
    seg.add_argument("--no-progress", action="store_true", help="no progress bar")

    info = sub.add_parser("info", help="describe a model file")
    info.add_argument("model", type=Path, help="model file (.safetensors)")
    return parser


def cmd_info(args: argparse.Namespace) -> int:
    from .core.modelfile import describe_model

    print(describe_model(args.model))
    return 0


def cmd_segment(args: argparse.Namespace) -> int:
    from .core.inference import plan_for, resolve_device
    from .core.io import read_image, write_labels
    from .core.modelfile import load_model
    from .core.progressbar import TextProgress
    from .core.segment import iter_segment

    channels = _parse_channels(args.channels)
    device = resolve_device(args.device)  # a bad or absent device fails once, not once per input
    model = load_model(args.model)
    outputs = [args.output / f"{output_stem(p)}_labels.tif" for p in args.inputs]
    seen: dict[Path, Path] = {}
    for path, out in zip(args.inputs, outputs):
        if out in seen:
            raise CLIError(f"inputs {seen[out]} and {path} have the same name: both would be written to {out}")
        seen[out] = path
    args.output.mkdir(parents=True, exist_ok=True)
    failures = 0
    for path, out in zip(args.inputs, outputs):
        start = time.perf_counter()
        try:
            img = read_image(path)
            axes = args.axes.upper() if args.axes else img.axes
            progress = None if args.no_progress else TextProgress(prefix=f"{path.name}: ")
            gen = iter_segment(
                img.data, model, mode=args.mode, min_size=args.min_size, axes=axes,
                channels=channels, channel_names=img.channel_names, image_name=str(path),
                tile_size=args.tile_size, halo=args.halo, batch_size=args.batch_size,
                device=args.device, precision=args.precision,
            )
            layout = plan_for(img.data, model, axes=axes, channels=channels,
                              channel_names=img.channel_names, image_name=str(path))
            labels = _drain(gen, progress)
            out_axes = layout.out_axes
            keep = [i for i, a in enumerate(layout.axes) if a != layout.channel_axis]
            scale = [img.scale[i] for i in keep] if len(img.scale) == len(axes) else None
            units = [img.units[i] for i in keep] if len(img.units) == len(axes) else None
            provenance = {
                "software": f"napari-unet {__version__}",
                "command": "napari-unet segment",
                "input": str(path),
                "model": str(args.model),
                "model_description": model.spec.description,
                "mode": args.mode,
                "min_size": args.min_size,
                "axes": axes,
                "channels": channels,
                "device": str(device),
                "tile_size": args.tile_size,
                "halo": args.halo,
                "precision": args.precision,
            }
            write_labels(out, labels, axes=out_axes, scale=scale, units=units, provenance=provenance)
        except (ValueError, TypeError, OSError, MemoryError) as err:
            failures += 1
            print(f"napari-unet: error: {path}: {_cli_message(err)}", file=sys.stderr)
            continue
        n = int(labels.max()) if labels.size else 0
        what = "objects" if args.mode == "instances" else "classes max"
        print(
            f"{path} -> {out}: {n} {what}, shape {labels.shape} ({out_axes}), "
            f"{time.perf_counter() - start:.1f} s"
        )
    return 1 if failures else 0


def _drain(gen: Any, progress: Any) -> Any:
    while True:
        try:
            event = next(gen)
        except StopIteration as stop:
            return stop.value
        if progress is not None:
            progress(event)


def _one_line(err: BaseException) -> str:
    text = str(err) or type(err).__name__
    if isinstance(err, FileNotFoundError) and err.filename:
        text = f"no such file: {err.filename}"
    return " ".join(text.split())


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="napari-unet: %(levelname)s: %(message)s",
    )
    try:
        if args.command == "info":
            return cmd_info(args)
        return cmd_segment(args)
    except CLIError as err:
        print(f"napari-unet: error: {err}", file=sys.stderr)
        return 1
    except (ValueError, TypeError, OSError) as err:
        print(f"napari-unet: error: {_cli_message(err)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("napari-unet: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
