"""The Train panel's (Image, Labels) pair rows, and the classes a model would learn from them.

:class:`PairRows` owns the rows of the Data section: it offers the viewer's Image and Labels
layers (never the panel's own preview layers), starts a new row on an unused image and a labels
layer whose shape fits it, and picks fitting labels again when the image changes.
:func:`classes_text` says what the model will learn from the chosen labels, reading large
layers with a stride (:func:`label_values`) so that it stays instant while one paints.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from magicgui.widgets import ComboBox, Container, PushButton
from napari.layers import Image, Labels

from .._sources import image_source
from ..core.training.targets import INSTANCE_CLASSES
from .layer_inputs import layer_data, unwrap
from .train_preview import is_preview_layer

__all__ = ["INSTANCE_CLASS_NAMES", "PairRows", "classes_text", "expected_labels_shape", "label_values"]

#: The classes an instance model learns.
INSTANCE_CLASS_NAMES = tuple(INSTANCE_CLASSES)
#: Labels layers larger than this many pixels are subsampled to list their values.
CLASS_SAMPLE = 1 << 22


def label_values(data: Any, limit: int = CLASS_SAMPLE) -> tuple[np.ndarray, bool]:
    """Values found in a labels array, cheaply.

    Parameters
    ----------
    data : array-like or list of arrays
        A labels layer's data (a multiscale list: its smallest level is used).
    limit : int
        Arrays with more pixels are read with a stride in every axis (about ``limit`` pixels).

    Returns
    -------
    (ndarray, bool)
        The sorted unique values and whether they come from a subsample.
    """
    if isinstance(data, (list, tuple)):
        data = data[-1]
    size = int(np.prod(data.shape)) if data.shape else 1
    sampled = size > limit
    if sampled:
        step = int(math.ceil((size / limit) ** (1.0 / max(1, len(data.shape)))))
        data = data[tuple(slice(None, None, step) for _ in data.shape)]
    return np.unique(np.asarray(data)), sampled


def classes_text(mode: str, labels_data: Sequence[Any] | None) -> str:
    """The Classes line: what a model of ``mode`` learns from ``labels_data``.

    ``labels_data`` is the data of the chosen Labels layers, or None for folders (not read
    before training starts). Empty labels, or a single value in semantic mode, give a warning (⚠).
    """
    instance_classes = "classes: " + ", ".join(INSTANCE_CLASS_NAMES)
    if labels_data is None:
        return (
            instance_classes
            if mode == "instances"
            else "classes: the values found in the masks (read when training starts)"
        )
    if not labels_data:
        return "no Labels layer chosen"
    values: set[int] = set()
    sampled = False
    for data in labels_data:
        found, sub = label_values(data)
        values.update(int(v) for v in found)
        sampled |= sub
    approx = " (in a subsample)" if sampled else ""
    nonzero = sorted(v for v in values if v != 0)
    if mode == "instances":
        if not nonzero:
            return "⚠ the labels are empty (all 0): annotate some objects first"
        return f"{instance_classes}\n{len(nonzero)} object ids{approx}"
    names = [f"{v} (background)" if v == 0 else str(v) for v in sorted(values)]
    if len(values) < 2:
        return f"⚠ a single value ({', '.join(names)}) found: semantic training needs at least 2 classes"
    return f"classes: {', '.join(names[:12])}{' …' if len(names) > 12 else ''}{approx}"


def expected_labels_shape(image: Image) -> tuple[int, ...] | None:
    """The shape labels for ``image`` must have (its data's shape without ``C``/``S``), None if unknown."""
    try:
        src = image_source(image, guess=True)
    except ValueError:
        return None
    shape = tuple(int(n) for n in src.image.shape)
    return tuple(n for a, n in zip(str(src.axes), shape) if a not in "CS")


class PairRows:
    """The (Image, Labels) rows of the Data section.

    Parameters
    ----------
    viewer : napari.viewer.Viewer
        Where the layers come from.
    box : magicgui.widgets.Container
        The container the rows go in.
    remove_button : magicgui.widgets.PushButton
        The "− pair" button, enabled while there is more than one row.
    on_change : callable
        Called without arguments when a row is added or removed, or a choice changes.
    """

    def __init__(self, viewer: Any, box: Container, remove_button: PushButton, on_change: Callable[[], Any]) -> None:
        self._viewer = viewer
        self._box = box
        self._remove_button = remove_button
        self._on_change = on_change
        self.rows: list[tuple[Container, ComboBox, ComboBox]] = []

    # ------------------------------------------------------------------ choices
    def image_layers(self) -> list[Image]:
        return [unwrap(layer) for layer in self._viewer.layers if isinstance(layer, Image)]

    def labels_layers(self) -> list[Labels]:
        """The viewer's Labels layers, without the preview layers."""
        return [
            unwrap(layer) for layer in self._viewer.layers if isinstance(layer, Labels) and not is_preview_layer(layer)
        ]

    def image_choices(self, _widget: Any = None) -> list[tuple[str, Image]]:
        return [(layer.name, layer) for layer in self.image_layers()]

    def labels_choices(self, _widget: Any = None) -> list[tuple[str, Labels]]:
        return [(layer.name, layer) for layer in self.labels_layers()]

    def pick_labels(self, image: Image | None, exclude: Sequence[Any] = ()) -> Labels | None:
        """The first Labels layer whose shape fits ``image`` (preferring ones not in ``exclude``)."""
        layers = self.labels_layers()
        if image is not None:
            expected = expected_labels_shape(image)
            fitting = [lay for lay in layers if tuple(layer_data(lay).shape) == expected]
        else:
            fitting = layers
        free = [lay for lay in fitting if not any(lay is e for e in exclude)]
        return (free or fitting or [None])[0]

    # ------------------------------------------------------------------ rows
    @property
    def pairs(self) -> list[tuple[Image | None, Labels | None]]:
        """The (image layer, labels layer) chosen in each row."""
        return [(img.value, lab.value) for _, img, lab in self.rows]

    @property
    def labels(self) -> list[Labels]:
        """The Labels layers chosen (rows without one skipped)."""
        return [lab.value for _, _, lab in self.rows if lab.value is not None]

    def add(self, image: Image | None = None, labels: Labels | None = None) -> None:
        """Add a row of (Image, Labels) boxes.

        Without arguments the row starts on the first image layer not used in another row
        and the first labels layer of that image's shape (likewise not used, if possible).
        """
        used_images = [img.value for _, img, _ in self.rows]
        used_labels = [lab.value for _, _, lab in self.rows]
        image_box = ComboBox(name="image", choices=self.image_choices, tooltip="Image layer")
        labels_box = ComboBox(name="labels", choices=self.labels_choices, tooltip="Labels layer of that image")
        row = Container(
            name=f"pair_{len(self.rows)}", layout="horizontal", labels=False, widgets=[image_box, labels_box]
        )
        row.margins = (0, 0, 0, 0)
        self.rows.append((row, image_box, labels_box))
        self._box.append(row)
        if image is None:
            layers = self.image_layers()
            image = next((lay for lay in layers if not any(lay is u for u in used_images)), None)
            image = image if image is not None else (layers[0] if layers else None)
        if image is not None:
            image_box.value = unwrap(image)
        if labels is None:
            labels = self.pick_labels(image_box.value, used_labels)
        if labels is not None:
            labels_box.value = unwrap(labels)
        image_box.changed.connect(lambda *_: self._on_image_changed(image_box, labels_box))
        labels_box.changed.connect(lambda *_: self._on_change())
        self._remove_button.enabled = len(self.rows) > 1
        self._on_change()

    def remove(self) -> None:
        """Remove the last row (one row always stays)."""
        if len(self.rows) <= 1:
            return
        row, _, _ = self.rows.pop()
        self._box.remove(row)
        self._remove_button.enabled = len(self.rows) > 1
        self._on_change()

    def set(self, index: int, image: Image, labels: Labels) -> None:
        """Choose ``image`` and ``labels`` in row ``index`` (rows are added as needed)."""
        while len(self.rows) <= index:
            self.add()
        _, image_box, labels_box = self.rows[index]
        image_box.reset_choices()
        labels_box.reset_choices()
        image_box.value = unwrap(image)
        labels_box.value = unwrap(labels)

    def refresh(self) -> None:
        """Follow the viewer's layers: new choices, and labels for rows that had none."""
        for _, image_box, labels_box in self.rows:
            before = labels_box.value
            image_box.reset_choices()
            labels_box.reset_choices()
            if before is None and image_box.value is not None:
                self._pick_for(image_box.value, labels_box)

    def _pick_for(self, image: Image, labels_box: ComboBox) -> None:
        others = [lab.value for _, _, lab in self.rows if lab is not labels_box]
        pick = self.pick_labels(image, others)
        if pick is not None:
            labels_box.value = pick

    def _on_image_changed(self, image_box: ComboBox, labels_box: ComboBox) -> None:
        image = image_box.value
        current = labels_box.value
        if image is not None and (current is None or tuple(layer_data(current).shape) != expected_labels_shape(image)):
            self._pick_for(image, labels_box)
        self._on_change()
