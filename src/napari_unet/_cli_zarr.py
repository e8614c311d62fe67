"""OME-Zarr outputs of ``napari-unet segment``: ``--output OUT.zarr`` and ``--into-input`` (docs/big-data.md).

- ``--output OUT.zarr`` (one input): a new OME-Zarr (zarr v3, NGFF 0.5) whose image group is the
  input image copied chunk by chunk (all channels, NGFF axis order, its own pyramid) and whose
  ``labels`` list names the result, ``OUT.zarr/labels/<name>``. The whole container is written
  beside ``OUT.zarr`` and renamed when complete.
- ``--into-input``: each input must be an OME-Zarr image; the labels go to ``IN.zarr/labels/<name>``
  (the container's own NGFF version).

``<name>`` is ``--labels-name`` or ``<stem>_labels`` (the TIFF output's name without ``.tif``). An
existing ``OUT.zarr`` or labels name is refused unless ``--overwrite``.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ._cli_errors import CLIError
from .core.image.files import file_stem

__all__ = ["ZarrTarget", "check_zarr_args", "zarr_targets"]


def zarr_stem(path: Path) -> str:
    """The input's name without ``.ome.zarr``/``.zarr`` (else :func:`file_stem`)."""
    name = path.name.rstrip("/")
    for ext in (".ome.zarr", ".zarr"):
        if name.lower().endswith(ext):
            return name[: -len(ext)]
    return file_stem(path)


def wants_zarr(args: argparse.Namespace) -> bool:
    """Whether ``segment`` writes OME-Zarr (``--into-input``, or ``--output`` ending in ``.zarr``)."""
    return bool(args.into_input) or (args.output is not None and args.output.name.lower().endswith(".zarr"))


def check_zarr_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Usage errors (status 2) of the output options of ``segment``."""
    if args.into_input and args.output is not None:
        parser.error("segment: --into-input writes into each input; do not give --output as well")
    if not args.into_input and args.output is None:
        parser.error("segment: the following arguments are required: --output/-o (or --into-input)")


@dataclasses.dataclass
class ZarrTarget:
    """Where one input's labels go: ``container/labels/name``."""

    input: Path
    container: Path
    name: str
    new: bool  # a new OME-Zarr (--output OUT.zarr), else the input itself (--into-input)
    overwrite: bool

    @property
    def labels_path(self) -> Path:
        return self.container / "labels" / self.name

    def check(self) -> None:
        """Refuse before segmenting: an existing output or labels name (without --overwrite), a bad input."""
        from .core.image.zarr_write import labels_names, open_ome_group

        if self.new:
            if self.container.exists() and not self.overwrite:
                raise CLIError(f"{self.container} exists; use --overwrite to replace it")
            return
        if not self.input.is_dir():
            raise CLIError(f"--into-input needs an OME-Zarr input (a .zarr folder); {self.input} is not one")
        from .core.image.ngff import ome_attrs

        if "multiscales" not in ome_attrs(open_ome_group(self.input)):
            raise CLIError(f"--into-input: {self.input} is not an OME-Zarr image (no multiscales metadata)")
        names = labels_names(self.input)
        if (self.name in names or self.labels_path.exists()) and not self.overwrite:
            raise CLIError(
                f"labels '{self.name}' already exist in {self.input} (labels: {', '.join(names) or 'none'}); "
                "use --overwrite to replace them or --labels-name to choose another name"
            )

    def write(
        self,
        image: Any,
        labels: Any,
        *,
        image_axes: str,
        axes: str,
        scale: Sequence[float] | None,
        units: Sequence[str | None] | None,
        provenance: Mapping[str, Any],
    ) -> Path:
        """Write the labels (and, for a new container, the image) block by block; returns the labels group."""
        from .core.image.files import atomic_directory
        from .core.image.zarr_copy import write_image, write_labels_array

        kwargs = {"axes": axes, "scale": scale, "units": units, "provenance": provenance, "overwrite": self.overwrite}
        if not self.new:
            return write_labels_array(self.container, self.name, labels, **kwargs)
        with atomic_directory(self.container, replace=self.overwrite) as tmp:
            img_scale = image.scale if len(image.scale) == len(image_axes) else None
            img_units = image.units if len(image.units) == len(image_axes) else None
            write_image(tmp, image.data, axes=image_axes, scale=img_scale, units=img_units, name=zarr_stem(self.input))
            write_labels_array(tmp, self.name, labels, **kwargs)
        return self.labels_path


def zarr_targets(args: argparse.Namespace) -> list[ZarrTarget] | None:
    """One target per input when ``segment`` writes OME-Zarr, else None (TIFF outputs)."""
    if not wants_zarr(args):
        if args.labels_name is not None:
            raise CLIError("--labels-name names labels in an OME-Zarr: use it with --output OUT.zarr or --into-input")
        return None
    if args.labels_name is not None:
        from .core.image.ngff import check_labels_name

        try:
            check_labels_name(args.labels_name)
        except ValueError as err:
            raise CLIError(f"--labels-name: {err}") from None
    if args.into_input:
        return [
            ZarrTarget(p, p, args.labels_name or f"{zarr_stem(p)}_labels", False, args.overwrite) for p in args.inputs
        ]
    if len(args.inputs) != 1:
        raise CLIError(f"--output {args.output} writes one OME-Zarr: give one input (got {len(args.inputs)})")
    (path,) = args.inputs
    if args.output.resolve() == path.resolve():
        raise CLIError(f"--output {args.output} is the input; use --into-input to add labels to it")
    return [ZarrTarget(path, args.output, args.labels_name or f"{zarr_stem(path)}_labels", True, args.overwrite)]


def read_input(path: Path, args: argparse.Namespace) -> Any:
    """``read_image`` of one input (a TIFF or a zarr store, ``--level``); with ``--axes`` given, the
    guess for a plain zarr array is not worth a warning."""
    import warnings

    from .core.image.axes import AxesGuessWarning
    from .core.image.io import read_image

    with warnings.catch_warnings():
        if args.axes:
            warnings.simplefilter("ignore", AxesGuessWarning)
        return read_image(path, level=args.level)
