"""Retrain the bundled nuclei model exactly as shipped.

    python scripts/train_default_model.py [--data ../shared/data/dsb2018_fluo] [--device auto]
                                          [--epochs N] [--out build/nuclei] [--resume] [--finalize-only]

Builds train/validation folders (symbolic links) from the fixed split in
``scripts/dsb2018_split.json`` (seed 20181, 49 validation images), runs ``napari-unet train`` with
the settings below (which ends by fitting the object-size regression), then finalises the model:
``scripts/tune_postprocess.py --write`` chooses the post-processing on the validation images, the
input channel is named ``nuclei``, the halo is measured on the bundled sample and stored, and
``napari-unet evaluate`` scores the result. Copy ``<out>/nuclei.safetensors`` to
``src/napari_unet/data/models/`` to ship it. The settings and the seed are the record: the same
command on the same hardware gives the same model.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

# The shipped model's settings (also stored in the model file's training record).
SETTINGS = {
    "--mode": "instances",
    "--depth": "4",
    "--features": "16",
    "--patch-size": "256",
    "--batch-size": "8",
    "--lr": "0.002",
    "--seed": "0",
    # every training image zoomed so its median nucleus is 18 px across, patches zoomed by 1/1.35..1.35
    "--object-size": "18",
    "--scale-jitter": "1.35",
}
DESCRIPTION = (
    "Fluorescence nuclei: 2D instance U-Net with a distance head, trained on DSB2018 stage1_train "
    "(BBBC038v1, CC0); finds the nucleus size in each image"
)
DATA = (
    "DSB2018 stage1_train (BBBC038v1, CC0 1.0; Caicedo et al., Nature Methods 16:1247, 2019): "
    "442 grayscale fluorescence images, split scripts/dsb2018_split.json"
)


def link_split(data: Path, names: list[str], dest: Path) -> None:
    for sub in ("images", "masks"):
        (dest / sub).mkdir(parents=True, exist_ok=True)
        for name in names:
            target = dest / sub / f"{name}.tif"
            if not target.exists():
                os.symlink((data / sub / f"{name}.tif").resolve(), target)


def finalize(path: Path) -> None:
    """Name the input channel and store the halo measured on five crops of the bundled sample."""
    import numpy as np

    from napari_unet.core.image.io import read_image
    from napari_unet.core.image.normalize import apply_range, percentile_range
    from napari_unet.core.image.samples import sample_path
    from napari_unet.core.inference.halo import effective_radius
    from napari_unet.core.inference.tiling import round_up
    from napari_unet.core.model.file import load_model, read_model_info, save_model

    model = load_model(path)
    image = np.asarray(read_image(sample_path("nuclei")).data, np.float32)[None]
    lo, hi = percentile_range(image, *model.spec.percentiles)
    image = apply_range(image, lo, hi)
    h, w = image.shape[1:]
    crops = [
        image[:, y : y + 320, x : x + 320]
        for y, x in ((0, 0), (0, w - 320), (h - 320, 0), (h - 320, w - 320), ((h - 320) // 2, (w - 320) // 2))
    ]
    radius = max(effective_radius(model, crop) for crop in crops)
    halo = min(round_up(radius, 8), round_up(model.receptive_radius(), 8))
    training = read_model_info(path)["spec"].get("training") or {}
    save_model(model, path, channel_names=["nuclei"], halo=int(halo), training=training, description=DESCRIPTION)
    print(f"finalised {path}: channel 'nuclei', halo {halo} px (effective radius {radius} px)", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "dsb2018_fluo")
    parser.add_argument("--out", type=Path, default=REPO / "build" / "nuclei")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--epochs", default="42")
    parser.add_argument("--steps-per-epoch", default="200")
    parser.add_argument(
        "--features", default=SETTINGS["--features"], help="base features (the shipped model's by default)"
    )
    parser.add_argument("--resume", action="store_true", help="continue the run in --out")
    parser.add_argument(
        "--finalize-only", action="store_true", help="skip training: finalise and evaluate the model already in --out"
    )
    args = parser.parse_args()
    split = json.loads((HERE / "dsb2018_split.json").read_text())
    link_split(args.data, split["train"], args.out / "train")
    link_split(args.data, split["validation"], args.out / "val")
    exe = [sys.executable, "-m", "napari_unet.cli"]
    model = args.out / "nuclei.safetensors"
    cmd = (
        exe
        + [
            "train",
            "--images",
            str(args.out / "train" / "images"),
            "--masks",
            str(args.out / "train" / "masks"),
            "--val-images",
            str(args.out / "val" / "images"),
            "--val-masks",
            str(args.out / "val" / "masks"),
            "--output",
            str(model),
            "--device",
            args.device,
            "--epochs",
            args.epochs,
            "--steps-per-epoch",
            args.steps_per_epoch,
            "--description",
            DESCRIPTION,
            "--data-description",
            DATA,
            *[x for kv in {**SETTINGS, "--features": args.features}.items() for x in kv],
        ]
        + (["--resume"] if args.resume else [])
    )
    if not args.finalize_only:
        print(" ".join(cmd), flush=True)
        subprocess.run(cmd, check=True)
    subprocess.run(
        [
            sys.executable,
            str(HERE / "tune_postprocess.py"),
            str(model),
            "--images",
            str(args.out / "val" / "images"),
            "--masks",
            str(args.out / "val" / "masks"),
            "--write",
        ],
        check=True,
    )
    finalize(model)
    subprocess.run(
        exe
        + [
            "evaluate",
            "--model",
            str(model),
            "--images",
            str(args.out / "val" / "images"),
            "--masks",
            str(args.out / "val" / "masks"),
            "--device",
            args.device,
        ],
        check=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
