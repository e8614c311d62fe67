"""Physical calibration and channel names from TIFF metadata: ImageJ hyperstacks, OME-XML and
Bio-Formats/Zeiss "Info" properties, as :func:`~napari_unet.core.image.io.read_image` records them.

Plain tifffile + the standard library; units are normalised to ImageJ's spellings (``micron``, ``sec``).
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from typing import Any

import numpy as np
import tifffile

_UNIT_ALIASES = {
    "µm": "micron",
    "μm": "micron",
    "um": "micron",
    "micron": "micron",
    "microns": "micron",
    "micrometer": "micron",
    "micrometre": "micron",
    "s": "sec",
    "sec": "sec",
    "second": "sec",
    "seconds": "sec",
}
# Bio-Formats slice labels look like "c:1/2 z:3/45 t:1/9 - Series name"; the prefix is position, not name.
_BIOFORMATS_POSITION = re.compile(r"^(?:[cztCZT]:\d+/\d+\s*)+-\s*")
# Zeiss CZI metadata that Bio-Formats copied into the ImageJ "Info" property.
_INFO_CHANNEL_NAME = re.compile(r"^Information\|Image\|Channel\|Name(?: #(\d+))? = (.*)$", re.M)


def norm_unit(unit: Any) -> str | None:
    """Decode ImageJ ``\\uXXXX`` escapes and map common spellings (µm, um, s) to ImageJ's names."""
    if not isinstance(unit, str) or not unit.strip() or unit.strip().lower() in ("pixel", "pixels"):
        return None
    unit = re.sub(r"\\u([0-9a-fA-F]{4})", lambda m: chr(int(m.group(1), 16)), unit.strip())
    return _UNIT_ALIASES.get(unit.lower() if unit.isascii() else unit, unit)


def positive(value: Any) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) and value > 0 else None


def _resolution_size(page: tifffile.TiffPage, tag: str) -> float | None:
    """Pixel size from an X/YResolution tag (pixels per unit -> units per pixel)."""
    res = page.tags.get(tag)
    if res is None:
        return None
    num, den = res.value
    return 1.0 / (num / den) if num and den else None


def imagej_calibration(tif: tifffile.TiffFile, axes: str, ij: dict) -> tuple[dict, dict]:
    page = tif.pages[0]
    unit = norm_unit(ij.get("unit"))
    sizes = {
        "X": _resolution_size(page, "XResolution"),
        "Y": _resolution_size(page, "YResolution"),
        "Z": positive(ij.get("spacing")),
        "T": positive(ij.get("finterval")),
    }
    units = {
        "X": unit,
        "Y": norm_unit(ij.get("yunit")) or unit,
        "Z": norm_unit(ij.get("zunit")) or unit,
        "T": (norm_unit(ij.get("tunit")) or "sec") if sizes["T"] else None,
    }
    return {a: s for a, s in sizes.items() if a in axes and s}, units


def ome_calibration(xml: str) -> tuple[dict, dict, list[str] | None]:
    root = ET.fromstring(xml)
    pixels = next((el for el in root.iter() if el.tag.rsplit("}", 1)[-1] == "Pixels"), None)
    if pixels is None:
        return {}, {}, None
    sizes: dict[str, float] = {}
    units: dict[str, str | None] = {}
    for ax, key, default_unit in (
        ("X", "PhysicalSizeX", "µm"),
        ("Y", "PhysicalSizeY", "µm"),
        ("Z", "PhysicalSizeZ", "µm"),
        ("T", "TimeIncrement", "s"),
    ):
        size = positive(pixels.get(key))
        if size:
            sizes[ax] = size
            units[ax] = norm_unit(pixels.get(key + "Unit", default_unit))
    names = [ch.get("Name") for ch in pixels if ch.tag.rsplit("}", 1)[-1] == "Channel"]
    return sizes, units, names if names and all(names) else None


def imagej_channel_names(ij: dict, shape: tuple[int, ...], axes: str) -> list[str] | None:
    """Channel names from ImageJ slice 'Labels' (if they vary only with C) or Zeiss names in 'Info'."""
    if "C" not in axes:
        return None
    n_channels = shape[axes.index("C")]
    plane_axes = "".join(a for a in axes if a not in "YXS")
    plane_shape = tuple(shape[axes.index(a)] for a in plane_axes)
    labels = ij.get("Labels")
    labels = [labels] if isinstance(labels, str) else labels
    if labels and len(labels) == math.prod(plane_shape):
        grid = np.array([_BIOFORMATS_POSITION.sub("", str(lab)).strip() for lab in labels], dtype=object)
        grid = np.moveaxis(grid.reshape(plane_shape), plane_axes.index("C"), 0).reshape(n_channels, -1)
        names = [str(row[0]) for row in grid]
        if all((row == row[0]).all() for row in grid) and all(names) and len(set(names)) == n_channels:
            return names
    found = {int(i or 1): name.strip() for i, name in _INFO_CHANNEL_NAME.findall(str(ij.get("Info", "")))}
    if len(found) == n_channels and sorted(found) == list(range(1, n_channels + 1)):
        return [found[i] for i in sorted(found)]
    return None


def anisotropy_from_scale(axes: str, scale: Any) -> float | None:
    """Z spacing / X spacing from per-axis ``scale`` (a file's or a napari layer's), or None.

    None when ``axes`` has no ``Z``, ``scale`` does not have one entry per axis, a spacing is not
    positive and finite, or every spatial spacing is exactly 1 (what files without calibration and
    layers without a scale give: unknown, not known to be isotropic).
    """
    if scale is None or "Z" not in axes or "X" not in axes:
        return None
    values = [float(s) for s in scale]
    if len(values) != len(axes):
        return None
    spacing = dict(zip(axes, values))
    spatial = [spacing[a] for a in "ZYX" if a in spacing]
    if not all(math.isfinite(s) and s > 0 for s in spatial) or all(s == 1.0 for s in spatial):
        return None
    return spacing["Z"] / spacing["X"]
