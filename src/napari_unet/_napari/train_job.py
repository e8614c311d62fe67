"""One run of the Train panel: its options, checked in the main thread, and the worker's generator.

:func:`build_job` turns the form's values (:meth:`TrainForm.options
<napari_unet._napari.train_form.TrainForm.options>`) and the chosen layer pairs into a
:class:`TrainJob`: the training pairs (layers read by :func:`napari_unet._sources.image_source` and
checked against their labels for a 2D or 3D network in :mod:`~napari_unet._napari.train_inputs`, or the
pairs of two folders), the output file and the keyword options of
:func:`~napari_unet.core.training.loop.iter_train`. Everything it can refuse before training
starts, it refuses here with a precise ``ValueError``. :func:`run_training` is the generator the
worker runs; it imports torch (through ``iter_train``) in the worker thread.
"""

from __future__ import annotations

import math
import os
import pathlib
import re
from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from napari.layers import Image

from ..core.image.files import file_stem
from ..core.training.checkpoints import last_paths
from .layer_inputs import unwrap
from .train_inputs import (
    LayerData,
    channel_count,
    image_for_network,
    pairs_from_folder_values,
    pairs_from_layers,
    path_or_none,
)

__all__ = [
    "DEFAULT_MODEL_DIR",
    "LayerData",
    "TrainJob",
    "TrainProgress",
    "build_job",
    "channel_count",
    "default_output",
    "last_checkpoint_paths",
    "model_network",
    "path_or_none",
    "run_training",
]

#: Folder of the default output file.
DEFAULT_MODEL_DIR = pathlib.Path("~") / "napari-unet-models"


def default_output(name: str) -> pathlib.Path:
    """The default model file for training on ``name``: ``~/napari-unet-models/<name>.safetensors``.

    Characters that are awkward in file names are replaced by ``_``.
    """
    safe = re.sub(r"[^\w.-]+", "_", name).strip("._") or "model"
    return DEFAULT_MODEL_DIR.expanduser() / f"{safe}.safetensors"


#: The checkpoint names beside ``output`` (:func:`napari_unet.core.training.checkpoints.last_paths`).
last_checkpoint_paths = last_paths


@dataclass(frozen=True)
class TrainJob:
    """Everything one training run needs; built in the main thread, consumed by the worker.

    Attributes
    ----------
    pairs : list of (image, labels)
        :class:`LayerData` + labels array, or (image path, mask path).
    val_pairs : list or None
        Explicit validation pairs ("use the last pair for validation"); else ``options["val_fraction"]``.
    output : pathlib.Path
        The best model's file; ``<stem>.last.safetensors`` goes beside it.
    options : dict
        Keyword options of ``iter_train`` (besides pairs, val_pairs and output).
    preview_layer : napari.layers.Image or None
        The image previewed every ``options["preview_every"]`` epochs.
    preview_axes : str
        Axes of ``preview_layer``'s data.
    metric_name : str
        ``"AP50"`` (instances) or ``"mIoU"`` (semantic).
    notes : tuple of str
        What the status line says when the run starts (e.g. a thin stack padded along Z).
    """

    pairs: list[tuple[Any, Any]]
    val_pairs: list[tuple[Any, Any]] | None
    output: pathlib.Path
    options: dict[str, Any]
    preview_layer: Image | None = None
    preview_axes: str = ""
    metric_name: str = "AP50"
    notes: tuple[str, ...] = ()

    @property
    def has_validation(self) -> bool:
        """Whether a validation set will exist (explicit pairs, or a fraction of at least 2 samples)."""
        return bool(self.val_pairs) or float(self.options.get("val_fraction", 0)) > 0

    @property
    def description(self) -> str:
        """``Train U-Net on 'a', 'b' …``: the progress bar's title."""
        names = sorted({_pair_name(p[0]) for p in self.pairs + (self.val_pairs or [])})
        return f"Train U-Net on {', '.join(names[:2])}{' …' if len(names) > 2 else ''}"


