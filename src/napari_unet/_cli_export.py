"""``napari-unet export``: a model as a bioimage.io package, TorchScript or ONNX (docs/export.md).

Self-contained: :func:`add_export_parser` adds the subcommand to the parser, :func:`cmd_export` runs it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

FORMAT_CHOICES = ("bioimageio", "torchscript", "onnx")


def add_export_parser(sub: argparse._SubParsersAction) -> None:
    ex = sub.add_parser(
        "export",
        help="write a model as a bioimage.io package (deepImageJ, ilastik, QuPath, BioImage Model Zoo), "
        "TorchScript or ONNX",
    )
    ex.add_argument("model", help="model file (.safetensors) or a built-in model by name (nuclei)")
    ex.add_argument(
        "--format",
        "-f",
        required=True,
        choices=FORMAT_CHOICES,
        help="bioimageio: a .zip package with pytorch_state_dict, TorchScript and ONNX weights, test tensors, "
        "cover and README; torchscript: one .pt file; onnx: one .onnx file (all output probabilities)",
    )
    ex.add_argument("--output", "-o", type=Path, required=True, help="file to write (.zip for bioimageio)")
    ex.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    ex.add_argument("--name", default=None, help="bioimageio: the package's name (default: from the model)")
    ex.add_argument(
        "--author",
        action="append",
        dest="authors",
        default=None,
        help="bioimageio: an author (repeat for several; default: napari-unet developers for built-in models)",
    )
    ex.add_argument(
        "--license",
        default=None,
        help="bioimageio: SPDX licence id of the weights (default: BSD-3-Clause for built-in models, else CC-BY-4.0)",
    )


def cmd_export(args: argparse.Namespace) -> int:
    from .core.export.run import export_model

    path = export_model(
        args.model,
        format=args.format,
        output=args.output,
        overwrite=args.overwrite,
        name=args.name,
        authors=args.authors,
        license=args.license,
    )
    print(f"exported {args.model} as {args.format}: {path} ({path.stat().st_size / 1e6:.1f} MB)")
    return 0
