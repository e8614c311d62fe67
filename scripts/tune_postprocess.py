"""Choose a model's instance post-processing on validation images and store it in the model file.

    python scripts/tune_postprocess.py MODEL --images VAL/images --masks VAL/masks [--write]
                                       [--fit-size TRAIN/images TRAIN/masks] [--limit N]

Each validation image is predicted once, exactly as ``napari-unet segment`` does with no options
(object size estimated when the model can), keeping the probabilities and the model's heads; then
every combination of seed threshold, smallest seed, "keep seedless regions" and "fill holes" is turned into
labels and scored (pooled AP50 and mean AP over IoU 0.5..0.95); then, with the best of those, every
foreground threshold (a pixel is in an object when 1 - P(background) reaches it) with every seed
threshold. The table is printed, best first by AP50 + mean AP; ``--write`` stores the best settings in the
model file (``spec.postprocess``).

``--fit-size`` first fits the model's object-size regression on the given training images
(zoomed to the model's object size, as training does) and stores it, so a model trained before
the regression existed, or stopped before its end, gets one.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

SEED_THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7)
MIN_SEED_SIZES = (1, 4, 8, 16)
KEEP_SEEDLESS = (True, False)
FILL_HOLES = (True, False)
# None: a pixel is foreground where background is not its most probable class
FOREGROUND_THRESHOLDS = (None, 0.6, 0.65, 0.7, 0.75, 0.8)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path)
    parser.add_argument("--images", type=Path, required=True)
    parser.add_argument("--masks", type=Path, required=True)
    parser.add_argument("--fit-size", nargs=2, type=Path, metavar=("IMAGES", "MASKS"))
    parser.add_argument("--limit", type=int, default=None, help="use the first N validation images")
    parser.add_argument("--write", action="store_true", help="store the best settings in the model file")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    from napari_unet.core.inference.run import iter_predict
    from napari_unet.core.labels.postprocess import labels_from_probabilities
    from napari_unet.core.model.file import load_model, read_model_info, save_model
    from napari_unet.core.progress import drain
    from napari_unet.core.training.data import pairs_from_folders, prepare
    from napari_unet.core.training.metrics import ap_counts, summarize_ap
    from napari_unet.core.training.validation import fit_size_model_on

    model = load_model(args.model)
    if model.spec.target != "instances" or model.spec.boundary_class is None:
        print(f"{args.model} is not an instance model with a boundary class: nothing to tune", file=sys.stderr)
        return 1
    if args.fit_size:
        if not model.spec.object_size:
            print("the model records no object size: cannot fit a size regression", file=sys.stderr)
            return 1
        data = prepare(pairs_from_folders(*args.fit_size), object_size=float(model.spec.object_size))
        model.spec.size_model = fit_size_model_on(model, data.samples)
        print(f"size regression fitted: held-out rms log error {model.spec.size_model['rms_log']:.3f}")

    import tifffile

    pairs = pairs_from_folders(args.images, args.masks)[: args.limit]
    distance = model.head_channel("distance")
    cached = []
    for image_path, mask_path in pairs:
        probs = drain(
            iter_predict(
                tifffile.imread(image_path), model, axes="YX", device=args.device, heads=True, layout_order=True
            )
        )
        cached.append((probs, tifffile.imread(mask_path)))

    def rank(row: tuple) -> tuple[float, float]:
        """Both targets count: AP50 (finding the nuclei) plus mean AP (their outlines); then mean AP."""
        return row[0] + row[1], row[0]

    def score(settings: dict) -> tuple[float, float]:
        counts = []
        for probs, truth in cached:
            labels = labels_from_probabilities(
                probs if distance is not None else probs[: model.n_classes],
                mode="instances",
                boundary_class=model.spec.boundary_class,
                distance_channel=distance,
                **settings,
            )
            counts.append(ap_counts(truth, labels))
        ap = summarize_ap(counts, pooled=True)
        return ap["mAP"], ap["AP50"]

    # stage 1: seeds, seedless regions and holes, foreground where background is not the most probable class
    rows = []
    for thr, seed, keep, fill in itertools.product(SEED_THRESHOLDS, MIN_SEED_SIZES, KEEP_SEEDLESS, FILL_HOLES):
        settings = {"seed_threshold": thr, "min_seed_size": seed, "keep_seedless": keep, "fill_holes": fill}
        rows.append((*score(settings), settings))
    rows.sort(key=rank, reverse=True)
    # stage 2: the foreground threshold, with the seed threshold, around stage 1's best
    stage1 = rows[0][2]
    for fg, thr in itertools.product(FOREGROUND_THRESHOLDS, SEED_THRESHOLDS):
        if fg is not None:
            settings = {**stage1, "seed_threshold": thr, "foreground_threshold": fg}
            rows.append((*score(settings), settings))
    rows.sort(key=rank, reverse=True)
    print(f"{len(cached)} images; current settings {model.spec.postprocess}")
    print(
        f"{'seed thr':>8} | {'min seed':>8} | {'seedless':>8} | {'holes':>5} | {'fg thr':>6} | "
        f"{'AP50':>6} | {'mean AP':>7}"
    )
    for m_ap, ap50, st in rows[:12]:
        fg = st.get("foreground_threshold")
        print(
            f"{st['seed_threshold']:8.2f} | {st['min_seed_size']:8d} | {str(st['keep_seedless']):>8} | "
            f"{'fill' if st['fill_holes'] else 'keep':>5} | {'argmax' if fg is None else f'{fg:.2f}':>6} | "
            f"{ap50:6.3f} | {m_ap:7.3f}"
        )
    best = rows[0]
    settings = best[2]
    if args.write:
        training = dict(read_model_info(args.model)["spec"].get("training") or {})
        training["postprocess_tuning"] = {
            "images": len(cached),
            "AP50": best[1],
            "mAP": best[0],
            "grid": {
                "seed_threshold": SEED_THRESHOLDS,
                "min_seed_size": MIN_SEED_SIZES,
                "keep_seedless": KEEP_SEEDLESS,
                "fill_holes": FILL_HOLES,
                "foreground_threshold": FOREGROUND_THRESHOLDS,
            },
        }
        save_model(model, args.model, postprocess=settings, training=training)
        print(f"wrote {settings} to {args.model}")
    else:
        print(f"best: {settings} (not written; add --write)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
