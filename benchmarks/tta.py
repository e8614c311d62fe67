"""What test-time augmentation (``tta=True``) gains and costs: AP and seconds per image with and
without it, on the bundled model's validation split of DSB2018 (or any folder of images + masks).

    python benchmarks/tta.py [--model FILE] [--data ../shared/data/dsb2018_fluo] [--limit N] [--device cpu]

``--data`` holds ``images/<name>.tif`` and ``masks/<name>.tif``; the names evaluated are the
``validation`` list of ``scripts/dsb2018_split.json`` when they are there, else every image that
has a mask. Scores come from :func:`napari_unet.core.training.evaluate.evaluate` (AP pooled over
images, as ``napari-unet evaluate`` prints them); seconds per image are the wall time of
segmenting and scoring, after one untimed warm-up image. When the data folder is absent the
script says so and exits with status 0.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from dsb_data import DEFAULT_DATA, image_pairs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=None, help="model file (default: the bundled nuclei model)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder with images/ and masks/")
    parser.add_argument("--limit", type=int, default=None, help="evaluate only the first N images")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    if args.limit is not None and args.limit < 1:
        parser.error(f"--limit must be >= 1, got {args.limit}")
    if not (args.data / "images").is_dir() or not (args.data / "masks").is_dir():
        print(f"no data: {args.data} has no images/ and masks/ folders; nothing to measure")
        return 0
    pairs, what = image_pairs(args.data, args.limit)
    if not pairs:
        print(f"no data: no image in {args.data / 'images'} has a mask; nothing to measure")
        return 0

    from napari_unet.core.image.io import read_image
    from napari_unet.core.model.bundled import bundled_model_path
    from napari_unet.core.model.file import load_model
    from napari_unet.core.options import resolve_device
    from napari_unet.core.progress import drain
    from napari_unet.core.segment import iter_segment
    from napari_unet.core.training.evaluate import evaluate

    device = resolve_device(args.device)
    model_path = args.model or bundled_model_path()
    model = load_model(model_path)
    first = read_image(pairs[0][0])
    drain(iter_segment(first.data, model, axes=first.axes, device=device))  # warm-up: fold the network, threads

    rows = []
    for tta in (False, True):
        start = time.perf_counter()
        result = evaluate(model, pairs, device=device, tta=tta)
        seconds = (time.perf_counter() - start) / len(pairs)
        rows.append((tta, result, seconds))

    print(f"{Path(model_path).name} on {len(pairs)} {what} from {args.data} ({device})")
    instance = "mAP" in rows[0][1]
    head = f"{'TTA':<5} {'AP50':>6} {'mAP':>6} {'mIoU':>6} {'s/image':>8}"
    print(head)
    for tta, result, seconds in rows:
        ap50 = f"{result['AP50']:6.3f}" if instance else f"{'-':>6}"
        map_ = f"{result['mAP']:6.3f}" if instance else f"{'-':>6}"
        print(f"{'on' if tta else 'off':<5} {ap50} {map_} {result['mIoU']:6.3f} {seconds:8.2f}")
    (_, off, t_off), (_, on, t_on) = rows
    gains = [f"mIoU {on['mIoU'] - off['mIoU']:+.3f}"]
    if instance:
        gains = [f"AP50 {on['AP50'] - off['AP50']:+.3f}", f"mAP {on['mAP'] - off['mAP']:+.3f}"] + gains
    print(f"TTA: {', '.join(gains)}; {t_on / t_off:.1f}x the time per image")
    return 0


if __name__ == "__main__":
    sys.exit(main())
