"""Why a TIFF cannot be read as an image, decided from its header alone (no pixel data read).

One check shared by :func:`~napari_unet.core.image.io.read_image` (which runs it before loading any
pixels) and the napari reader (whose ``napari_get_reader`` runs
:func:`~napari_unet.core.image.io.check_image_file`, i.e. everything ``read_image`` checks except
loading the pixels), so napari is never offered a reader for a file that ``read_image`` then
rejects. Numpy and tifffile only.
"""

from __future__ import annotations

import math
import os
import pathlib

import tifffile

from .checks import empty_problem

__all__ = ["TIFF_MAGIC", "magic_problem", "series_problem"]

#: First bytes of classic TIFF and BigTIFF, little- and big-endian.
TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


def magic_problem(path: str | os.PathLike) -> str | None:
    """``"not a TIFF file (starts with ...)"`` when ``path`` does not start like a TIFF, else None."""
    with open(path, "rb") as fh:
        magic = fh.read(4)
    return None if magic in TIFF_MAGIC else f"not a TIFF file (starts with {magic!r})"


def series_problem(tif: tifffile.TiffFile, path: str | os.PathLike) -> str | None:
    """Why the first series of the open ``tif`` cannot be read, or None when its header is sound.

    Checks, reading IFDs and metadata only: there is a series; no axis has length 0; an ImageJ
    header that tifffile could not follow does not promise more images than the file holds; the
    pixel data the header points to lie within the file (truncated files).
    """
    if not tif.series:
        return "the TIFF holds no image series"
    series = tif.series[0]
    shape, axes = tuple(int(n) for n in series.shape), series.axes.upper()
    empty = empty_problem(shape) if shape else "has no pixels (shape ())"
    if empty:
        return f"the image {empty}"
    promised = int((tif.imagej_metadata or {}).get("images", 1))
    planes = math.prod(n for n, a in zip(shape, axes) if a not in "YXS")
    if series.kind != "imagej" and promised > planes:
        return f"the ImageJ header promises {promised} images but only {planes} can be read (truncated or corrupt file)"
    size = pathlib.Path(path).stat().st_size
    if series.dataoffset is not None:  # contiguous, uncompressed
        nbytes = math.prod(shape) * series.dtype.itemsize
        if series.dataoffset + nbytes > size:
            return (
                f"truncated: the header promises {nbytes} bytes of pixels from offset "
                f"{series.dataoffset} but the file has {size} bytes"
            )
        return None
    for page in series.pages:
        if page is None:
            return "a page of the first series cannot be read"
        ends = [o + c for o, c in zip(page.dataoffsets, page.databytecounts)]
        if not ends or max(ends) > size:
            return f"truncated: page data end beyond the file's {size} bytes"
    return None
