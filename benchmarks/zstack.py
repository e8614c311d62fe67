"""Z-stacks with the 2D nuclei model: how well each ``z_mode`` finds 3D objects.

    python benchmarks/zstack.py [--model FILE] [--data ../shared/data] [--limit N] [--planes Z]
                                [--crop PX] [--device cpu] [--modes 3d,stitch,planes,3d-ortho]

1. **Synthetic z-stacks from real data, truth known.** Each DSB2018 validation image
   (``scripts/dsb2018_split.json``; ``--data``/dsb2018_fluo) becomes a ``--planes``-plane stack: every
   nucleus of its mask gets a random centre plane and a half-height (its equivalent radius / an
   anisotropy of 2, times 0.7..1.3, at least 1.5 planes), its cross-section shrinks towards its ends
   like an ellipsoid's (the mask eroded by its distance transform to ``sqrt(1 - (dz / h)^2)`` of its
   depth) and its real pixels are dimmed to ``0.6 + 0.4 x`` that fraction; elsewhere the plane shows
   the image's real background (pixels drawn from outside all nuclei). Truth = the 3D labels.
   Scored with 3D AP (IoU of voxel sets, :func:`~napari_unet.core.training.metrics.ap_counts`,
   pooled over the stacks). ``stitch@t`` rows link the ``planes`` labels with IoU threshold ``t``
   (:func:`~napari_unet.core.labels.zlink.link_planes`: exactly what ``z_mode="stitch"`` does).
2. **Real stacks** (``--data``/stacks): 3D objects, summed per-plane objects (the ``planes`` count),
   median z-extent in planes, seconds, per mode.

Prints one table per part; exits with status 0 and says so when the data is absent.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from dsb_data import REPO, image_pairs

DEFAULT_DATA = REPO.parent / "shared" / "data"
STACKS = {"xyzc_16bit__dna_conf_wf.tif": {"channels": [0]}, "xyz_8bit__nuclei_autothresh.tif": {}}
ANISOTROPY = 2.0  # of the synthetic stacks: half-height = equivalent radius / 2


def synthetic_stack(image: np.ndarray, mask: np.ndarray, n_planes: int, rng: np.random.Generator, stacked: float = 0.0):
    """(stack ZYX of the image's dtype, truth ZYX uint16) from one real 2D image and its instance mask.

    With probability ``stacked`` a nucleus gets a twin at the same place in XY, above or below it in Z,
    0 or 1 plane apart (nuclei stacked in a tissue)."""
    from scipy import ndimage

    background = image[mask == 0]
    if background.size == 0:
        background = np.array([image.min()])
    stack = rng.choice(background, size=(n_planes, *image.shape)).astype(np.float32)
    truth = np.zeros((n_planes, *image.shape), np.uint16)
    objects = ndimage.find_objects(mask)
    label = 0
    for index, box in enumerate(objects, start=1):
        if box is None:
            continue
        box = tuple(slice(max(0, s.start - 1), s.stop + 1) for s in box)
        inside = mask[box] == index
        area = int(inside.sum())
        if area < 4:
            continue
        depth = ndimage.distance_transform_edt(np.pad(inside, 1))[1:-1, 1:-1]
        half = max(1.5, np.sqrt(area / np.pi) / ANISOTROPY * rng.uniform(0.7, 1.3))
        centres = [rng.uniform(0, n_planes - 1)]
        if rng.random() < stacked:  # the twin's planes start right after (or 1 plane after) this one's
            centres.append(centres[0] + rng.choice([-1, 1]) * (2 * half + 1 + rng.integers(0, 2)))
        for centre in centres:
            label += 1
            for z in range(max(0, int(np.ceil(centre - half))), min(n_planes, int(np.floor(centre + half)) + 1)):
                fraction = np.sqrt(max(0.0, 1 - ((z - centre) / half) ** 2))
                section = inside & (depth > (1 - fraction) * depth.max())
                if not section.any():
                    continue
                stack[z][box][section] = image[box][section] * (0.6 + 0.4 * fraction)
                truth[z][box][section] = label
    return stack.astype(image.dtype), truth


def z_extents(labels: np.ndarray) -> np.ndarray:
    """Planes each object of ZYX ``labels`` spans (first to last plane holding it)."""
    ids = np.unique(labels)
    ids = ids[ids != 0]
    if not ids.size:
        return np.zeros(0)
    present = np.stack([np.isin(ids, np.unique(plane)) for plane in labels])  # (Z, n)
    first = present.argmax(0)
    last = labels.shape[0] - 1 - present[::-1].argmax(0)
    return last - first + 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=None, help="model file (default: the bundled nuclei model)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder with dsb2018_fluo/ and stacks/")
    parser.add_argument("--limit", type=int, default=10, help="synthetic stacks from the first N validation images")
    parser.add_argument("--planes", type=int, default=24, help="planes per synthetic stack")
    parser.add_argument("--crop", type=int, default=256, help="crop images to at most this edge (pixels)")
    parser.add_argument("--link-iou", default="0.1,0.25,0.5", help="IoU thresholds of the stitch rows")
    parser.add_argument("--modes", default="3d,planes,3d-ortho", help="z modes run end to end")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--stacked", type=float, default=0.0, help="fraction of nuclei with a twin above/below")
    parser.add_argument("--no-real", action="store_true", help="skip the real stacks")
    args = parser.parse_args(argv)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    links = [float(t) for t in args.link_iou.split(",") if t.strip()]
    if "planes" not in modes and links:
        modes.append("planes")  # the stitch rows link its labels

    from napari_unet.core.image.io import read_image
    from napari_unet.core.labels.zlink import link_planes
    from napari_unet.core.model.bundled import bundled_model_path
    from napari_unet.core.model.file import load_model
    from napari_unet.core.options import resolve_device
    from napari_unet.core.progress import drain
    from napari_unet.core.segment import iter_segment
    from napari_unet.core.training.metrics import ap_counts, summarize_ap

    device = resolve_device(args.device)
    model = load_model(args.model or bundled_model_path())

    def run(data, axes, mode, **options):
        start = time.perf_counter()
        labels = drain(iter_segment(data, model, axes=axes, device=device, z_mode=mode, **options))
        return labels, time.perf_counter() - start

    warm = np.zeros((2, 64, 64), np.uint8)
    warm[:, 20:40, 20:40] = 200
    run(warm, "ZYX", "3d", object_size=18.0)  # untimed warm-up: network folding, threads

    dsb = args.data / "dsb2018_fluo"
    if (dsb / "images").is_dir() and (dsb / "masks").is_dir():
        pairs, what = image_pairs(dsb, args.limit)
        rng = np.random.default_rng(args.seed)
        counts: dict[str, list] = {}
        seconds: dict[str, float] = {}
        found: dict[str, int] = {}
        n_truth = 0
        for image_path, mask_path in pairs:
            image, mask = read_image(image_path).data, read_image(mask_path).data
            image = np.asarray(image)[: args.crop, : args.crop]
            mask = np.asarray(mask)[: args.crop, : args.crop]
            if image.ndim != 2:
                image = image[..., 0]
            stack, truth = synthetic_stack(image, mask, args.planes, rng, args.stacked)
            n_truth += len(np.unique(truth)) - 1
            results, took = {}, {}
            for mode in modes:
                results[mode], took[mode] = run(stack, "ZYX", mode, anisotropy=ANISOTROPY)
            for t in links:  # the planes run, then the linking z_mode="stitch" does
                start = time.perf_counter()
                results[f"stitch@{t:g}"] = link_planes(results["planes"].copy(), threshold=t)
                took[f"stitch@{t:g}"] = took["planes"] + time.perf_counter() - start
            for key, sec in took.items():
                seconds[key] = seconds.get(key, 0.0) + sec
            for key, labels in results.items():
                counts.setdefault(key, []).append(ap_counts(truth, labels))
                found[key] = found.get(key, 0) + len(np.unique(labels)) - 1
        print(
            f"synthetic z-stacks: {len(pairs)} DSB2018 {what}, {args.planes} planes, crop {args.crop}, "
            f"{n_truth} 3D nuclei ({args.stacked:g} stacked in twins), seed {args.seed}, device {device}"
        )
        print(f"{'z mode':<14} {'AP50':>6} {'AP75':>6} {'mAP':>6} {'objects':>8} {'s/stack':>8}")
        for key in counts:
            ap = summarize_ap(counts[key])
            print(
                f"{key:<14} {ap['AP50']:>6.3f} {ap['AP75']:>6.3f} {ap['mAP']:>6.3f} {found[key]:>8d} "
                f"{seconds[key] / len(pairs):>8.1f}"
            )
        print()
    else:
        print(f"no data: {dsb} has no images/ and masks/ folders; synthetic part skipped")

    stacks = args.data / "stacks"
    if args.no_real:
        return 0
    present = [name for name in STACKS if (stacks / name).exists()]
    if not present:
        print(f"no data: no real stack in {stacks}; real part skipped")
        return 0
    header = f"{'real stack':<34} {'z mode':<9} {'aniso':>6} {'3D objects':>10} {'plane objects':>13}"
    print(f"{header} {'median z':>8} {'s':>6}")
    from napari_unet.core.image.calibration import anisotropy_from_scale

    for name in present:
        img = read_image(stacks / name)
        anisotropy = anisotropy_from_scale(img.axes, img.scale)
        per_plane = None
        for mode in ("planes", *[m for m in modes if m != "planes"], "stitch"):
            labels, sec = run(img.data, img.axes, mode, anisotropy=anisotropy, **STACKS[name])
            zyx = labels if labels.ndim == 3 else labels.reshape(-1, *labels.shape[-2:])
            n = len(np.unique(zyx)) - 1
            per_plane = n if mode == "planes" else per_plane
            extent = np.median(z_extents(zyx)) if n else 0
            print(f"{name:<34} {mode:<9} {anisotropy or 0:>6.2f} {n:>10d} {per_plane:>13d} {extent:>8.1f} {sec:>6.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
