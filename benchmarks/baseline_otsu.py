"""Classical baseline on the bundled model's validation split: Otsu threshold + distance-transform
watershed, scored with the same AP code as ``napari-unet evaluate``.

    python benchmarks/baseline_otsu.py [--data ../shared/data/dsb2018_fluo]

Prints a table of AP at IoU 0.5 ... 0.95 (pooled over images) and the mean.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import tifffile
from scipy import ndimage as ndi
from skimage.feature import peak_local_max
from skimage.filters import gaussian, threshold_otsu
from skimage.segmentation import watershed

from napari_unet.core.training.metrics import ap_counts, summarize_ap

REPO = Path(__file__).resolve().parents[1]


def otsu_watershed(image: np.ndarray, min_distance: int = 5, min_size: int = 10) -> np.ndarray:
    """Smooth, Otsu threshold, seeds at distance-transform maxima, watershed on -distance."""
    img = gaussian(image.astype(np.float32), sigma=1, preserve_range=True)
    fg = img > threshold_otsu(img)
    fg = ndi.binary_opening(fg, iterations=1)
    dist = ndi.distance_transform_edt(fg)
    peaks = peak_local_max(dist, min_distance=min_distance, labels=ndi.label(fg)[0], exclude_border=False)
    markers = np.zeros(fg.shape, np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    labels = watershed(-dist, markers, mask=fg)
    sizes = np.bincount(labels.ravel())
    labels[sizes[labels] < min_size] = 0
    return labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "dsb2018_fluo")
    args = parser.parse_args()
    split = json.loads((REPO / "scripts" / "dsb2018_split.json").read_text())
    counts = []
    for name in split["validation"]:
        image = tifffile.imread(args.data / "images" / f"{name}.tif")
        truth = tifffile.imread(args.data / "masks" / f"{name}.tif")
        counts.append(ap_counts(truth, otsu_watershed(image)))
    pooled = summarize_ap(counts, pooled=True)
    per_image = summarize_ap(counts, pooled=False)
    keys = [k for k in pooled if k.startswith("AP")]
    print(f"Otsu + distance watershed on {len(counts)} validation images (split seed {split['seed']})")
    print("IoU threshold  " + "  ".join(f"{k[2:]:>5}" for k in keys) + "   mean")
    print("AP (pooled)    " + "  ".join(f"{pooled[k]:5.3f}" for k in keys) + f"  {pooled['mAP']:5.3f}")
    print("AP (per image) " + "  ".join(f"{per_image[k]:5.3f}" for k in keys) + f"  {per_image['mAP']:5.3f}")


if __name__ == "__main__":
    main()
