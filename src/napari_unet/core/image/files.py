"""Writing files safely and naming outputs: :func:`atomic_write`, :func:`atomic_directory`, :func:`file_stem`.

Used for every file napari-unet writes (labels, model files, overlays, settings).
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import shutil
import tempfile
from collections.abc import Iterator


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator[pathlib.Path]:
    """Yield a temporary path beside ``path``; move it onto ``path`` only if the block succeeds.

    On an exception the temporary file is removed and any existing ``path`` is left untouched.

    Parameters
    ----------
    path : str or os.PathLike
        The final destination; its folder must exist.

    Yields
    ------
    pathlib.Path
        Where to write (same folder and suffix as ``path``, so the rename is atomic).
    """
    path = pathlib.Path(path)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    tmp = pathlib.Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        mode = path.stat().st_mode & 0o777 if path.exists() else 0o666 & ~_umask()
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def file_stem(path: str | os.PathLike) -> str:
    """File name without its (possibly double) image extension: ``a.ome.tif`` → ``a``, ``a.ome.zarr`` → ``a``."""
    name = pathlib.Path(path).name
    for ext in (".ome.tiff", ".ome.tif", ".tiff", ".tif", ".ome.zarr", ".zarr"):
        if name.lower().endswith(ext):
            return name[: -len(ext)]
    return pathlib.Path(path).stem


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike, *, replace: bool = False) -> Iterator[pathlib.Path]:
    """Yield a new hidden folder beside ``path``; move it onto ``path`` only if the block succeeds.

    For outputs that are folders (an OME-Zarr). On an exception the folder is removed and any
    existing ``path`` is left untouched. An existing ``path`` is replaced only with ``replace``
    (it is removed once the new folder is in place).

    Raises
    ------
    FileExistsError
        If ``path`` exists and ``replace`` is false (checked before and after the block).
    """
    path = pathlib.Path(path)
    if path.exists() and not replace:
        raise FileExistsError(f"'{path}' exists")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        old = None
        if path.exists():
            if not replace:
                raise FileExistsError(f"'{path}' exists")
            old = path.with_name(f"{tmp.name}.old")
            os.replace(path, old)
        try:
            os.replace(tmp, path)
        except BaseException:
            if old is not None:
                os.replace(old, path)
            raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
