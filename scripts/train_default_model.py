"""Retrain the bundled nuclei model exactly as shipped.

    python scripts/train_default_model.py [--data ../shared/data/dsb2018_fluo] [--device auto]
                                          [--epochs N] [--out build/nuclei]

Builds train/validation folders (symbolic links) from the fixed split in
``scripts/dsb2018_split.json`` (seed 20181, 49 validation images), runs ``napari-unet train`` with
the settings below, then ``napari-unet evaluate`` on the validation images. The settings and the
seed are the record: the same command on the same hardware gives the same model.
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
DESCRIPTION = "Fluorescence nuclei, 2D instance U-Net with a distance head"
DATA = ("DSB2018 stage1_train (BBBC038v1, CC0 1.0; Caicedo et al., Nature Methods 16:1247, 2019): "
        "442 grayscale fluorescence images, split scripts/dsb2018_split.json")


def link_split(data: Path, names: list[str], dest: Path) -> None:
    for sub in ("images", "masks"):
        (dest / sub).mkdir(parents=True, exist_ok=True)
        for name in names:
            target = dest / sub / f"{name}.tif"
            if not target.exists():
                os.symlink((data / sub / f"{name}.tif").resolve(), target)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "dsb2018_fluo")
    parser.add_argument("--out", type=Path, default=REPO / "build" / "nuclei")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--epochs", default="50")
    parser.add_argument("--steps-per-epoch", default="200")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out")
    args = parser.parse_args()
    split = json.loads((HERE / "dsb2018_split.json").read_text())
    link_split(args.data, split["train"], args.out / "train")
    link_split(args.data, split["validation"], args.out / "val")
    exe = [sys.executable, "-m", "napari_unet.cli"]
    model = args.out / "nuclei.safetensors"
    cmd = exe + [
        "train", "--images", str(args.out / "train" / "images"), "--masks", str(args.out / "train" / "masks"),
        "--val-images", str(args.out / "val" / "images"), "--val-masks", str(args.out / "val" / "masks"),
        "--output", str(model), "--device", args.device, "--epochs", args.epochs,
        "--steps-per-epoch", args.steps_per_epoch,
        "--description", DESCRIPTION, "--data-description", DATA,
        *[x for kv in SETTINGS.items() for x in kv],
    ] + (["--resume"] if args.resume else [])
    print(" ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)
    subprocess.run(exe + ["evaluate", "--model", str(model), "--images", str(args.out / "val" / "images"),
                          "--masks", str(args.out / "val" / "masks"), "--device", args.device], check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
