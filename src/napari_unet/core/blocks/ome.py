"""OME-Zarr labels as the output of a block-wise run (docs/big-data.md).

:class:`OmeLabels` says where the labels go; the engine (:mod:`.run`) opens it once the result's
shape, dtype and blocks are known (:meth:`OmeLabels.open` gives a
:class:`~napari_unet.core.image.zarr_write.LabelsWriter`), the workers write their blocks through
``LabelsWriter.open(path).write(core, block)`` and the driver calls :meth:`OmeLabels.finish` once
(pyramid, NGFF metadata, provenance with the run's statistics; then the labels appear).

Three places:

- ``into`` an existing OME-Zarr image: ``root/labels/<name>``, written as ``root/labels/.<name>.partial``;
- a new OME-Zarr at ``root`` holding only the labels (its root group is the label image);
- a new OME-Zarr at ``root`` holding a copy of the image and the labels (``image=``).

A new OME-Zarr is built as ``.<root name>.partial`` beside ``root`` and renamed when complete (an
existing ``root`` is replaced then, with ``overwrite``).

The completion records of the run are kept beside the unfinished labels
(``<partial>.blocks``), so a killed run leaves only hidden names behind and ``resume=True``
continues it; :meth:`OmeLabels.finish` removes them.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["OmeLabels", "labels_stem", "pyramid_levels"]


def labels_stem(path: str | os.PathLike) -> str:
    """``cells`` for ``cells.ome.zarr`` / ``cells.zarr``."""
    name = Path(path).name.rstrip("/")
    for ext in (".ome.zarr", ".zarr"):
        if name.lower().endswith(ext):
            return name[: -len(ext)]
    return name


@dataclasses.dataclass
class OmeLabels:
    """Where a block-wise run writes OME-Zarr labels.

    Attributes
    ----------
    root : Path
        An existing OME-Zarr image (``into=True``), or the new OME-Zarr to write.
    name : str
        The labels' name (``root/labels/<name>``; the multiscales name of a new label image).
    into : bool
        Labels added to the existing image ``root``.
    scale, units : mapping, optional
        Pixel size and unit per axis letter (``{"Y": 0.3, "X": 0.3}``); the labels take their axes'.
    provenance : mapping, optional
        The provenance record; the run adds ``blocks`` (percentiles, object size, blocks, halo,
        scheduler, workers and their devices).
    image : tuple, optional
        ``(data, axes, scale, units)``: a new container holds a copy of this image too.
    overwrite : bool
        Replace existing labels of that name (or an existing new ``root``) once the new ones are complete.
    """

    root: Path
    name: str
    into: bool = False
    scale: Mapping[str, float] | None = None
    units: Mapping[str, str | None] | None = None
    provenance: Mapping[str, Any] | None = None
    image: tuple[Any, str, Sequence[float] | None, Sequence[str | None] | None] | None = None
    overwrite: bool = False
    reopened: bool = dataclasses.field(default=False, init=False)

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        if self.into and self.image is not None:
            raise ValueError("labels written into an existing image do not copy an image")

    @property
    def staging(self) -> Path:
        """The hidden container built beside ``root`` (new containers with an image copy)."""
        return self.root.parent / f".{self.root.name}.partial"

    @property
    def partial(self) -> Path:
        """The unfinished labels group."""
        if self.into:
            return self.root / "labels" / f".{self.name}.partial"
        if self.image is not None:
            return self.staging / "labels" / f".{self.name}.partial"
        return self.staging.with_name(f".{self.staging.name}.partial")  # create_labels' name for a new root

    @property
    def final(self) -> Path:
        """The labels group once finished."""
        return self.root if not self.into and self.image is None else self.root / "labels" / self.name

    def records(self) -> Path:
        """The run's records folder, beside the unfinished labels."""
        return self.partial.with_name(self.partial.name + ".blocks")

    def _refuse(self, what: Path) -> FileExistsError:
        return FileExistsError(
            f"an unfinished block-wise write is at '{what}' (a run still going, or one killed): continue it "
            "(resume=True, --resume), start again (overwrite=True, --overwrite) or remove it"
        )

    def open(self, *, shape: Sequence[int], axes: str, dtype: Any, chunks: Sequence[int], resume: bool) -> Any:
        """The writer of the unfinished labels: created, or reopened with ``resume`` (then
        :attr:`reopened` is true and the records may be trusted)."""
        from ..image.ngff import ome_attrs, open_ome_group
        from ..image.zarr_write import create_labels

        if not self.into and self.root.exists() and not self.overwrite:
            raise FileExistsError(f"'{self.root}' exists; overwrite=True (--overwrite) replaces it")
        container = self.root if self.into else self.staging
        if self.image is not None:
            container = self.staging
            if container.exists() and not resume:
                if not self.overwrite:
                    raise self._refuse(container)
                shutil.rmtree(container)
            if container.exists():
                try:
                    copied = "multiscales" in ome_attrs(open_ome_group(container))
                except Exception:  # noqa: BLE001 - a copy cut short before its metadata: start it again
                    copied = False
                if not copied:
                    shutil.rmtree(container)
            if not container.exists():
                from ..image.zarr_copy import write_image

                data, image_axes, scale, units = self.image
                write_image(container, data, axes=image_axes, scale=scale, units=units, name=labels_stem(self.root))
        elif self.partial.exists() and not resume and not self.overwrite:
            raise self._refuse(self.partial)
        self.reopened = bool(resume) and self.partial.exists()
        if not self.reopened and self.records().exists():
            shutil.rmtree(self.records())  # records of labels that are gone
        scale = [float((self.scale or {}).get(a, 1.0)) for a in axes]
        units = [(self.units or {}).get(a) for a in axes]
        return create_labels(
            container,
            self.name,
            shape=shape,
            axes=axes,
            dtype=dtype,
            chunks=chunks,
            scale=scale,
            units=units,
            provenance=self.provenance,
            overwrite=self.overwrite or not self.into,
            resume=bool(resume),
        )

    def finish(self, writer: Any, run: Mapping[str, Any]) -> Path:
        """Pyramid, metadata and provenance (with ``run``), then the labels (and a new container) in place."""
        writer.update_provenance({"blocks": dict(run)})
        writer.finish()
        shutil.rmtree(self.records(), ignore_errors=True)
        if not self.into:  # a new container, built beside root
            old = None
            if self.root.exists():
                old = self.root.with_name(f".{self.root.name}.replaced")
                shutil.rmtree(old, ignore_errors=True)
                os.replace(self.root, old)
            os.replace(self.staging, self.root)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        return self.final

    def abandon(self, writer: Any) -> None:
        """Remove everything of a run that finished no block."""
        writer.abort()
        shutil.rmtree(self.records(), ignore_errors=True)
        if self.image is not None:
            shutil.rmtree(self.staging, ignore_errors=True)


