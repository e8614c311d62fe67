"""The options of one training run, checked once: :class:`TrainConfig`.

:func:`~napari_unet.core.training.loop.iter_train` takes them as keyword arguments (and builds a
``TrainConfig`` from them) or as ``config=TrainConfig(...)``. Every value is checked in
``__post_init__`` with the checks of :mod:`napari_unet.core.options`; a bad value raises
``ValueError`` (``TypeError`` for a wrong type) naming the option.

``patch_size`` left at None takes the default of the network's dimensionality
(:data:`DEFAULT_PATCH_SIZE`: 256 pixels for 2D, 64 voxels for 3D) and follows ``ndim`` when a
:meth:`~TrainConfig.replace` changes it (fine-tuning a 3D model gets 3D patches); the Train panel,
``napari_unet.train`` and ``napari-unet train`` share these defaults.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..options import check_training_options

#: The patch edge of a run that does not choose one, by the network's dimensionality (``ndim``).
DEFAULT_PATCH_SIZE = {2: 256, 3: 64}

#: Options checked by :func:`~napari_unet.core.options.check_training_options`.
_CHECKED = (
    "epochs",
    "steps_per_epoch",
    "patch_size",
    "batch_size",
    "lr",
    "weight_decay",
    "dice_weight",
    "patience",
    "warmup_steps",
    "val_fraction",
    "seed",
    "preview_every",
    "ndim",
    "mode",
    "depth",
    "base_features",
    "device",
    "precision",
    "channels",
    "axes",
    "augmentation",
    "elastic",
    "noise",
    "distance_head",
)


@dataclass
class TrainConfig:
    """Everything that shapes a training run besides its data, output and starting model.

    See :func:`~napari_unet.core.training.loop.iter_train` for the meaning of each option.
    """

    mode: str = "instances"
    depth: int = 4
    base_features: int = 32
    ndim: int = 2
    upsampling: str = "interpolate"
    epochs: int = 50
    steps_per_epoch: int | None = None
    patch_size: int | None = None
    batch_size: int = 8
    lr: float = 1e-3
    weight_decay: float = 1e-4
    dice_weight: float = 1.0
    patience: int | None = None
    warmup_steps: int = 100
    val_fraction: float = 0.15
    augmentation: bool = True
    elastic: bool = False
    noise: bool = True
    device: Any = "auto"
    precision: str = "auto"
    seed: int = 0
    axes: str | None = None
    channels: Sequence[int | str] | int | str | None = None
    percentiles: tuple[float, float] = (1.0, 99.8)
    preview_every: int = 0
    distance_head: bool = True
    object_size: float | str | None = "auto"
    scale_jitter: float = 1.25
    description: str = ""
    data_description: str = ""
    #: ``patch_size`` was left to the default (it then follows ``ndim`` in :meth:`replace`).
    patch_size_default: bool = field(default=False, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.patch_size is None:
            ndim = self.ndim if self.ndim in DEFAULT_PATCH_SIZE else 2  # a bad ndim is reported below
            object.__setattr__(self, "patch_size", DEFAULT_PATCH_SIZE[ndim])
            object.__setattr__(self, "patch_size_default", True)
        checked = check_training_options(**{name: getattr(self, name) for name in _CHECKED})
        for name, value in checked.items():
            object.__setattr__(self, name, value)
        size = self.object_size
        if (
            size is not None
            and size != "auto"
            and (
                isinstance(size, (bool, str))
                or not isinstance(size, numbers.Real)
                or not math.isfinite(size)
                or size <= 0
            )
        ):
            raise ValueError(f"object_size must be a positive number of pixels, 'auto' or None, got {size!r}")
        jitter = self.scale_jitter
        if isinstance(jitter, bool) or not isinstance(jitter, (int, float)) or not 1 <= jitter <= 4:
            raise ValueError(f"scale_jitter must be a number in 1..4, got {jitter!r}")

    def replace(self, **changes: Any) -> TrainConfig:
        """A checked copy with ``changes`` (this one is left as it is); a default patch size follows ``ndim``."""
        if self.patch_size_default and "patch_size" not in changes:
            changes["patch_size"] = None
        return dataclasses.replace(self, **changes)
