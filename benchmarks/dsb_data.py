"""Which images the DSB2018 benchmarks measure: shared by the benchmark scripts."""

from __future__ import annotations

import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "dsb2018_fluo"
SPLIT = REPO / "scripts" / "dsb2018_split.json"


def image_pairs(data: Path, limit: int | None) -> tuple[list[tuple[Path, Path]], str]:
    """(image, mask) paths: the validation names of the DSB2018 split, else every matched pair;
    and which of the two it is."""
    images, masks = data / "images", data / "masks"
    names: list[str] = []
    what = "validation images"
    if SPLIT.exists():
        names = [n for n in json.loads(SPLIT.read_text())["validation"] if (images / f"{n}.tif").exists()]
    if not names:
        what = "images"
        names = sorted(p.stem for p in images.glob("*.tif") if (masks / p.name).exists())
    pairs = [(images / f"{n}.tif", masks / f"{n}.tif") for n in names]
    return (pairs[:limit] if limit else pairs), what
