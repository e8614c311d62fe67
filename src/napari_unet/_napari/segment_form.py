"""The controls of the "Segment with U-Net" panel: widgets, labels, tooltips and layout.

:class:`SegmentForm` holds no behaviour; :class:`~napari_unet._napari.segment_widget.SegmentWidget`
adds the callbacks. Kept apart so that the form reads top to bottom like the panel, and the
panel's logic is not buried in widget construction.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
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
    Select,
    SpinBox,
)
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QSizePolicy

from ..core.image.axes import parse_channels
from .block_controls import BlockControls
from .segment_job import DEVICES, OUTPUTS, PRECISIONS, Z_MODES

__all__ = ["SegmentForm", "wrap_text"]


def wrap_text(text: str, width: int = 48) -> str:
    """Break each line of ``text`` at ``width`` characters (labels are not word-wrapped by Qt)."""
    return "\n".join(
        "\n".join(textwrap.wrap(line, width, break_long_words=True, break_on_hyphens=False)) or line
        for line in text.splitlines()
    )


#: Controls whose 0 means "choose automatically" (None in :meth:`SegmentForm.options`).
_AUTO_ZERO = ("tile_size", "halo", "batch_size", "object_size", "anisotropy", "block_size")


class SegmentForm(Container):
    """The panel's controls, in display order; the Advanced options start hidden.

    The Image, More channel layers and Model boxes start empty: the widget gives them their
    choice callbacks once it knows the viewer.
    """

    def __init__(self) -> None:
        super().__init__(labels=True)
        # -- image
        self._image = ComboBox(
            name="image",
            label="Image",
            tooltip="The Image layer to segment; follows the layer selected in the layer list.",
        )
        self._extra = Select(
            name="extra_channels",
            label="More channel layers",
            tooltip="Single-channel Image layers of the same shape, stacked after the image as "
            "further model input channels (in this order). Ctrl-click to (un)select.",
        )
        self._extra.native.setMaximumHeight(70)
        self._axes_info = Label(name="axes_info", label="Reads")
        self._axes = LineEdit(
            name="axes",
            label="Axes",
            tooltip="Correct the layer's axes, e.g. ZCYX, TYX, YXS. Blank: from the layer "
            "(napari-unet's reader records them) or guessed.",
        )
        self._channels = LineEdit(
            name="channels",
            label="Channels",
            tooltip="Channels to feed the model, by index ('0,1') or name ('DNA, membrane'). Blank: all channels.",
        )
        # -- model
        self._model = ComboBox(name="model", label="Model", tooltip="Built-in and recently used model files.")
        self._browse = FileEdit(
            name="browse",
            label="Browse…",
            mode="r",
            filter="*.safetensors *.zip",
            tooltip="Add a napari-unet model file (.safetensors), or a bioimage.io package (.zip) "
            "exported by napari-unet.",
        )
        self._model_info = Label(name="model_info", label="About model")
        # -- options
        self._output = ComboBox(
            name="output",
            label="Output",
            choices=list(OUTPUTS),
            value="instances",
            tooltip="instances: one label per object; semantic: class index per pixel; "
            "probabilities: class probabilities as an Image layer.",
        )
        self._tile_size = SpinBox(name="tile_size", label="Tile size (0 = auto)", min=0, max=8192, step=16, value=0)
        self._device = ComboBox(
            name="device",
            label="Device",
            choices=list(DEVICES),
            value="auto",
            tooltip="auto: CUDA GPU, else Apple MPS, else CPU.",
        )
        self._device_info = Label(name="runs_on", label="Runs on")  # filled by device_info.DeviceInfo
        self._min_size = SpinBox(name="min_size", label="Minimum object size (px)", min=0, max=10**9, value=0)
        self._object_size = FloatSpinBox(
            name="object_size",
            label="Object diameter (px, 0 = auto)",
            min=0,
            max=2000,
            step=1,
            value=0,
            tooltip="Typical object diameter in this image. The image is zoomed so objects match the size "
            "the model was trained on (shown under About model). 0: models that find the object size "
            "by themselves (the built-in nuclei model) estimate it and the result says what they "
            "found; other models leave the image as it is.",
        )
        self._show_advanced = CheckBox(name="show_advanced", text="Advanced options", value=False)
        self._halo = SpinBox(
            name="halo",
            label="Halo (0 = auto)",
            min=0,
            max=1024,
            value=0,
            tooltip="Context pixels added on each side of a tile.",
        )
        self._batch_size = SpinBox(name="batch_size", label="Batch size (0 = auto)", min=0, max=256, value=0)
        self._precision = ComboBox(
            name="precision",
            label="Precision",
            choices=list(PRECISIONS),
            value="auto",
            tooltip="auto: bfloat16/float16 autocast on CUDA, bfloat16 on CPUs with native bf16 "
            "(AVX-512 BF16, AMX), float32 elsewhere.",
        )
        self._tta = CheckBox(
            name="tta",
            text="Test-time augmentation (8× slower)",
            value=False,
            tooltip="Also run every tile flipped and rotated (8 views), turn the outputs "
            "back and average the probabilities: smoother, usually slightly better "
            "labels for about 8 times the time. For final results, not for trying "
            "settings.",
        )
        self._track = CheckBox(
            name="track",
            text="Same label across frames (T)",
            value=True,
            tooltip="Time-lapses (a T axis), instances: an object keeps its label in every frame "
            "(matched by overlap with the previous frames; it may be missing for up to 2 frames). "
            "Off: each frame's objects get their own labels.",
        )
        self._tracks_layer = CheckBox(
            name="tracks_layer",
            text="Tracks layer",
            value=False,
            tooltip="Time-lapses: also add a Tracks layer with each object's centroid over time.",
        )
        # z-stacks with a 2D model (core/labels/zstack.py)
        self._z_mode = ComboBox(
            name="z_mode",
            label="Z-stacks",
            choices=list(Z_MODES),
            value=Z_MODES[0],
            tooltip="Z-stacks segmented by a 2D model (instances). 3d: 3D objects, a 3D watershed of the "
            "planes' predictions; stitch: each plane's objects linked to the next plane's by overlap; "
            "planes: independent labels per plane; 3d-ortho: also predict on the XZ and YZ planes "
            "(slower; needs the anisotropy).",
        )
        self._anisotropy = FloatSpinBox(
            name="anisotropy",
            label="Z anisotropy (0 = layer scale)",
            min=0,
            max=100,
            step=0.1,
            value=0,
            tooltip="Z spacing / XY spacing of a z-stack. 0: from the layer's scale (napari-unet's "
            "reader sets it from the file's calibration). Used by 3d-ortho.",
        )
        # large results: block-wise on dask into OME-Zarr labels (block_controls.py)
        self._blocks = BlockControls(self._image)
        self._advanced = Container(
            name="advanced",
            label=" ",
            widgets=[
                self._halo,
                self._batch_size,
                self._precision,
                self._tta,
                self._track,
                self._tracks_layer,
                self._z_mode,
                self._anisotropy,
                *self._blocks.widgets,
            ],
            labels=True,
        )
        self._advanced.margins = (0, 0, 0, 0)
        # -- run
        self._run_button = PushButton(name="run_button", text="Run")
        self._cancel_button = PushButton(name="cancel_button", text="Cancel", enabled=False)
        self._buttons = Container(
            name="buttons",
            label=" ",
            widgets=[self._run_button, self._cancel_button],
            layout="horizontal",
            labels=False,
        )
        self._buttons.margins = (0, 0, 0, 0)
        self._status = Label(name="status", label="Status", value="idle")

        self.extend(
            [
                self._image,
                self._extra,
                self._axes_info,
                self._axes,
                self._channels,
                self._model,
                self._browse,
                self._model_info,
                self._output,
                self._tile_size,
                self._device,
                self._device_info,
                self._min_size,
                self._object_size,
                self._show_advanced,
                self._advanced,
                self._buttons,
                self._status,
            ]
        )
        for label in (self._axes_info, self._model_info, self._device_info, self._status):
            # QLabel word wrap mis-sizes labels inside napari's dock scroll area; wrap_text() instead
            label.native.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
            label.native.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        self._advanced.visible = False
        self._show_advanced.changed.connect(self.show_advanced)

    @property
    def blocks(self) -> BlockControls:
        """The block-wise controls; ``blocks.workers`` and ``blocks.client`` choose the dask cluster."""
        return self._blocks

    def show_advanced(self, show: bool = True) -> None:
        """Show (or hide) the Advanced options, as ticking the "Advanced options" box does."""
        self._show_advanced.value = bool(show)
        self._advanced.visible = bool(show)

    # ------------------------------------------------------------------ options by name
    def _option_controls(self) -> dict[str, Any]:
        return {
            "model": self._model,
            "axes": self._axes,
            "channels": self._channels,
            "output": self._output,
            "tile_size": self._tile_size,
            "device": self._device,
            "min_size": self._min_size,
            "object_size": self._object_size,
            "halo": self._halo,
            "batch_size": self._batch_size,
            "precision": self._precision,
            "tta": self._tta,
            "track": self._track,
            "tracks_layer": self._tracks_layer,
            "z_mode": self._z_mode,
            "anisotropy": self._anisotropy,
            **self._blocks.controls(),
        }

    def options(self) -> dict[str, Any]:
        """The current choices as keyword arguments like those of :func:`napari_unet.segment`
        (``output`` is its ``mode``, or ``"probabilities"``): ``model`` (file path or None),
        ``axes`` and ``channels`` (None when blank), ``output``, ``min_size``, ``object_size``,
        ``tile_size``, ``halo``, ``batch_size`` (None for 0 = auto), ``device``, ``precision``, ``tta``,
        ``track`` (time-lapses: labels matched across frames), ``tracks_layer`` (also add a
        Tracks layer), ``z_mode``, ``anisotropy`` (None for 0 = from the layer's scale), and for large
        results ``block_wise``, ``large_results_to`` (a path), ``resume``, ``block_size`` (None for 0 = 1024)."""
        values = {name: widget.value for name, widget in self._option_controls().items()}
        for name in _AUTO_ZERO:
            values[name] = values[name] or None
        values["axes"] = values["axes"].strip() or None
        values["channels"] = parse_channels(values["channels"])
        return values

    def configure(self, **options: Any) -> None:
        """Set controls by name, e.g. ``configure(device="cpu", tile_size=256, tta=True)``.

        Names are those of :meth:`options`; None sets ``axes``, ``channels`` to blank and
        ``tile_size``, ``halo``, ``batch_size``, ``object_size``, ``block_size`` to 0 (auto). ``channels`` may
        be a list (``[0, 1]``, ``["DNA", "membrane"]``) or a string (``"0,1"``); None sets ``anisotropy``
        to 0 (from the layer's scale). ``model``
        takes a model file (see ``set_model``).

        Raises
        ------
        KeyError
            For an unknown name.
        """
        controls = self._option_controls()
        unknown = sorted(set(options) - set(controls))
        if unknown:
            raise KeyError(f"unknown option(s) {unknown}; known: {sorted(controls)}")
        for name, value in options.items():
            if name == "model":
                self._choose_model(value)
                continue
            if value is None and (name in _AUTO_ZERO or name in ("axes", "channels")):
                value = 0 if name in _AUTO_ZERO else ""
            elif name == "channels" and not isinstance(value, str):
                items = [value] if isinstance(value, int) or not isinstance(value, Sequence) else value
                value = ", ".join(str(v) for v in items)
            controls[name].value = value

    def _choose_model(self, path: Any) -> None:
        self._model.value = path

    def _stack_options(self) -> dict[str, Any]:
        """The time-lapse options (``track``, ``tracks_layer``), ``z_mode`` and the ``anisotropy`` given
        (None: from the layer's scale) for a :class:`SegmentJob`."""
        return {
            "track": bool(self._track.value),
            "tracks_layer": bool(self._tracks_layer.value),
            "z_mode": self._z_mode.value,
            "anisotropy": float(self._anisotropy.value) or None,
        }
