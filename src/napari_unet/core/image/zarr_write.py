"""Labels written as OME-Zarr labels, block by block: :func:`create_labels`, :class:`LabelsWriter`.

zarr is imported on first use; without it every call raises ImportError naming
``pip install "napari-unet[zarr]"`` (Python >= 3.11). Only local folders are written.

The API (the CLI, the napari writer and the block-wise engine use it)::

    writer = create_labels(root, name, shape=..., axes="ZYX", dtype="uint32",
                           chunks=None, scale=None, units=None, provenance=None, colors=None)
    writer.write((slice(0, 1), slice(0, 1024), slice(1024, 2048)), block)   # any process, any order
    writer.finish()       # pyramid, NGFF metadata, provenance; then the labels appear

``root`` is either

- an existing OME-Zarr **image** group: the labels go to ``root/labels/<name>`` and ``name`` is
  appended to the ``"labels"`` list of ``root/labels`` (created if needed). The NGFF version is the
  container's: 0.4 on a zarr v2 container, 0.5 (attributes under ``"ome"``) on zarr v3;
- a path that does not exist: a new OME-Zarr (zarr v3, NGFF 0.5; ``zarr_format=2`` for 0.4) whose
  root group is the label image itself (``multiscales`` + ``image-label`` without ``source``), so
  readers open it as labels. For image + labels, write the image first
  (:func:`~napari_unet.core.image.zarr_copy.write_image`) and give its path as ``root``.

Until :meth:`LabelsWriter.finish` returns, everything is written to a hidden group beside its final
place (``root/labels/.<name>.partial``, or ``.<root name>.partial`` beside a new ``root``):
:meth:`~LabelsWriter.abort` (called on any error inside ``finish`` or a ``with`` block) removes it,
and the ``labels`` list is only changed once the labels are in place. An existing ``name`` is
refused unless ``overwrite=True`` (then replaced only when the new labels are complete).

**Several processes.** Level 0 is created empty (fill 0) with ``chunks`` (default one plane of
1024 x 1024 pixels). :meth:`~LabelsWriter.write` takes regions aligned to those chunks (a
``ValueError`` otherwise), so every chunk is written by one writer and writes from several threads or
processes never overlap. Another process opens the same unfinished labels with
``LabelsWriter.open(writer.path)``; a writer also pickles as that call (dask sends it to workers).
One process calls :meth:`~LabelsWriter.finish` once every block is written. ``create_labels(...,
resume=True)`` reopens the unfinished labels of an interrupted run instead of refusing them; which
blocks are done is the caller's to track.

**finish()** builds levels 1, 2, ... block by block (level ``k`` is ``level0[..., ::2**k, ::2**k]``:
every 2nd pixel in Y and X, no interpolation, as NGFF asks for labels; never a whole level in
memory), until the largest of Y and X is at most 256 px unless ``levels`` is given; then writes
``multiscales`` (axes with types and units, one scale transform per level), ``image-label``
(``version`` on 0.4, ``colors`` when given, ``source: {"image": "../../"}`` inside an image) and
``{"napari_unet": {"napari_unet_version", "axes", "provenance"}}`` in the group's attributes
(:func:`read_zarr_provenance` reads it back).
"""

from __future__ import annotations

import logging
import os
import pathlib
import shutil
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..._version import __version__
from .ngff import (
    build_pyramid,
    check_labels_layout,
    check_labels_name,
    check_region,
    create_level,
    label_colors,
    labels_names,
    level_count,
    multiscales_metadata,
    ngff_version,
    ome_attrs,
    open_ome_group,
    read_zarr_provenance,
    require_zarr,
    set_ome_attrs,
)
from .provenance import jsonable

__all__ = ["LabelsWriter", "create_labels", "labels_names", "open_ome_group", "read_zarr_provenance"]

logger = logging.getLogger(__name__)

_PARTIAL = ".partial"