def is_labels_output(out: Any) -> bool:
    from ..image.zarr_write import LabelsWriter

    return isinstance(out, (OmeLabels, LabelsWriter))


def open_labels_output(
    out: Any, *, shape: Sequence[int], axes: str, dtype: Any, chunks: Sequence[int], resume: bool, mode: str
) -> tuple[Any, OmeLabels | None, bool, Path]:
    """``(writer, OmeLabels or None, resume the records, records folder)`` of an OME-Zarr output."""
    if mode == "probabilities":
        raise ValueError(
            "mode='probabilities' writes float probabilities: give a zarr array (or its path) as out, "
            "not OME-Zarr labels"
        )
    if isinstance(out, OmeLabels):
        writer = out.open(shape=shape, axes=axes, dtype=dtype, chunks=chunks, resume=resume)
        return writer, out, out.reopened, out.records()
    if tuple(out.shape) != tuple(shape) or out.axes != axes:
        raise ValueError(f"the labels writer has shape {out.shape} ({out.axes}); the result is {tuple(shape)} ({axes})")
    return out, None, bool(resume), out.path.with_name(out.path.name + ".blocks")


def finish_labels(writer: Any, ome: OmeLabels | None, records: Path, run: Mapping[str, Any]) -> tuple[Any, Path]:
    """Finish the labels once every block is written; returns level 0 (read-only) and the labels group."""
    from ..image.ngff import require_zarr

    if ome is not None:
        path = ome.finish(writer, run)
    else:
        writer.update_provenance({"blocks": dict(run)})
        path = writer.finish()
        shutil.rmtree(records, ignore_errors=True)
    return require_zarr().open_array(str(path / "0"), mode="r"), path


def pyramid_levels(path: str | os.PathLike) -> list[Any]:
    """Every level of the OME-Zarr label image at ``path`` as a dask array, full resolution first
    (napari's multiscale data: a viewer reads only the chunks it shows)."""
    import dask.array as da

    from ..image.ngff import ome_attrs, open_ome_group

    group = open_ome_group(path)
    multiscales = ome_attrs(group).get("multiscales") or []
    if not multiscales:
        raise ValueError(f"'{path}' holds no OME-Zarr multiscale image (no 'multiscales' metadata)")
    return [da.from_zarr(group[str(d["path"])]) for d in multiscales[0]["datasets"]]


def run_record(result: Any, client: Any, edges: Sequence[int], scheduler: str, **info: Any) -> dict[str, Any]:
    """What the labels' provenance records of a block-wise run (under ``blocks``)."""
    return {
        **info,
        "lo": np.asarray(result.lo).tolist(),
        "hi": np.asarray(result.hi).tolist(),
        "object_size": result.object_size,
        "n_blocks": result.n_blocks,
        "block": [int(e) for e in edges],
        "halo": [int(h) for h in result.halo],
        "scheduler": scheduler,
        "workers": len(client.scheduler_info().get("workers", {})),
        "devices": dict(result.devices),
    }


def abandon_if_empty(ome: OmeLabels | None, writer: Any, records: Path) -> None:
    """After a failure: remove the labels napari-unet started when no block was finished (nothing to resume)."""
    from .resume import done_blocks

    if ome is not None and not done_blocks(Path(records)):
        ome.abandon(writer)
