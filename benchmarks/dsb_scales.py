"""Accuracy of a nuclei model at native, 2x and 3x magnification, with no object size given.

    python benchmarks/dsb_scales.py [--model nuclei|FILE] [--data ../shared/data/dsb2018_fluo]
                                    [--mags 1,2,3] [--limit N] [--tta]

Takes the validation images of the fixed split (``scripts/dsb2018_split.json``), magnifies each
image (linear) and its masks (nearest) by every factor in ``--mags``, segments them with
``napari_unet.core.segment`` exactly as ``napari-unet segment`` does with no options, and prints
pooled AP50 / mean AP (IoU 0.5..0.95; AP = TP / (TP + FP + FN)), the median |log| error of the
estimated object size against the masks' median diameter, and seconds per image.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from dsb_data import DEFAULT_DATA, image_pairs


def magnify(image: np.ndarray, masks: np.ndarray, factor: float) -> tuple[np.ndarray, np.ndarray]:
    from skimage.transform import resize

    if factor == 1:
        return image, masks
    shape = tuple(int(round(n * factor)) for n in masks.shape)
    img = resize(image.astype(np.float32), shape, order=1, mode="reflect", anti_aliasing=False, preserve_range=True)
    lab = resize(masks, shape, order=0, mode="edge", anti_aliasing=False, preserve_range=True).astype(masks.dtype)
    return img.astype(np.float32), lab


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="nuclei")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--mags", default="1,2,3")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--tta", action="store_true")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    if not (args.data / "images").is_dir():
        print(f"no DSB2018 data at {args.data}: nothing to measure")
        return 0

    import tifffile

    from napari_unet.core.model.bundled import bundled_models
    from napari_unet.core.model.file import load_model
    from napari_unet.core.progress import drain
    from napari_unet.core.segment import iter_segment
    from napari_unet.core.training.metrics import ap_counts, summarize_ap
    from napari_unet.core.training.targets import object_diameter

    path = bundled_models().get(args.model, args.model)
    model = load_model(path)
    pairs, what = image_pairs(args.data, args.limit)
    print(f"model {args.model}: {model.spec.description!r}; {len(pairs)} {what}; tta={args.tta}")
    print(f"{'magnification':>13} | {'AP50':>6} | {'mean AP':>7} | {'size err':>8} | {'s/image':>7}")
    for mag in [float(m) for m in args.mags.split(",")]:
        counts, errors, seconds = [], [], 0.0
        for image_path, mask_path in pairs:
            image = tifffile.imread(image_path)
            masks = tifffile.imread(mask_path)
            image, masks = magnify(image, masks, mag)
            found: dict[str, float] = {}

            def watch(event: object, found: dict = found) -> None:
                if getattr(event, "stage", "") == "size" and getattr(event, "value", None) is not None:
                    found["size"] = event.value  # type: ignore[attr-defined]

            options = {"tta": True} if args.tta else {}
            start = time.perf_counter()
            labels = drain(iter_segment(image, model, axes="YX", device=args.device, **options), watch)
            seconds += time.perf_counter() - start
            counts.append(ap_counts(masks, labels))
            truth = object_diameter(masks)
            if "size" in found and truth:
                errors.append(abs(np.log(found["size"] / truth)))
        ap = summarize_ap(counts, pooled=True)
        err = f"{np.median(errors):8.3f}" if errors else f"{'-':>8}"
        print(f"{mag:>12g}x | {ap['AP50']:6.3f} | {ap['mAP']:7.3f} | {err} | {seconds / len(pairs):7.2f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