def _locate(
    root: pathlib.Path, name: str, zarr_format: int | None
) -> tuple[bool, int, pathlib.Path, pathlib.Path, bool]:
    """``(into an image, zarr format, final path, partial path, name taken)`` for create_labels."""
    if root.exists():
        group = open_ome_group(root)
        attrs, fmt = ome_attrs(group), group.metadata.zarr_format
        if "image-label" in attrs:
            raise ValueError(f"'{root}' is itself a label image; give its image, or a new path")
        if "multiscales" not in attrs:
            raise ValueError(f"'{root}' is a zarr group but not an OME-Zarr image (no multiscales metadata)")
        if zarr_format not in (None, fmt):
            raise ValueError(f"'{root}' is a zarr v{fmt} container; cannot write zarr v{zarr_format} labels into it")
        final, partial = root / "labels" / name, root / "labels" / f".{name}{_PARTIAL}"
        return True, fmt, final, partial, name in labels_names(root) or final.exists()
    fmt = 3 if zarr_format is None else int(zarr_format)
    if fmt not in (2, 3):
        raise ValueError(f"zarr_format must be 2 or 3, got {zarr_format!r}")
    return False, fmt, root, root.parent / f".{root.name}{_PARTIAL}", False


def create_labels(
    root: str | os.PathLike,
    name: str,
    *,
    shape: Sequence[int],
    axes: str,
    dtype: Any,
    chunks: Sequence[int] | None = None,
    scale: Sequence[float] | None = None,
    units: Sequence[str | None] | None = None,
    provenance: Mapping[str, Any] | None = None,
    colors: Mapping[int, Sequence[int]] | None = None,
    overwrite: bool = False,
    resume: bool = False,
    zarr_format: int | None = None,
) -> LabelsWriter:
    """Start writing labels into the OME-Zarr image ``root`` (or a new OME-Zarr at ``root``).

    Parameters
    ----------
    root : str or os.PathLike
        An existing OME-Zarr image group, or a path that does not exist (see the module docstring).
    name : str
        The labels' name in ``root/labels`` (a folder name); the ``multiscales`` name of a new one.
    shape, axes : sequence of int, str
        Level 0's shape and axes letters in NGFF order (``ZYX``, ``TYX``, ``TZYX``, ``CZYX``...).
    dtype : numpy dtype
        An integer dtype (NGFF labels are integers).
    chunks : sequence of int, optional
        Level 0's chunks, the grid :meth:`LabelsWriter.write` regions align to. Default: 1 per axis
        besides Y and X, at most 1024 in Y and X.
    scale, units : sequence, optional
        Physical pixel size and unit per axis (units as :func:`~napari_unet.core.image.io.read_image`
        gives them; they are written as NGFF names, e.g. ``micrometer``).
    provenance : mapping, optional
        How the labels were made (:mod:`~napari_unet.core.image.provenance`).
    colors : mapping, optional
        ``{label value: (r, g, b, a)}`` (0-255) for a few labels.
    overwrite : bool
        Replace labels of that name (or an unfinished write of them) instead of refusing.
    resume : bool
        Reopen an unfinished write of these labels (same shape, dtype, chunks and axes).
    zarr_format : {2, 3}, optional
        For a new ``root`` only: 3 (default, NGFF 0.5) or 2 (NGFF 0.4).

    Returns
    -------
    LabelsWriter

    Raises
    ------
    ImportError
        Without zarr (``pip install "napari-unet[zarr]"``).
    ValueError
        Bad axes, shape, chunks, dtype, scale, units or colours; ``root`` not an OME-Zarr image.
    FileExistsError
        Labels ``name`` (or an unfinished write of them) exist and neither ``overwrite`` nor ``resume``.
    """
    zarr = require_zarr()
    root, name = pathlib.Path(root), check_labels_name(name)
    shape, axes, dtype, chunks, scale, units = check_labels_layout(shape, axes, dtype, chunks, scale, units)
    color_list = label_colors(colors)
    into, fmt, final, partial, taken = _locate(root, name, zarr_format)
    made_labels_group = False
    if taken and not overwrite:
        raise FileExistsError(f"labels '{name}' already exist in '{root}'; choose another name or overwrite them")
    if partial.exists():
        if resume:
            writer = LabelsWriter.open(partial)
            wanted = (shape, str(dtype), chunks, axes)
            if (writer.shape, str(writer.dtype), writer.chunks, writer.axes) != wanted:
                raise ValueError(f"the unfinished labels at '{partial}' have another shape, dtype, chunks or axes")
            return writer
        if not overwrite:
            raise FileExistsError(
                f"an unfinished write of labels '{name}' is at '{partial}' (a run still going, or one interrupted): "
                "continue it (resume=True), start again (overwrite=True) or remove it"
            )
        shutil.rmtree(partial)
    if into and not (root / "labels").exists():
        labels_group = zarr.open_group(str(root / "labels"), mode="w", zarr_format=fmt)
        set_ome_attrs(labels_group, {"labels": []})
        made_labels_group = True
    root.parent.mkdir(parents=True, exist_ok=True)
    group = zarr.open_group(str(partial), mode="w", zarr_format=fmt)
    create_level(group, "0", shape=shape, dtype=dtype, chunks=chunks, axes=axes)
    group.attrs["napari_unet"] = {
        "pending": {
            "into_image": into,
            "name": name,
            "axes": axes,
            "shape": list(shape),
            "dtype": dtype.str,
            "chunks": list(chunks),
            "scale": scale,
            "units": units,
            "colors": color_list,
            "provenance": jsonable(dict(provenance or {})),
            "overwrite": bool(overwrite),
            "made_labels_group": made_labels_group,
        }
    }
    logger.info("writing labels %s %s (%s) to %s (final: %s)", shape, dtype, axes, partial, final)
    return LabelsWriter(partial)


