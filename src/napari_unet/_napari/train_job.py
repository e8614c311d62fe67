"""One run of the Train panel: its options, checked in the main thread, and the worker's generator.

:func:`build_job` turns the form's values (:meth:`TrainForm.options
<napari_unet._napari.train_form.TrainForm.options>`) and the chosen layer pairs into a
:class:`TrainJob`: the training pairs (layers read by :func:`napari_unet._sources.image_source` and
checked against their labels with :func:`~napari_unet.core.image.layout.plan_layout`, or the pairs of two
folders), the output file and the keyword options of
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

from .._sources import image_source
from ..core.image.files import file_stem
from ..core.image.layout import plan_layout
from ..core.training.checkpoints import last_paths
from ..core.training.data import pairs_from_folders
from .layer_inputs import layer_data, unwrap

__all__ = [
    "DEFAULT_MODEL_DIR",
    "LayerData",
    "TrainJob",
    "TrainProgress",
    "build_job",
    "default_output",
    "last_checkpoint_paths",
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


def path_or_none(value: Any) -> pathlib.Path | None:
    """A FileEdit value as a path, or None when blank."""
    if value is None:
        return None
    text = os.fspath(value).strip()
    if text in ("", "."):
        return None
    return pathlib.Path(text).expanduser()


@dataclass(frozen=True)
class LayerData:
    """An image layer's data with its axes, handed to the core in place of the layer.

    Duck-typed like a napari layer (``data``, ``name``, ``metadata``) so the core reads the
    axes from ``metadata["axes"]`` and names it ``layer '<name>'`` in its messages, without
    the worker thread touching the layer itself.
    """

    data: Any
    name: str
    metadata: dict[str, Any]


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
    """

    pairs: list[tuple[Any, Any]]
    val_pairs: list[tuple[Any, Any]] | None
    output: pathlib.Path
    options: dict[str, Any]
    preview_layer: Image | None = None
    preview_axes: str = ""
    metric_name: str = "AP50"

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
        a row without a layer, labels of the wrong shape, a bad learning rate or patch size,
        Fine-tune with Resume, a fine-tune model of the other mode, no output file...
    FileNotFoundError
        The model file to fine-tune does not exist.
    """
    mode = values["mode"]
    depth = int(values["depth"])
    fine_tune = path_or_none(values["fine_tune"])
    resume = bool(values["resume"])
    if fine_tune is not None and resume:
        raise ValueError("choose either Fine-tune from or Resume, not both")
    if fine_tune is not None:
        depth = _fine_tune_depth(fine_tune, mode, depth)
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
    if values["source"] == "layers":
        pairs, preview_layer, data_description = _pairs_from_layers(layer_pairs)
    else:
        pairs, data_description = _pairs_from_folders(values["images_dir"], values["masks_dir"])
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
        src = image_source(preview_layer, guess=True)
        preview_axes, preview_image = str(src.axes), src.image
    else:
        preview_layer = None
    options: dict[str, Any] = {
        "val_fraction": val_fraction,
        "mode": mode,
        "model": os.fspath(fine_tune) if fine_tune is not None else None,
        "resume": resume,
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
        "description": f"U-Net trained in napari on {data_description}",
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


def channel_count(shape: Sequence[int], axes: str) -> int:
    """Channels the core feeds for an image (all of ``C``; RGB ``S`` becomes one gray channel)."""
    sizes = dict(zip(axes, shape))
    return int(sizes["C"]) if sizes.get("C", 1) > 1 else 1


def _fine_tune_depth(path: pathlib.Path, mode: str, depth: int) -> int:
    """The depth of the model file to fine-tune (read without torch), after checking its mode."""
    if not path.is_file():
        raise FileNotFoundError(f"model file to fine-tune {str(path)!r} does not exist")
    from ..core.model.file import read_model_info

    info = read_model_info(path)  # validates without torch
    target = (info.get("spec") or {}).get("target")
    if target and target != mode:
        raise ValueError(f"the model {path.name} was trained for {target!r}; set Mode to {target!r} to fine-tune it")
    return int(info["architecture"].get("depth", depth))


def _pairs_from_layers(
    layer_pairs: Sequence[tuple[Image | None, Any]],
) -> tuple[list[tuple[Any, Any]], Image | None, str]:
    """Training pairs from the rows: (:class:`LayerData`, labels array), the first image, a description."""
    pairs: list[tuple[Any, Any]] = []
    n_channels: int | None = None
    for k, (image, labels) in enumerate(layer_pairs):
        if image is None or labels is None:
            what = "an Image layer" if image is None else "a Labels layer"
            raise ValueError(f"pair {k + 1} has no {what}: open or choose one (or remove the pair)")
        src = image_source(image, guess=True)
        axes, data = str(src.axes), src.image
        if n_channels is None:
            n_channels = channel_count(data.shape, axes)
        layout = plan_layout(data.shape, axes, model_channels=n_channels, model_ndim=2, image_name=src.image_name)
        lab = layer_data(labels)
        if tuple(lab.shape) != layout.out_shape:
            raise ValueError(
                f"labels layer {labels.name!r} has shape {tuple(lab.shape)} but image layer {image.name!r} "
                f"gives {layout.out_shape} (image axes {layout.axes}, labels axes {layout.out_axes})"
            )
        metadata: dict[str, Any] = {"axes": axes}
        if src.channel_names is not None:
            metadata["channel_names"] = list(src.channel_names)
        pairs.append((LayerData(data, image.name, metadata), lab))
    if not pairs:
        raise ValueError("no training pairs: add an Image and a Labels layer")
    names = [p[0].name for p in pairs]
    description = "layers " + ", ".join(repr(n) for n in names[:5]) + (" …" if len(names) > 5 else "")
    return pairs, layer_pairs[0][0], description


def _pairs_from_folders(images_dir: Any, masks_dir: Any) -> tuple[list[tuple[Any, Any]], str]:
    """(image path, mask path) pairs of two folders, and a description."""
    images = path_or_none(images_dir)
    masks = path_or_none(masks_dir)
    if images is None or masks is None:
        raise ValueError("choose the images folder and the masks folder")
    pairs = pairs_from_folders(images, masks)
    return [(img, mask) for img, mask in pairs], f"{images} ({len(pairs)} images, masks {masks})"


def _pair_name(image: Any) -> str:
    if isinstance(image, LayerData):
        return repr(image.name)
    return file_stem(image) if isinstance(image, (str, os.PathLike)) else "image"