@dataclass(frozen=True)
class TrainProgress:
    """A :class:`~napari_unet.core.training.loop.TrainEvent` seen by the progress bar.

    :func:`~napari_unet._napari.workers.start_worker` reads ``step``, ``total``, ``stage``
    and ``message``; the original event is :attr:`event`.
    """

    event: Any

    @property
    def kind(self) -> str:
        return str(self.event.kind)

    @property
    def step(self) -> int:
        return int(self.event.step)

    @property
    def total(self) -> int:
        return int(self.event.total_steps)

    @property
    def stage(self) -> str:
        return "preparing" if self.kind == "start" else "training"

    @property
    def message(self) -> str:
        ev = self.event
        if ev.message:
            return str(ev.message)
        if self.kind == "step" and ev.loss is not None:
            return f"epoch {ev.epoch}/{ev.epochs}, step {ev.step}/{ev.total_steps}, loss {ev.loss:.4f}"
        if self.kind == "preview":
            return f"epoch {ev.epoch}/{ev.epochs}: preview"
        return self.kind


def run_training(job: TrainJob) -> Generator[TrainProgress, None, Any]:
    """The worker's generator: ``iter_train`` with its events wrapped for the progress bar.

    Runs in the worker thread; this is where torch gets imported. Closing this generator
    (Stop) closes ``iter_train``, which stops within one step and keeps its checkpoints.

    Returns
    -------
    napari_unet.core.model.unet.UNet
        The trained model (the best checkpoint's weights when there is a validation set).
    """
    from ..core.training.loop import iter_train

    gen = iter_train(job.pairs, val_pairs=job.val_pairs, output=job.output, **job.options)
    try:
        while True:
            try:
                event = next(gen)
            except StopIteration as stop:
                return stop.value
            yield TrainProgress(event)
    finally:
        gen.close()


def build_job(
    values: Mapping[str, Any], layer_pairs: Sequence[tuple[Image | None, Any]] = (), active_layer: Any = None
) -> TrainJob:
    """Check the form's values and make the :class:`TrainJob` they describe.

    Parameters
    ----------
    values : mapping
        The value of every control by name (``TrainForm.options()``).
    layer_pairs : sequence of (Image layer or None, Labels layer or None)
        The chosen rows, used when ``values["source"]`` is ``"layers"``.
    active_layer : napari layer, optional
        The selected layer: the preview image in folder mode when it is an Image layer.

    Raises
    ------
    ValueError
        Anything that would make the run fail or do something else than asked, in words:
        a row without a layer, labels of the wrong shape, an image without Z for a 3D network,
        a bad learning rate or patch size, Fine-tune with Resume, a fine-tune model of the other
        mode or network, no output file...
    FileNotFoundError
        The model file to fine-tune does not exist.
    """
    mode = values["mode"]
    depth = int(values["depth"])
    ndim = int(values.get("ndim", 2))
    fine_tune = path_or_none(values["fine_tune"])
    resume = bool(values["resume"])
    if fine_tune is not None and resume:
        raise ValueError("choose either Fine-tune from or Resume, not both")
    if fine_tune is not None:
        depth = _start_model_depth(fine_tune, mode, depth, ndim)
    elif resume:
        _check_resumed_network(values["output"], ndim)
    try:
        lr = float(str(values["lr"]).strip())
    except ValueError:
        lr = float("nan")
    if not (lr > 0 and math.isfinite(lr)):
        raise ValueError(f"learning rate must be a positive number such as 0.001, got {values['lr']!r}")
    patch = int(values["patch_size"])
    if not resume and patch % (2**depth):
        raise ValueError(f"patch size {patch} must be a multiple of {2**depth} (2**depth with depth {depth})")

    preview_layer: Image | None = None
    notes: list[str] = []
    if values["source"] == "layers":
        pairs, preview_layer, data_description, notes = pairs_from_layers(layer_pairs, ndim, patch)
    else:
        pairs, data_description = pairs_from_folder_values(values["images_dir"], values["masks_dir"])
        active = unwrap(active_layer)
        preview_layer = active if isinstance(active, Image) else None
    val_pairs = None
    val_fraction = float(values["val_fraction"])
    if values["val_last"]:
        if len(pairs) < 2:
            raise ValueError("'Use the last pair for validation' needs at least two pairs")
        pairs, val_pairs = pairs[:-1], pairs[-1:]
        val_fraction = 0.0

    output = resolve_output(values["output"], create=not resume)
    every = int(values["preview_every"])
    preview_axes = ""
    preview_image = None
    if preview_layer is not None and every > 0:
        try:
            src = image_for_network(preview_layer, ndim)
        except ValueError:  # folder mode, 3D: the selected layer is no stack; no preview then
            notes.append(f"no preview: the selected layer {preview_layer.name!r} has no Z axis")
            preview_layer = None
        else:
            preview_axes, preview_image = str(src.axes), src.image
    if preview_image is None:
        preview_layer = None
    options: dict[str, Any] = {
        "val_fraction": val_fraction,
        "mode": mode,
        "model": os.fspath(fine_tune) if fine_tune is not None else None,
        "resume": resume,
        "ndim": ndim,
        "depth": int(values["depth"]),
        "base_features": int(values["base_features"]),
        "epochs": int(values["epochs"]),
        "steps_per_epoch": int(values["steps_per_epoch"]) or None,
        "patch_size": patch,
        "batch_size": int(values["batch_size"]),
        "lr": lr,
        "patience": int(values["patience"]) or None,
        "augmentation": bool(values["augmentation"]),
        "device": values["device"],
        "seed": int(values["seed"]),
        "preview_every": every if preview_image is not None else 0,
        "preview_image": preview_image,
        "preview_axes": preview_axes or None,
        "description": f"{ndim}D U-Net trained in napari on {data_description}",
        "data_description": data_description,
    }
    return TrainJob(
        pairs=pairs,
        val_pairs=val_pairs,
        output=output,
        options=options,
        preview_layer=preview_layer,
        preview_axes=preview_axes,
        metric_name="AP50" if mode == "instances" else "mIoU",
        notes=tuple(notes),
    )


