"""Do time-lapses give the same label to the same nucleus? Identity kept over frames, with and without
matching labels across frames, on time-lapses made from real DSB2018 nuclei; plus counts on a real TYX stack.

    python benchmarks/timelapse.py [--data ../shared/data] [--limit N] [--frames 12] [--device cpu]

**The time-lapses.** For each image of the DSB2018 validation split (``scripts/dsb2018_split.json``)
a movie of ``--frames`` frames is made from the real image and its real masks: every nucleus (its
own pixels, cut out with its mask) moves with a drift of (1, 2) px per frame in (y, x) plus its
own random walk (each frame -1, 0 or +1 px per axis), pasted in mask order onto the image's
background (the pixels under the masks filled with the background's median plus its noise);
every frame gets fresh Gaussian noise (5 % of the image's 1-99 % range). The truth moves the
same way. A second movie drops frame ``--frames // 3`` (background and noise only, no nuclei):
a frame where segmentation finds nothing, the gap matching must bridge.

**What is measured.** Each movie is segmented once with the bundled model,
``napari_unet.segment(movie, axes="TYX", track=False)``, and matched with
``napari_unet.track_labels`` under several settings (``segment(..., track=True)`` gives exactly
the default setting's labels; the tests check it). In each frame a true nucleus is *found* when
a label overlaps it with IoU >= 0.5. Over the nuclei that stay at least half inside every frame:

* *kept, all frames*: found in every frame (the dropped frame aside) with one single label;
* *kept, when found*: one single label over the frames it was found in;
* *switches*: label changes between consecutive frames a nucleus was found in, per 100 such links;
* *merged*: labels given to two or more true nuclei over the movie, per 100 nuclei.

The real stack ``stacks/xyt_calibrated_16bit__golgi_bfa_sum_projection.tif`` (TYX, 30 frames)
has no truth: its row says how many tracks the defaults give and how long they are.
When the data folder is absent the script says so and exits with status 0.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from dsb_data import REPO, image_pairs

SETTINGS = [  # (row name, track_labels options or None for per-frame labels)
    ("no tracking (track=False)", None),
    ("min_iou 0.05, max_gap 2", {"min_iou": 0.05, "max_gap": 2}),
    ("min_iou 0.1, max_gap 2 (default)", {"min_iou": 0.1, "max_gap": 2}),
    ("min_iou 0.2, max_gap 2", {"min_iou": 0.2, "max_gap": 2}),
    ("min_iou 0.3, max_gap 2", {"min_iou": 0.3, "max_gap": 2}),
    ("min_iou 0.5, max_gap 2", {"min_iou": 0.5, "max_gap": 2}),
    ("min_iou 0.1, max_gap 0", {"min_iou": 0.1, "max_gap": 0}),
]
TRUTH_ROW = "truth masks, min_iou 0.1"  # the matching alone: the true masks, numbered frame by frame
STACK = "stacks/xyt_calibrated_16bit__golgi_bfa_sum_projection.tif"


def make_movie(image: np.ndarray, masks: np.ndarray, n_frames: int, seed: int, drop: int | None = None):
    """(movie TYX float32, truth TYX uint16) from one real image and its instance masks."""
    rng = np.random.default_rng(seed)
    image = image.astype(np.float32)
    lo, hi = np.percentile(image, (1, 99))
    back = image[masks == 0]
    background = image.copy()
    background[masks > 0] = rng.normal(np.median(back), back.std() + 1e-6, int((masks > 0).sum()))
    ids = [i for i in np.unique(masks) if i]
    cuts = []
    for i in ids:
        ys, xs = np.nonzero(masks == i)
        cuts.append((i, ys, xs, image[ys, xs]))
    walk = np.zeros((len(ids), 2), int)
    movie = np.empty((n_frames, *image.shape), np.float32)
    truth = np.zeros((n_frames, *image.shape), np.uint16)
    height, width = image.shape
    for t in range(n_frames):
        if t:
            walk += rng.integers(-1, 2, walk.shape)
        frame = background.copy()
        if t != drop:
            for k, (i, ys, xs, values) in enumerate(cuts):
                y, x = ys + t + walk[k, 0], xs + 2 * t + walk[k, 1]
                inside = (y >= 0) & (y < height) & (x >= 0) & (x < width)
                frame[y[inside], x[inside]] = values[inside]
                truth[t, y[inside], x[inside]] = i
        movie[t] = frame + rng.normal(0, 0.05 * (hi - lo), frame.shape)
    return movie, truth


def frame_matches(truth: np.ndarray, pred: np.ndarray) -> dict[int, int]:
    """true id -> predicted id, for pairs with IoU >= 0.5 (unique by construction)."""
    both = (truth > 0) & (pred > 0)
    if not both.any():
        return {}
    t_ids, t_area = np.unique(truth[truth > 0], return_counts=True)
    p_ids, p_area = np.unique(pred[pred > 0], return_counts=True)
    ti, pi = np.searchsorted(t_ids, truth[both]), np.searchsorted(p_ids, pred[both])
    keys, inter = np.unique(ti.astype(np.int64) * len(p_ids) + pi, return_counts=True)
    ti, pi = np.divmod(keys, len(p_ids))
    iou = inter / (t_area[ti] + p_area[pi] - inter)
    ok = iou >= 0.5
    return {int(t_ids[a]): int(p_ids[b]) for a, b in zip(ti[ok], pi[ok])}


def identity_scores(truth: np.ndarray, pred: np.ndarray, skip: int | None) -> dict[str, float]:
    frames = [t for t in range(truth.shape[0]) if t != skip]
    full = {i: n for i, n in zip(*np.unique(truth[frames[0]], return_counts=True)) if i}
    kept = [i for i in full if all((truth[t] == i).sum() >= 0.5 * full[i] for t in frames)]
    seen = [frame_matches(truth[t], pred[t]) for t in frames]
    whole = when_found = switches = links = 0
    owners: dict[int, set[int]] = {}
    for i in kept:
        ids = [m[i] for m in seen if i in m]
        for p in ids:
            owners.setdefault(p, set()).add(i)
        whole += len(ids) == len(frames) and len(set(ids)) == 1
        when_found += bool(ids) and len(set(ids)) == 1
        switches += sum(a != b for a, b in zip(ids, ids[1:]))
        links += max(len(ids) - 1, 0)
    return {
        "nuclei": len(kept),
        "found": sum(i in m for m in seen for i in kept) / max(len(kept) * len(frames), 1),
        "whole": whole,
        "when_found": when_found,
        "switches": switches,
        "links": links,
        "merged": sum(len(v) > 1 for v in owners.values()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data", help="holds dsb2018_fluo/")
    parser.add_argument("--limit", type=int, default=8, help="validation images to make movies from")
    parser.add_argument("--frames", type=int, default=12)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    dsb = args.data / "dsb2018_fluo"
    if not (dsb / "images").is_dir():
        print(f"no data: {dsb} has no images/ folder; nothing to measure")
        return 0
    import napari_unet
    from napari_unet.core.image.io import read_image

    pairs, what = image_pairs(dsb, args.limit)
    drop = args.frames // 3
    totals: dict[tuple[str, str], dict[str, float]] = {}
    seconds = {"segment": 0.0, "track": 0.0, "frames": 0}
    diameters: list[float] = []
    for n, (image_path, mask_path) in enumerate(pairs):
        image, masks = read_image(image_path).data, read_image(mask_path).data
        for movie_name, dropped in (("every frame", None), (f"frame {drop} dropped", drop)):
            movie, truth = make_movie(np.asarray(image), np.asarray(masks), args.frames, seed=n, drop=dropped)
            start = time.perf_counter()
            raw = napari_unet.segment(movie, axes="TYX", track=False, device=args.device)
            seconds["segment"] += time.perf_counter() - start
            per_frame_truth = truth.astype(np.uint32) + (truth > 0) * (np.arange(args.frames) * 65536)[:, None, None]
            for name, options in [*SETTINGS, (TRUTH_ROW, {"min_iou": 0.1})]:
                labels = (per_frame_truth if name == TRUTH_ROW else raw).copy()
                if options is not None:
                    start = time.perf_counter()
                    napari_unet.track_labels(labels, axes="TYX", **options)
                    seconds["track"] += time.perf_counter() - start
                    seconds["frames"] += args.frames
                scores = identity_scores(truth, labels, dropped)
                total = totals.setdefault((movie_name, name), dict.fromkeys(scores, 0.0))
                for key, value in scores.items():
                    total[key] += value
        areas = np.bincount(np.asarray(masks).ravel())[1:]
        diameters.extend(2 * np.sqrt(areas[areas > 0] / np.pi))
        print(f"  {image_path.stem[:12]} {image.shape}: {int(masks.max())} nuclei", flush=True)

    steps = [np.hypot(1 + a, 2 + b) for a in (-1, 0, 1) for b in (-1, 0, 1)]
    print(
        f"\n{len(pairs)} DSB2018 {what} -> movies of {args.frames} frames: drift (1, 2) px/frame + random walk, "
        f"mean step {np.mean(steps):.1f} px; nuclei of median diameter {np.median(diameters):.1f} px"
    )
    head = f"{'movie':<18} {'labels':<34} {'nuclei':>6} {'found':>6} {'kept, all':>9} {'kept, found':>11}"
    print(head + f" {'switches/100':>12} {'merged/100':>10}")
    for (movie_name, name), s in totals.items():
        nuclei = max(s["nuclei"], 1)
        print(
            f"{movie_name:<18} {name:<34} {int(s['nuclei']):>6} {s['found'] / len(pairs):>6.3f} "
            f"{s['whole'] / nuclei:>9.3f} {s['when_found'] / nuclei:>11.3f} "
            f"{100 * s['switches'] / max(s['links'], 1):>12.2f} {100 * s['merged'] / nuclei:>10.2f}"
        )
    per_frame = 1000 * seconds["track"] / max(seconds["frames"], 1)
    print(f"segmenting {seconds['segment']:.1f} s in all; matching {per_frame:.1f} ms per frame")

    stack = args.data / STACK
    if stack.is_file():
        img = read_image(stack)
        labels = napari_unet.segment(img.data, axes=img.axes, device=args.device)
        tracks = napari_unet.tracks_from_labels(labels, axes=img.axes)
        lengths = np.bincount(tracks[:, 0].astype(int))[1:]
        lengths = lengths[lengths > 0]
        untracked = napari_unet.segment(img.data, axes=img.axes, device=args.device, track=False)
        print(
            f"\n{stack.name} ({img.axes} {img.data.shape}): {len(tracks) / labels.shape[0]:.1f} objects per frame; "
            f"{len(lengths)} tracks (track=False: {int(untracked.max())} labels), mean track length "
            f"{lengths.mean():.1f} frames, {int((lengths == labels.shape[0]).sum())} tracks through all "
            f"{labels.shape[0]} frames"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
