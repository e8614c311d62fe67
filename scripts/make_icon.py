"""Draw the plugin's icon (src/napari_unet/icon.png, 256 x 256): a U of nuclei, each with its label colour.

Run from the repository root: ``python scripts/make_icon.py``. napari.yaml names it (``icon:``) for napari's
plugin list and the napari hub.
"""

from __future__ import annotations

import math
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter

SIZE, SCALE = 256, 4  # drawn 4x larger, then reduced: smooth edges
OUT = Path(__file__).resolve().parents[1] / "src" / "napari_unet" / "icon.png"
COLOURS = [(255, 99, 71), (255, 200, 61), (120, 220, 110), (64, 200, 220), (110, 140, 255), (220, 110, 240)]


def main() -> None:
    s = SIZE * SCALE
    img = Image.new("RGBA", (s, s), (0, 0, 0, 0))
    draw = ImageDraw.Draw(img)
    draw.rounded_rectangle((0, 0, s - 1, s - 1), radius=s // 6, fill=(18, 24, 38, 255))
    # nuclei along a U: down the left, round the bottom, up the right
    centres = []
    for i in range(3):
        centres.append((0.27, 0.22 + 0.17 * i))
    for k in range(1, 4):
        a = math.pi - k * math.pi / 4
        centres.append((0.5 + 0.23 * math.cos(a), 0.56 + 0.23 * math.sin(a)))
    for i in reversed(range(3)):
        centres.append((0.73, 0.22 + 0.17 * i))
    for n, (x, y) in enumerate(centres):
        r = 0.085 * s
        cx, cy = x * s, y * s
        colour = COLOURS[n % len(COLOURS)]
        draw.ellipse(
            (cx - r, cy - r * 0.9, cx + r, cy + r * 0.9), fill=(*colour, 110), outline=(*colour, 255), width=s // 64
        )
        draw.ellipse((cx - r * 0.45, cy - r * 0.4, cx + r * 0.35, cy + r * 0.3), fill=(235, 240, 255, 150))
    img = img.filter(ImageFilter.SMOOTH).resize((SIZE, SIZE), Image.LANCZOS)
    img.save(OUT, optimize=True)
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