def resolve_output(value: Any, create: bool = True) -> pathlib.Path:
    """The absolute model file for the Save model to value (``.safetensors`` appended when missing).

    With ``create``, a missing folder is made.
    """
    output = path_or_none(value)
    if output is None:
        raise ValueError("choose where to save the model (Save model to)")
    if output.is_dir():
        raise ValueError(f"output {str(output)!r} is a folder; give a model file name such as model.safetensors")
    if not output.name.endswith(".safetensors"):
        output = output.with_name(output.name + ".safetensors")
    output = output.absolute()
    if create:
        output.parent.mkdir(parents=True, exist_ok=True)
    return output


def model_network(path: Any) -> int | None:
    """The dimensionality (2 or 3) of the network in a model file, read without torch; None if unreadable."""
    file = path_or_none(path)
    if file is None or not file.is_file():
        return None
    from ..core.model.file import read_model_info

    try:
        return int(read_model_info(file)["architecture"]["ndim"])
    except Exception:  # noqa: BLE001 - not a model file: Start says why
        return None


def _start_model_depth(path: pathlib.Path, mode: str, depth: int, ndim: int) -> int:
    """The depth of the model file to fine-tune (read without torch), after checking its mode and network."""
    if not path.is_file():
        raise FileNotFoundError(f"model file to fine-tune {str(path)!r} does not exist")
    from ..core.model.file import read_model_info

    info = read_model_info(path)  # validates without torch
    target = (info.get("spec") or {}).get("target")
    if target and target != mode:
        raise ValueError(f"the model {path.name} was trained for {target!r}; set Mode to {target!r} to fine-tune it")
    model_ndim = int(info["architecture"].get("ndim", 2))
    if model_ndim != ndim:
        raise ValueError(
            f"the model {path.name} is a {model_ndim}D network; set Network to {model_ndim}D to fine-tune it"
        )
    return int(info["architecture"].get("depth", depth))


def _check_resumed_network(output: Any, ndim: int) -> None:
    """Refuse to resume a run of the other network (its checkpoint read without torch, when it is there)."""
    try:
        last = last_paths(resolve_output(output, create=False))[0]
    except ValueError:
        return  # no output: said below
    saved = model_network(last)
    if saved is not None and saved != ndim:
        raise ValueError(
            f"the run saved at {last.name} trains a {saved}D network; set Network to {saved}D to resume it"
        )


def _pair_name(image: Any) -> str:
    if isinstance(image, LayerData):
        return repr(image.name)
    return file_stem(image) if isinstance(image, (str, os.PathLike)) else "image"