class LabelsWriter:
    """Unfinished OME-Zarr labels: :meth:`write` blocks, then :meth:`finish` (or :meth:`abort`).

    Made by :func:`create_labels`, or :meth:`open` on ``writer.path`` in another process. As a
    context manager: an exception aborts, a normal exit finishes (unless done already).
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = pathlib.Path(path)
        group = open_ome_group(self.path)
        pending = (dict(group.attrs).get("napari_unet") or {}).get("pending")
        if not isinstance(pending, Mapping):
            raise ValueError(f"'{path}' holds no unfinished napari-unet labels")
        self._info = dict(pending)
        self.zarr_format: int = group.metadata.zarr_format
        self._array: Any = None
        self.finished = False

    @classmethod
    def open(cls, path: str | os.PathLike) -> LabelsWriter:
        """Reopen unfinished labels by their :attr:`path` (e.g. in another process)."""
        return cls(path)

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (LabelsWriter.open, (str(self.path),))

    name = property(lambda self: str(self._info["name"]), doc="The labels' name.")
    axes = property(lambda self: str(self._info["axes"]), doc="Axes letters of level 0 (NGFF order).")
    shape = property(lambda self: tuple(self._info["shape"]), doc="Level 0's shape.")
    dtype = property(lambda self: np.dtype(self._info["dtype"]), doc="The labels' dtype.")
    chunks = property(lambda self: tuple(self._info["chunks"]), doc="Level 0's chunks (the write grid).")
    into_image = property(lambda self: bool(self._info["into_image"]), doc="Labels of an image (root/labels/name).")

    @property
    def target(self) -> pathlib.Path:
        """Where the labels will be once finished."""
        if self.into_image:
            return self.path.parent / self.name
        return self.path.with_name(self.path.name[1 : -len(_PARTIAL)])

    @property
    def array(self) -> Any:
        """Level 0, the zarr array blocks are written to."""
        if self._array is None:
            self._array = require_zarr().open_array(str(self.path / "0"), mode="r+")
        return self._array

    def write(self, region: Sequence[slice], block: Any) -> None:
        """Write ``block`` into ``region`` of level 0.

        Parameters
        ----------
        region : tuple of slice
            One slice per axis, aligned to :attr:`chunks` (ends may be the array's edge).
        block : array-like
            Labels of the region's shape; other integer dtypes are cast when the values fit.

        Raises
        ------
        ValueError
            Unaligned region, a block of another shape, or values the dtype cannot hold.
        """
        if self.finished:
            raise ValueError(f"labels '{self.name}' are finished; nothing more can be written")
        region = check_region(region, self.shape, self.chunks)
        block = np.asarray(block)
        expected = tuple(s.stop - s.start for s in region)
        if block.shape != expected:
            raise ValueError(f"block of shape {block.shape} does not fill region {region} (shape {expected})")
        if block.dtype != self.dtype:
            fits = block.dtype.kind == "b" or np.can_cast(block.dtype, self.dtype)
            if not fits and block.dtype.kind in "iu":
                info = np.iinfo(self.dtype)
                fits = not block.size or (int(block.min()) >= info.min and int(block.max()) <= info.max)
            if not fits:
                raise ValueError(f"block of dtype {block.dtype} has values labels of dtype {self.dtype} cannot hold")
            block = block.astype(self.dtype)
        self.array[region] = block

    def update_provenance(self, fields: Mapping[str, Any]) -> None:
        """Add ``fields`` to the provenance :meth:`finish` writes (e.g. a block-wise run's statistics)."""
        self._info["provenance"] = {**self._info["provenance"], **jsonable(dict(fields))}
        open_ome_group(self.path, mode="r+").attrs["napari_unet"] = {"pending": self._info}

    def finish(self, levels: int | None = None, threads: int | None = None) -> pathlib.Path:
        """Build the pyramid, write the metadata and move the labels into place.

        Parameters
        ----------
        levels : int, optional
            Number of levels (>= 1); default until the largest of Y and X is at most 256 px.
        threads : int, optional
            Threads writing pyramid chunks (default up to 4).

        Returns
        -------
        pathlib.Path
            The labels group written.
        """
        if self.finished:
            return self.target
        if levels is not None and int(levels) < 1:
            raise ValueError(f"levels must be at least 1, got {levels}")
        try:
            self._write_pyramid_and_metadata(
                level_count(self.shape, self.axes) if levels is None else int(levels), threads
            )
            self._move_into_place()
        except BaseException:
            self.abort()
            raise
        self.finished = True
        logger.info("labels %r written to %s", self.name, self.target)
        return self.target

    def _write_pyramid_and_metadata(self, levels: int, threads: int | None) -> None:
        group, axes = open_ome_group(self.path, mode="r+"), self.axes
        build_pyramid(group, axes, levels, chunks=self.chunks, threads=threads)
        version = ngff_version(self.zarr_format)
        ms = multiscales_metadata(
            name=self.name,
            axes=axes,
            units=self._info["units"],
            scale=self._info["scale"],
            levels=levels,
            version=version,
        )
        label: dict[str, Any] = {"version": version} if version == "0.4" else {}
        if self._info["colors"]:
            label["colors"] = self._info["colors"]
        if self.into_image:
            label["source"] = {"image": "../../"}
        set_ome_attrs(group, {"multiscales": [ms], "image-label": label})
        record = {"napari_unet_version": __version__, "axes": axes, "provenance": self._info["provenance"]}
        group.attrs["napari_unet"] = record

    def _move_into_place(self) -> None:
        target, old = self.target, None
        if target.exists():
            if not self._info["overwrite"]:
                raise FileExistsError(f"labels '{self.name}' appeared at '{target}' while these were written")
            old = target.with_name(f".{target.name}.replaced-{uuid.uuid4().hex[:8]}")
            os.replace(target, old)
        try:
            os.replace(self.path, target)
        except BaseException:
            if old is not None:
                os.replace(old, target)
            raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        if self.into_image:
            group = open_ome_group(target.parent, mode="r+")
            names = [str(n) for n in ome_attrs(group).get("labels") or []]
            if self.name not in names:
                set_ome_attrs(group, {"labels": [*names, self.name]})

    def abort(self) -> None:
        """Remove the unfinished labels (and a ``labels`` group made only for them)."""
        if self.finished:
            return
        shutil.rmtree(self.path, ignore_errors=True)
        labels_dir = self.path.parent
        if self.into_image and self._info.get("made_labels_group") and labels_dir.is_dir():
            rest = {p.name for p in labels_dir.iterdir()} - {"zarr.json", ".zgroup", ".zattrs"}
            if not rest and not labels_names(labels_dir.parent):
                shutil.rmtree(labels_dir, ignore_errors=True)
        logger.info("removed unfinished labels %s", self.path)

    def __enter__(self) -> LabelsWriter:
        return self

    def __exit__(self, kind: Any, error: Any, traceback: Any) -> None:
        if kind is not None:
            self.abort()
        elif not self.finished:
            self.finish()
