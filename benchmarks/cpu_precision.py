"""float32 vs bfloat16 inference on the CPU: speed, and whether the labels agree.

    python benchmarks/cpu_precision.py [--model nuclei|FILE] [--data ../shared/data/dsb2018_fluo]
                                       [--limit N] [--size 1024]

For each validation image of the fixed split, segments it with ``precision="float32"`` and
``precision="bfloat16"`` (autocast) and prints pooled AP50 / mean AP of each against the masks,
the agreement of the two label images (AP50 and mean AP of bfloat16 labels scored against the
float32 labels) and the time per image; then the time of one ``--size`` x ``--size`` tile of the
bundled sample (tiled to that size) with each precision. Says whether this CPU has native bf16.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from dsb_data import DEFAULT_DATA, image_pairs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="nuclei")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--size", type=int, default=1024)
    args = parser.parse_args()

    import tifffile

    from napari_unet.core.image.samples import sample_path
    from napari_unet.core.inference.planning import cpu_has_native_bf16
    from napari_unet.core.model.bundled import bundled_models
    from napari_unet.core.model.file import load_model
    from napari_unet.core.progress import drain
    from napari_unet.core.segment import iter_segment
    from napari_unet.core.training.metrics import ap_counts, summarize_ap

    model = load_model(bundled_models().get(args.model, args.model))
    print(f"native bf16 on this CPU: {cpu_has_native_bf16()}")
    precisions = ("float32", "bfloat16")
    if (args.data / "images").is_dir():
        pairs, what = image_pairs(args.data, args.limit)
        counts = {p: [] for p in precisions}
        agree, seconds = [], {p: 0.0 for p in precisions}
        for image_path, mask_path in pairs:
            image = tifffile.imread(image_path)
            masks = tifffile.imread(mask_path)
            labels = {}
            for p in precisions:
                start = time.perf_counter()
                labels[p] = drain(iter_segment(image, model, axes="YX", device="cpu", precision=p))
                seconds[p] += time.perf_counter() - start
                counts[p].append(ap_counts(masks, labels[p]))
            agree.append(ap_counts(labels["float32"], labels["bfloat16"]))
        print(f"{len(pairs)} {what}")
        print(f"{'precision':>9} | {'AP50':>6} | {'mean AP':>7} | {'s/image':>7}")
        for p in precisions:
            ap = summarize_ap(counts[p], pooled=True)
            print(f"{p:>9} | {ap['AP50']:6.3f} | {ap['mAP']:7.3f} | {seconds[p] / len(pairs):7.2f}")
        ap = summarize_ap(agree, pooled=True)
        print(f"bfloat16 labels scored against float32 labels: AP50 {ap['AP50']:.3f}, mean AP {ap['mAP']:.3f}")
    else:
        print(f"no DSB2018 data at {args.data}: skipping the accuracy part")
    image = tifffile.imread(sample_path("nuclei"))
    reps = int(np.ceil(args.size / min(image.shape)))
    big = np.tile(image, (reps, reps))[: args.size, : args.size]
    for p in precisions:
        drain(iter_segment(big, model, axes="YX", device="cpu", precision=p))  # warm
        start = time.perf_counter()
        labels = drain(iter_segment(big, model, axes="YX", device="cpu", precision=p))
        print(f"{args.size}x{args.size} {p}: {time.perf_counter() - start:.2f} s, {int(labels.max())} objects")
    return 0


if __name__ == "__main__":
    sys.exit(main())
