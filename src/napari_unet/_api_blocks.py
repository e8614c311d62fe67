"""``napari_unet.segment_blocks``: segmentation of images larger than memory, block by block on
dask.distributed (see docs/big-data.md, "Distributed"); re-exported by :mod:`napari_unet`."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

from ._sources import resolve_model


def segment_blocks(
    image: Any,
    model: Any = None,
    *,
    out: Any = None,
    into: str | os.PathLike | None = None,
    labels_name: str | None = None,
    overwrite: bool = False,
    axes: str | None = None,
    channels: int | str | Sequence[int | str] | None = None,
    mode: str = "instances",
    min_size: int = 0,
    block: int | Sequence[int] | None = None,
    scheduler: str | None = None,
    client: Any = None,
    workers: int | None = None,
    resume: bool = False,
    progress: Callable[[Any], Any] | bool | None = None,
    **options: Any,
) -> Any:
    """Segment ``image`` block by block on a dask cluster into OME-Zarr labels (or a zarr array).

    >>> result = segment_blocks("big.ome.zarr", into="big.ome.zarr", workers=2)  # big.ome.zarr/labels/big_labels
    >>> result = segment_blocks("big.zarr", out="big_labels.zarr")  # a new OME-Zarr: the label image
    >>> result.out, result.path, result.n_objects  # level 0 (zarr array, read lazily), the labels group

    Parameters
    ----------
    image : zarr array or its path, dask or numpy array
        One 2D image (with channels) or one volume for a 3D model, axes ``axes``.
    model : UNet, model file or built-in name
        Default the built-in nuclei model.
    out : path, zarr array or LabelsWriter
        Where the labels go. A path ending in ``.zarr`` that is not a zarr array: a **new OME-Zarr**
        whose root is the label image (NGFF 0.5, pyramid, provenance; ``overwrite`` replaces an
        existing one once the new one is complete). A zarr array (or the path of an existing one):
        plain labels of ``image``'s shape without channels; ``mode="probabilities"`` always writes
        a plain array, ``(classes, *spatial)``, created when the path does not exist. A
        :class:`~napari_unet.core.image.zarr_write.LabelsWriter`: written through and finished.
    into : path, optional
        Instead of ``out``: an existing OME-Zarr image; the labels go to ``into/labels/<labels_name>``
        (its own NGFF version; ``overwrite`` replaces labels of that name once the new ones are complete).
    labels_name : str, optional
        The labels' name; default ``<stem>_labels`` of ``into`` (``cells.ome.zarr`` → ``cells_labels``),
        or ``out``'s stem.
    mode : {"instances", "semantic", "probabilities"}
    block : int or sequence of int, optional
        Block edges (whole output chunks); default the output's chunks (1024 when created).
    scheduler : {"local", "tcp://host:8786"}, optional
        ``"local"`` (default): a ``distributed.LocalCluster`` of ``workers`` processes (default
        one per GPU, else one); an address: a running scheduler. ``client``: a
        ``distributed.Client`` to use instead.
    resume : bool
        Continue an interrupted run (only blocks without a completion record run). A run that
        finished blocks and was then killed leaves only hidden names (``.<name>.partial`` and its
        records, ``.<name>.partial.blocks``) for ``resume`` to continue.
    progress : callable or True
        Called with every progress event (``True``: a text bar).
    **options
        ``max_object``, ``records``, ``object_size``, ``estimate_size``, ``halo``, ``device``,
        ``precision``, ``tile_size``, ``batch_size``, ``tta``, ``channel_names``: see
        :func:`napari_unet.core.blocks.run.iter_segment_blocks`.

    Returns
    -------
    BlocksResult
        ``out`` (OME-Zarr: level 0, opened read-only; ``path``: the labels group), ``n_objects``,
        the blocks ``run`` now and ``skipped`` (resumed), the percentiles, object size, halo and
        devices used.
    """
    from pathlib import Path

    from .api import _run
    from .core.blocks.run import iter_segment_blocks

    source = str(image) if isinstance(image, (str, os.PathLike)) else getattr(image, "path", None)
    if isinstance(image, (str, os.PathLike)) and not _is_array(Path(image)):
        from .core.image.io import read_image

        image = read_image(image)  # OME-Zarr, TIFF...: lazily, with axes, scale and channel names
    scale = units = None
    if hasattr(image, "data") and hasattr(image, "axes") and not isinstance(image, (str, os.PathLike)):
        axes = axes or image.axes  # an ImageFile from read_image
        options.setdefault("channel_names", getattr(image, "channel_names", None))
        if len(image.scale) == len(image.axes):
            scale, units = dict(zip(image.axes, image.scale)), dict(zip(image.axes, image.units or ()))
        image = image.data
    target = _target(
        out, into, labels_name, overwrite, mode, scale, units, model, None if source is None else str(source)
    )
    gen = iter_segment_blocks(
        image,
        resolve_model(model),
        out=target,
        axes=axes,
        channels=channels,
        mode=mode,
        min_size=min_size,
        block=block,
        scheduler=scheduler,
        client=client,
        workers=workers,
        resume=resume,
        **options,
    )
    return _run(gen, progress)


def _target(
    out: Any, into: Any, name: str | None, overwrite: bool, mode: str, scale: Any, units: Any, model: Any, source: Any
) -> Any:
    """``out`` as the engine takes it: OME-Zarr labels (:class:`~napari_unet.core.blocks.ome.OmeLabels`)
    for ``into`` or a new ``.zarr`` path, else as given."""
    from pathlib import Path

    from .core.blocks.ome import OmeLabels, labels_stem
    from .core.image.provenance import build_provenance

    if (out is None) == (into is None):
        raise ValueError("give out= (a new OME-Zarr, or a zarr array) or into= (an OME-Zarr image), one of them")
    path = Path(into if into is not None else out) if isinstance(into or out, (str, os.PathLike)) else None
    new = into is None and path is not None and path.name.lower().endswith(".zarr") and mode != "probabilities"
    new = new and not _is_array(path)  # an existing plain zarr array stays a plain output
    if into is None and not new:
        if name is not None:
            raise ValueError("labels_name names OME-Zarr labels: give into= or out= a new path ending in .zarr")
        return out
    if into is not None and path is None:
        raise TypeError(f"into must be the path of an OME-Zarr image, got {type(into).__name__}")
    label = str(model) if isinstance(model, (str, os.PathLike)) else "nuclei" if model is None else "a UNet object"
    provenance = build_provenance(command="napari_unet.segment_blocks", model=label, input=source)
    return OmeLabels(
        path,
        name or (f"{labels_stem(path)}_labels" if into is not None else labels_stem(path)),
        into=into is not None,
        scale=scale,
        units=units,
        provenance=provenance,
        overwrite=overwrite,
    )


def _is_array(path: Any) -> bool:
    """Whether ``path`` holds a zarr array (v3 ``zarr.json`` of an array, or v2 ``.zarray``)."""
    import json

    meta = path / "zarr.json"
    if meta.is_file():
        return json.loads(meta.read_text(encoding="utf-8")).get("node_type") == "array"
    return (path / ".zarray").is_file()
