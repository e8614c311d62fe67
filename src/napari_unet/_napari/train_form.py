"""The controls of the "Train U-Net" panel: widgets, labels, tooltips and layout.

:class:`TrainForm` holds no behaviour besides reading and setting its controls by name
(:meth:`~TrainForm.configure`, :meth:`~TrainForm.options`);
:class:`~napari_unet._napari.train_widget.TrainWidget` adds the callbacks. Kept apart so that
the form reads top to bottom like the panel.
"""

from __future__ import annotations

import pathlib
from typing import Any

from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FileEdit,
    FloatSpinBox,
    Label,
    LineEdit,
    PushButton,
    RadioButtons,
    SpinBox,
)
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QSizePolicy

from ..core.training.config import DEFAULT_PATCH_SIZE
from ..core.training.data import TRAIN_MODES
from .segment_job import DEVICES
from .train_curves import CurvePlot
from .train_inputs import path_or_none

__all__ = ["DEFAULT_PATCH_SIZE", "DEVICES", "NETWORKS", "TrainForm"]

#: Controls whose value is a path; None sets them blank.
_PATH_CONTROLS = ("output", "fine_tune", "images_dir", "masks_dir")
#: The Network choices: (label, ndim).
NETWORKS = (("2D", 2), ("3D", 3))
#: Controls :meth:`TrainForm.configure` sets first: they change others (the patch size follows Network).
_FIRST = ("fine_tune", "ndim")


def _heading(text: str) -> Label:
    label = Label(value=text)
    label.native.setStyleSheet("font-weight: bold; padding-top: 4px;")
    return label


def _flat(container: Container) -> Container:
    container.margins = (0, 0, 0, 0)
    return container


