"""Small OME-Zarr images written with zarr directly, for the reading tests (NGFF 0.4 and 0.5)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

AXIS_TYPES = {"t": "time", "c": "channel", "z": "space", "y": "space", "x": "space"}


def write_ome_zarr(
    path: Path,
    levels: list[np.ndarray],
    axes: str,
    *,
    version: str = "0.4",
    scale: tuple[float, ...] | None = None,
    units: dict[str, str] | None = None,
    channel_names: list[str] | None = None,
    chunks: tuple[int, ...] | None = None,
    global_scale: tuple[float, ...] | None = None,
) -> Path:
    """Write ``levels`` (full resolution first) as an OME-Zarr image with NGFF ``version``.

    Each level's scale is ``scale`` times the level-0/level shape ratio per axis; ``units`` per
    axis letter (lowercase), e.g. ``{"x": "micrometer"}``; ``global_scale`` becomes the multiscale's
    own coordinateTransformations.
    """
    import zarr

    fmt = 2 if version == "0.4" else 3
    group = zarr.open_group(str(path), mode="w", zarr_format=fmt)
    base = scale or (1.0,) * len(axes)
    datasets = []
    for i, data in enumerate(levels):
        arr = group.create_array(str(i), shape=data.shape, dtype=data.dtype, chunks=chunks or data.shape)
        arr[...] = data
        factor = [a / b for a, b in zip(levels[0].shape, data.shape)]
        level_scale = [s * f for s, f in zip(base, factor)]
        datasets.append({"path": str(i), "coordinateTransformations": [{"type": "scale", "scale": level_scale}]})
    axes_meta = []
    for a in axes.lower():
        entry = {"name": a, "type": AXIS_TYPES[a]}
        if units and a in units:
            entry["unit"] = units[a]
        axes_meta.append(entry)
    multiscale = {"axes": axes_meta, "datasets": datasets, "name": path.name}
    if global_scale is not None:
        multiscale["coordinateTransformations"] = [{"type": "scale", "scale": list(global_scale)}]
    meta: dict = {"multiscales": [multiscale]}
    if channel_names is not None:
        meta["omero"] = {"channels": [{"label": n, "color": "FFFFFF"} for n in channel_names]}
    if version == "0.4":
        multiscale["version"] = "0.4"
        group.attrs.update(meta)
    else:
        group.attrs["ome"] = {"version": version, **meta}
    return path


def halves(data: np.ndarray, axes: str, n: int) -> list[np.ndarray]:
    """``n`` levels: ``data`` and its 2x, 4x, ... subsamplings in Y and X."""
    out = [data]
    for _ in range(n - 1):
        index = tuple(slice(None, None, 2) if a in "YX" else slice(None) for a in axes)
        out.append(np.ascontiguousarray(out[-1][index]))
    return out
