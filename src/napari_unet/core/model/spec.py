"""What a model expects and produces, besides its weights: :class:`ModelSpec`.

Stored in the model file next to the architecture (see ``docs/model-file.md``). Plain data,
no torch import.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np

TARGETS = ("semantic", "instances")
POSTPROCESS_KEYS = ("seed_threshold", "min_seed_size", "keep_seedless", "fill_holes", "foreground_threshold")


@dataclass
class ModelSpec:
    """Description of a model's input and output.

    Attributes
    ----------
    channel_names : list of str
        One name per input channel, in the order the network takes them.
    class_names : list of str
        One name per output class; class 0 is background.
    target : {"semantic", "instances"}
        ``"instances"`` models were trained on background / interior / boundary targets and
        their labels come from a seeded watershed; ``"semantic"`` models predict classes.
    boundary_class : int or None
        Index of the boundary class for instance models.
    normalization : dict
        ``{"method": "percentile", "low": 1.0, "high": 99.8}``: per-channel percentiles
        over the whole image mapped to 0 and 1.
    axes : str
        Spatial axes the network runs on: ``"YX"`` (2D) or ``"ZYX"`` (3D).
    pixel_size : list of float or None
        Physical pixel size (per spatial axis) of the training data, if known.
    object_size : float or None
        Typical object diameter in pixels in the training data, if known.
    description : str
        Free text shown to users.
    training : dict
        Training record: data, epochs, metrics, ... (free form, JSON-serialisable).
    postprocess : dict
        Instance post-processing settings for this model, passed to
        :func:`~napari_unet.core.labels.probabilities.instance_labels` (``seed_threshold``,
        ``min_seed_size``, ``keep_seedless``, ``fill_holes``, ``foreground_threshold``); empty
        means the defaults.
    halo : int or None
        Context in pixels the tiler gives each tile: the network's measured effective
        receptive radius (see :mod:`~napari_unet.core.inference.halo`); None: measured when needed.
    size_model : dict or None
        Regression of the object diameter from the network's style
        (:func:`~napari_unet.core.inference.sizing.fit_size_model`): with it, images are zoomed to
        ``object_size`` without being told their object size. None: no estimate.
    """

    channel_names: list[str] = field(default_factory=lambda: ["channel 0"])
    class_names: list[str] = field(default_factory=lambda: ["background", "foreground"])
    target: str = "semantic"
    boundary_class: int | None = None
    normalization: dict[str, Any] = field(default_factory=lambda: {"method": "percentile", "low": 1.0, "high": 99.8})
    axes: str = "YX"
    pixel_size: list[float] | None = None
    object_size: float | None = None
    description: str = ""
    training: dict[str, Any] = field(default_factory=dict)
    postprocess: dict[str, Any] = field(default_factory=dict)
    halo: int | None = None
    size_model: dict[str, Any] | None = None

    @classmethod
    def default(cls, in_channels: int, n_classes: int, ndim: int = 2) -> ModelSpec:
        """A spec with generic names matching an architecture."""
        if n_classes == 1:
            classes = ["foreground"]
        elif n_classes == 2:
            classes = ["background", "foreground"]
        else:
            classes = ["background"] + [f"class {i}" for i in range(1, n_classes)]
        return cls(
            channel_names=[f"channel {i}" for i in range(in_channels)],
            class_names=classes,
            axes="ZYX" if ndim == 3 else "YX",
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelSpec:
        """Build from a dict; unknown keys are ignored (newer writers may add some)."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    @property
    def percentiles(self) -> tuple[float, float]:
        return float(self.normalization.get("low", 1.0)), float(self.normalization.get("high", 99.8))

    def check_against(self, config: dict[str, Any]) -> None:
        """Raise ValueError when the spec contradicts the architecture ``config``."""
        if len(self.channel_names) != config["in_channels"]:
            raise ValueError(
                f"spec names {len(self.channel_names)} channels {self.channel_names} but the "
                f"network takes {config['in_channels']}"
            )
        if len(self.class_names) != config["n_classes"]:
            raise ValueError(
                f"spec names {len(self.class_names)} classes {self.class_names} but the "
                f"network outputs {config['n_classes']}"
            )
        if self.target not in TARGETS:
            raise ValueError(f"target must be one of {TARGETS}, got {self.target!r}")
        if self.boundary_class is not None and not 0 < self.boundary_class < config["n_classes"]:
            raise ValueError(
                f"boundary_class {self.boundary_class} is not a class index in 1..{config['n_classes'] - 1}"
            )
        expected_axes = "ZYX" if config["ndim"] == 3 else "YX"
        if self.axes != expected_axes:
            raise ValueError(f"spec axes {self.axes!r} do not match a {config['ndim']}D network ({expected_axes!r})")
        unknown = set(self.postprocess) - set(POSTPROCESS_KEYS)
        if unknown:
            raise ValueError(f"unknown post-processing settings {sorted(unknown)}; known: {list(POSTPROCESS_KEYS)}")
        fg = self.postprocess.get("foreground_threshold")
        if fg is not None and not (_positive(fg, zero=True) and fg <= 1):
            raise ValueError(f"post-processing foreground_threshold must be a number in 0..1 or null, got {fg!r}")
        if self.object_size is not None and not _positive(self.object_size, zero=True):
            raise ValueError(f"object_size must be a positive number of pixels or null, got {self.object_size!r}")
        if self.pixel_size is not None and (
            not isinstance(self.pixel_size, (list, tuple)) or not all(_positive(p) for p in self.pixel_size)
        ):
            raise ValueError(f"pixel_size must be a list of positive numbers or null, got {self.pixel_size!r}")
        if self.halo is not None and (isinstance(self.halo, bool) or not isinstance(self.halo, int) or self.halo < 0):
            raise ValueError(f"halo must be a non-negative integer (pixels) or None, got {self.halo!r}")
        if self.size_model is not None:
            check_size_model(self.size_model, 2 * config["base_features"] * 2 ** config["depth"])
            if not self.object_size:
                raise ValueError("size_model needs object_size (the diameter images are zoomed to)")
        low, high = self.percentiles
        if not 0 <= low < high <= 100:
            raise ValueError(f"normalisation percentiles must satisfy 0 <= low < high <= 100, got {low}, {high}")


def _positive(value: Any, zero: bool = False) -> bool:
    """A finite number > 0 (>= 0 with ``zero``), not a bool."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return False
    return value >= 0 if zero else value > 0


def check_size_model(size_model: Any, n_features: int | None = None) -> None:
    """Raise ValueError when a stored size model is not what :func:`fit_size_model` writes."""
    if size_model is None:
        return
    if not isinstance(size_model, dict):
        raise ValueError(f"size_model must be an object, got {type(size_model).__name__}")
    for key in ("mean", "scale", "weights", "bias"):
        if key not in size_model:
            raise ValueError(f"size_model lacks {key!r}")
    lengths = {len(size_model[k]) for k in ("mean", "scale", "weights")}
    if len(lengths) != 1 or (n_features is not None and lengths != {n_features}):
        raise ValueError(f"size_model vectors must all have {n_features or 'the same'} entries, got {sorted(lengths)}")
    values = np.concatenate([np.asarray(size_model[k], np.float64) for k in ("mean", "scale", "weights")])
    if not np.all(np.isfinite(values)) or not math.isfinite(float(size_model["bias"])):
        raise ValueError("size_model holds non-finite numbers")
    if np.any(np.asarray(size_model["scale"], np.float64) <= 0):
        raise ValueError("size_model scales must be positive")