class TrainForm(Container):
    """The panel's controls, in display order: Data, Model, Training, Output, buttons, status, curves.

    The pair rows go in ``_pairs_box`` (see :class:`~napari_unet._napari.train_pairs.PairRows`);
    the folder controls start hidden.
    """

    def __init__(self) -> None:
        super().__init__(labels=False)
        # -- data
        self._source = RadioButtons(
            name="source",
            label="Data from",
            choices=["layers", "folders"],
            value="layers",
            orientation="horizontal",
            tooltip="Image + Labels layer pairs of this viewer, or two folders of TIFFs.",
        )
        self._pairs_box = _flat(Container(name="pairs", labels=False))
        self._add_pair_button = PushButton(name="add_pair", text="+ pair")
        self._remove_pair_button = PushButton(name="remove_pair", text="− pair")
        self._pair_buttons = _flat(
            Container(
                name="pair_buttons",
                layout="horizontal",
                labels=False,
                widgets=[self._add_pair_button, self._remove_pair_button],
            )
        )
        self._images_dir = FileEdit(
            name="images_dir", label="Images folder", mode="d", tooltip="Folder of .tif/.tiff images."
        )
        self._masks_dir = FileEdit(
            name="masks_dir",
            label="Masks folder",
            mode="d",
            tooltip="Folder of label TIFFs: a.tif pairs with a.tif, a_mask.tif, a_masks.tif, "
            "a_labels.tif or a_label.tif.",
        )
        self._folders_box = _flat(Container(name="folders", labels=True, widgets=[self._images_dir, self._masks_dir]))
        self._val_last = CheckBox(
            name="val_last",
            text="Use the last pair for validation",
            value=False,
            tooltip="Validate on the last pair (folder mode: the last image by name) "
            "instead of a random fraction of the planes.",
        )
        self._val_fraction = FloatSpinBox(
            name="val_fraction",
            label="Validation fraction",
            min=0.0,
            max=0.9,
            step=0.05,
            value=0.15,
            tooltip="Share of the planes held out for validation (seeded); 0: none.",
        )
        self._classes = Label(name="classes", label="Classes")
        self._data_options = _flat(
            Container(name="data_options", labels=True, widgets=[self._val_fraction, self._classes])
        )

        # -- model
        self._ndim = ComboBox(
            name="ndim",
            label="Network",
            choices=list(NETWORKS),
            value=2,
            tooltip="2D: learns from planes (the planes of a Z-stack are separate samples). "
            "3D: learns from ZYX volumes (the images need a Z axis; labels have the image's ZYX shape). "
            "A model to fine-tune keeps its own.",
        )
        self._mode = ComboBox(
            name="mode",
            label="Mode",
            choices=list(TRAIN_MODES),
            value="instances",
            tooltip="instances: objects that touch (background / interior / boundary); "
            "semantic: the label values are classes.",
        )
        self._depth = SpinBox(
            name="depth",
            label="Depth",
            min=1,
            max=7,
            value=4,
            tooltip="Down-sampling levels of a new U-Net; patch size must be a multiple of 2**depth.",
        )
        self._base_features = SpinBox(
            name="base_features",
            label="Base features",
            min=2,
            max=512,
            value=32,
            tooltip="Feature maps at the first level (doubled at each level).",
        )
        self._fine_tune = FileEdit(
            name="fine_tune",
            label="Fine-tune from",
            mode="r",
            filter="*.safetensors",
            tooltip="Optional: start from this model file (its architecture, channels, "
            "classes and normalisation are kept).",
        )
        self._resume = CheckBox(
            name="resume",
            text="Resume the run saved at the output file",
            value=False,
            tooltip="Continue from <output>.last.safetensors and its optimiser state.",
        )
        self._model_box = _flat(
            Container(
                name="model_box",
                labels=True,
                widgets=[self._ndim, self._mode, self._depth, self._base_features, self._fine_tune],
            )
        )

        # -- training
        self._epochs = SpinBox(name="epochs", label="Epochs", min=1, max=100000, value=50)
        self._steps = SpinBox(
            name="steps_per_epoch",
            label="Steps per epoch (0 = auto)",
            min=0,
            max=100000,
            value=0,
            tooltip="Automatic: about one pass over the training pixels (10…200).",
        )
        self._patch = SpinBox(
            name="patch_size",
            label="Patch size",
            min=8,
            max=4096,
            step=16,
            value=DEFAULT_PATCH_SIZE[2],
            tooltip="Edge of the square (3D: cubic) patches; default 256 for 2D, 64 for 3D.",
        )
        self._batch = SpinBox(name="batch_size", label="Batch size", min=1, max=1024, value=8)
        self._lr = LineEdit(
            name="lr",
            label="Learning rate",
            value="0.001",
            tooltip="Peak learning rate of AdamW (warm-up, then cosine decay).",
        )
        self._device = ComboBox(
            name="device",
            label="Device",
            choices=list(DEVICES),
            value="auto",
            tooltip="auto: CUDA GPU, else Apple MPS, else CPU.",
        )
        self._seed = SpinBox(name="seed", label="Seed", min=0, max=2**31 - 1, value=0)
        self._patience = SpinBox(
            name="patience",
            label="Patience (0 = off)",
            min=0,
            max=100000,
            value=0,
            tooltip="Stop after this many epochs without a better validation score.",
        )
        self._preview_every = SpinBox(
            name="preview_every", label="Preview every N epochs (0 = off)", min=0, max=100000, value=1
        )
        self._augmentation = CheckBox(
            name="augmentation", text="Augmentation (flips, rotations, intensity)", value=True
        )
        self._training_box = _flat(
            Container(
                name="training_box",
                labels=True,
                widgets=[
                    self._epochs,
                    self._steps,
                    self._patch,
                    self._batch,
                    self._lr,
                    self._device,
                    self._seed,
                    self._patience,
                    self._preview_every,
                ],
            )
        )

        # -- output and run
        self._output = FileEdit(
            name="output",
            label="Save model to",
            mode="w",
            filter="*.safetensors",
            tooltip="The best model goes here; <name>.last.safetensors (last epoch) beside it.",
        )
        self._output_box = _flat(Container(name="output_box", labels=True, widgets=[self._output]))
        self._start_button = PushButton(name="start_button", text="Start")
        self._stop_button = PushButton(name="stop_button", text="Stop", enabled=False)
        self._buttons = _flat(
            Container(
                name="buttons", layout="horizontal", labels=False, widgets=[self._start_button, self._stop_button]
            )
        )
        self._status = Label(name="status", value="idle")
        self._plot = CurvePlot()

        self.extend(
            [
                _heading("Data"),
                self._source,
                self._pairs_box,
                self._pair_buttons,
                self._folders_box,
                self._val_last,
                self._data_options,
                _heading("Model"),
                self._model_box,
                self._resume,
                _heading("Training"),
                self._training_box,
                self._augmentation,
                _heading("Output"),
                self._output_box,
                self._buttons,
                self._status,
                self._plot.container,
            ]
        )
        for label in (self._classes, self._status):
            # QLabel word wrap mis-sizes labels inside napari's dock scroll area; wrap_text() instead
            label.native.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
            label.native.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
            label.native.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self._folders_box.visible = False

        self._controls: dict[str, Any] = {
            "source": self._source,
            "images_dir": self._images_dir,
            "masks_dir": self._masks_dir,
            "val_last": self._val_last,
            "val_fraction": self._val_fraction,
            "ndim": self._ndim,
            "mode": self._mode,
            "depth": self._depth,
            "base_features": self._base_features,
            "fine_tune": self._fine_tune,
            "resume": self._resume,
            "epochs": self._epochs,
            "steps_per_epoch": self._steps,
            "patch_size": self._patch,
            "batch_size": self._batch,
            "lr": self._lr,
            "device": self._device,
            "seed": self._seed,
            "patience": self._patience,
            "preview_every": self._preview_every,
            "augmentation": self._augmentation,
            "output": self._output,
        }

    # ------------------------------------------------------------------ reading and setting
    @property
    def status(self) -> str:
        """The status text (line breaks folded)."""
        return " ".join(str(self._status.value).split())

    @property
    def classes_text(self) -> str:
        """The Classes line (line breaks folded)."""
        return " ".join(str(self._classes.value).split())

    @property
    def output_path(self) -> pathlib.Path | None:
        """The output file as typed (None when blank)."""
        return path_or_none(self._output.value)

    def configure(self, **options: Any) -> None:
        """Set controls by name, e.g. ``configure(epochs=5, patch_size=64, output="m.safetensors")``.

        Names: ``source`` ("layers"/"folders"), ``images_dir``, ``masks_dir``, ``val_last``,
        ``val_fraction``, ``ndim`` (Network: 2 or 3), ``mode``, ``depth``, ``base_features``,
        ``fine_tune``, ``resume``, ``epochs``, ``steps_per_epoch``, ``patch_size``, ``batch_size``,
        ``lr``, ``device``, ``seed``, ``patience``, ``preview_every``, ``augmentation``, ``output``.
        ``fine_tune`` and ``ndim`` are set first, so a ``patch_size`` given with them wins over
        the default patch size they bring.

        Raises
        ------
        KeyError
            For an unknown name.
        """
        unknown = sorted(set(options) - set(self._controls))
        if unknown:
            raise KeyError(f"unknown option(s) {unknown}; known: {sorted(self._controls)}")
        for name in sorted(options, key=lambda n: _FIRST.index(n) if n in _FIRST else len(_FIRST)):
            value = options[name]
            if name == "lr":
                value = str(value)
            elif name in _PATH_CONTROLS and (value is None or value == ""):
                # FileEdit.value = "" would give the working folder; a blank line edit reads as Path(".")
                self._controls[name].line_edit.value = ""
                continue
            self._controls[name].value = value

    def options(self) -> dict[str, Any]:
        """The current value of every control (see :meth:`configure`)."""
        return {name: widget.value for name, widget in self._controls.items()}
