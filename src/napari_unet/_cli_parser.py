"""The ``napari-unet`` command line: its argument parser (the commands are in :mod:`napari_unet.cli`)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ._cli_errors import DEBUG_ENV
from ._cli_export import add_export_parser
from ._version import __version__
from .core.options import PRECISIONS, Z_MODES  # the checked choices (importing them does not import torch)


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="napari-unet", description="Segment microscopy images with a U-Net.")
    parser.add_argument("--version", action="version", version=f"napari-unet {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log details to stderr")
    parser.add_argument("--debug", action="store_true", help=f"print the traceback of an error (same as {DEBUG_ENV}=1)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    seg = sub.add_parser(
        "segment", help="segment image files, writing <stem>_labels.tif (and <stem>_tracks.csv for time-lapses)"
    )
    seg.add_argument(
        "inputs", nargs="+", type=Path, metavar="INPUT", help="TIFF image file(s) or zarr / OME-Zarr folder(s) (.zarr)"
    )
    seg.add_argument(
        "--model",
        "-m",
        type=Path,
        default=None,
        help="model file (.safetensors) or a built-in model by name (nuclei); default: nuclei",
    )
    seg.add_argument(
        "--object-size",
        type=float,
        default=None,
        help="typical object diameter in pixels: zoom so objects match the model's training size",
    )
    seg.add_argument(
        "--output",
        "-o",
        type=Path,
        default=None,
        help="output folder (created if needed), or OUT.zarr: a new OME-Zarr with the image and its labels",
    )
    seg.add_argument("--axes", help="axes of the input when its file has none, e.g. ZCYX")
    seg.add_argument("--channels", help="channels to feed the model, by index or name: 0,2 or DAPI")
    seg.add_argument("--mode", choices=("instances", "semantic"), default="instances")
    seg.add_argument("--min-size", type=_int_at_least(0), default=0, help="drop objects smaller than this many pixels")
    seg.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default auto)")
    seg.add_argument(
        "--tile-size", type=_int_at_least(1), default=None, help="tile edge in pixels (default: from memory)"
    )
    seg.add_argument(
        "--halo", type=_int_at_least(0), default=None, help="tile context in pixels (default: from the network)"
    )
    seg.add_argument("--batch-size", type=_int_at_least(1), default=None, help="tiles per forward pass")
    seg.add_argument("--precision", default="auto", choices=PRECISIONS)
    seg.add_argument(
        "--compile",
        choices=("auto", "yes", "no"),
        default="auto",
        help="torch.compile the network: once per run, then faster for every file "
        "(auto: on CUDA when the work is large)",
    )
    seg.add_argument(
        "--tta",
        action="store_true",
        help="test-time augmentation: average over the 8 flips/quarter turns of every tile "
        "(about 8x slower, slightly better)",
    )
    seg.add_argument(
        "--track",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="time-lapses (a T axis), instances: give the same object the same label in every frame "
        "and write <stem>_tracks.csv (track_id, t, [z,] y, x centroids in pixels) beside the labels "
        "(default); --no-track: each frame's objects get their own labels, no CSV",
    )
    # z-stacks with a 2D model (core/labels/zstack.py)
    seg.add_argument(
        "--z-mode",
        choices=Z_MODES,
        default=Z_MODES[0],
        help="z-stacks with a 2D model (instances): 3d = 3D objects from a 3D watershed of the planes' "
        "predictions (default); stitch = 2D objects linked plane to plane by overlap; planes = "
        "independent labels per plane; 3d-ortho = also predict on XZ and YZ planes (slower)",
    )
    seg.add_argument(
        "--anisotropy",
        type=float,
        default=None,
        help="Z spacing / XY spacing of a z-stack (default: from the file's calibration); used by 3d-ortho",
    )
    # block-wise runs on dask.distributed (core/blocks; docs/big-data.md)
    seg.add_argument(
        "--scheduler",
        default=None,
        help="block by block on dask.distributed: 'local' (a LocalCluster; the default for zarr inputs written "
        "as OME-Zarr labels, --into-input or --output OUT.zarr), a scheduler address tcp://host:8786, or 'none' "
        "(in memory); with a folder --output, block-wise runs write <stem>_labels.zarr",
    )
    seg.add_argument(
        "--workers",
        type=_int_at_least(1),
        default=None,
        help="worker processes of --scheduler local (default: one per GPU, else one)",
    )
    seg.add_argument("--resume", action="store_true", help="continue a killed block-wise run (its completion records)")
    seg.add_argument(
        "--block", type=_int_at_least(1), default=None, help="block edge in pixels, whole output chunks (default 1024)"
    )
    seg.add_argument(
        "--max-object",
        type=_int_at_least(0),
        default=None,
        help="largest object diameter a block's halo must hold (default: twice the object size)",
    )
    # zarr / OME-Zarr inputs (core/image/zarr_read.py)
    seg.add_argument(
        "--level",
        type=_int_at_least(0),
        default=None,
        help="resolution level of multiscale OME-Zarr inputs (default 0: full resolution)",
    )
    # OME-Zarr outputs (_cli_zarr.py, docs/big-data.md)
    seg.add_argument(
        "--into-input",
        action="store_true",
        help="write the labels into each input OME-Zarr, as IN.zarr/labels/<name> (instead of --output)",
    )
    seg.add_argument("--labels-name", default=None, help="name of the labels in the OME-Zarr (default <stem>_labels)")
    seg.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing OUT.zarr or labels of that name (TIFF outputs are always replaced)",
    )
    seg.add_argument("--no-progress", action="store_true", help="no progress bar")

    info = sub.add_parser("info", help="describe a model file")
    info.add_argument("model", type=Path, help="model file (.safetensors)")

    tr = sub.add_parser("train", help="train a U-Net on folders of images and masks")
    tr.add_argument("--images", type=Path, required=True, help="folder of training images (.tif)")
    tr.add_argument(
        "--masks",
        type=Path,
        required=True,
        help="folder of label images matched by name (a.tif, a_mask.tif, a_labels.tif)",
    )
    tr.add_argument("--output", "-o", type=Path, required=True, help="model file to write (.safetensors)")
    tr.add_argument(
        "--mode",
        choices=("instances", "semantic"),
        default="instances",
        help="instances: touching objects (background/interior/boundary); semantic: classes",
    )
    tr.add_argument("--epochs", type=_int_at_least(1), default=50)
    tr.add_argument("--steps-per-epoch", type=_int_at_least(1), default=None)
    tr.add_argument(
        "--patch-size", type=_int_at_least(16), default=None, help="patch edge (default 256 for --ndim 2, 64 for 3)"
    )
    tr.add_argument("--batch-size", type=_int_at_least(1), default=8)
    tr.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (AdamW, cosine decay)")
    tr.add_argument("--depth", type=_int_at_least(1), default=4)
    tr.add_argument("--features", type=_int_at_least(1), default=32, help="base features of a new model")
    tr.add_argument("--ndim", type=int, choices=(2, 3), default=2, help="2D (per plane) or 3D (ZYX volumes) model")
    tr.add_argument("--val-fraction", type=float, default=0.15)
    tr.add_argument("--val-images", type=Path, help="explicit validation images (instead of a split)")
    tr.add_argument("--val-masks", type=Path)
    tr.add_argument("--patience", type=_int_at_least(1), default=None, help="early stopping (epochs)")
    tr.add_argument("--elastic", action="store_true", help="add elastic deformations")
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--device", default="auto")
    tr.add_argument("--precision", default="auto", choices=PRECISIONS)
    tr.add_argument("--axes", help="axes of the images when their files have none")
    tr.add_argument("--channels", help="channels to train on, by index or name")
    tr.add_argument("--resume", action="store_true", help="continue the run that writes --output")
    tr.add_argument(
        "--from", dest="from_model", type=Path, help="fine-tune this model file, or a bundled model by name (nuclei)"
    )
    tr.add_argument("--description", default="", help="free text stored in the model file")
    tr.add_argument(
        "--data-description",
        default=None,
        help="what the training data is, stored in the model's training record "
        "(default: the number of images and their folder)",
    )
    tr.add_argument(
        "--object-size",
        default="auto",
        type=_object_size_option,
        help="instance models: zoom training images so their median object diameter is this "
        "many pixels; 'auto' (default): the median over all images; 'none': no zoom",
    )
    tr.add_argument(
        "--scale-jitter",
        type=float,
        default=1.25,
        help="patches zoomed by a random factor in [1/J, J] (default 1.25; 1: none)",
    )
    tr.add_argument(
        "--no-distance-head",
        action="store_true",
        help="instance models: no distance head (classes only, the older recipe)",
    )
    tr.add_argument("--no-noise", action="store_true", help="no Gaussian noise augmentation")
    tr.add_argument("--no-progress", action="store_true")

    demo = sub.add_parser("demo", help="segment the bundled sample with the bundled model")
    demo.add_argument(
        "--output",
        "-o",
        type=Path,
        default=Path("napari-unet-demo"),
        help="folder for the labels TIFF and the overlay PNG (default napari-unet-demo)",
    )
    demo.add_argument("--device", default="auto")

    ev = sub.add_parser("evaluate", help="AP at IoU 0.5-0.95 and mean IoU of a model on labelled images")
    ev.add_argument(
        "--model", "-m", type=Path, required=True, help="model file (.safetensors) or a built-in model by name (nuclei)"
    )
    ev.add_argument("--images", type=Path, required=True)
    ev.add_argument("--masks", type=Path, required=True)
    ev.add_argument("--min-size", type=_int_at_least(0), default=0)
    ev.add_argument("--device", default="auto")
    ev.add_argument("--axes")
    ev.add_argument("--channels")
    ev.add_argument(
        "--tta",
        action="store_true",
        help="test-time augmentation: average over the 8 flips/quarter turns (about 8x slower)",
    )
    # napari-unet doctor (napari_unet/_doctor)
    from ._doctor.cli import add_doctor_parser

    add_doctor_parser(sub)
    add_export_parser(sub)  # napari-unet export (_cli_export.py)
    return parser


def _object_size_option(text: str) -> float | str | None:
    """``--object-size`` of ``train``: a positive number, ``auto`` or ``none``."""
    low = text.strip().lower()
    if low == "auto":
        return "auto"
    if low == "none":
        return None
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of pixels, 'auto' or 'none', got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number of pixels, got {text!r}")
    return value
