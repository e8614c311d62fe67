"""How an image's axes map onto what a model needs: :class:`Layout` and :func:`plan_layout`.

:func:`plan_layout` decides, for one image and one model, which axis holds the channels,
which channels feed the network and in what order, which axes are iterated (``T``, other
leading axes, and ``Z`` for a 2D model) and which are the spatial axes. The output of a
prediction keeps every non-channel axis of the input, in the input's order. Axes strings
themselves are described in :mod:`~napari_unet.core.image.axes`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .axes import GRAY_WEIGHTS, validate_axes
from .checks import check_not_empty

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Layout:
    """How one image feeds one model.

    Attributes
    ----------
    axes : str
        The image's axes.
    shape : tuple of int
        The image's shape.
    channel_axis : str or None
        ``"C"`` or ``"S"`` when that axis feeds the channels, else None.
    channels : tuple of int
        Indices along ``channel_axis`` fed to the network, in order (empty when none).
    to_gray : bool
        RGB samples are converted to one gray channel.
    loop_axes : str
        Iterated axes, in input order.
    spatial_axes : str
        ``"YX"`` or ``"ZYX"``.
    """

    axes: str
    shape: tuple[int, ...]
    channel_axis: str | None
    channels: tuple[int, ...]
    to_gray: bool
    loop_axes: str
    spatial_axes: str

    # ------------------------------------------------------------------ derived
    @property
    def work_axes(self) -> str:
        """Axes of :meth:`arrange`'s view: loop axes, channel slot ``C``, spatial axes."""
        return self.loop_axes + "C" + self.spatial_axes

    @property
    def out_axes(self) -> str:
        """Axes of the result: the input's axes without the channel axis, input order."""
        return "".join(a for a in self.axes if a != self.channel_axis)

    @property
    def out_shape(self) -> tuple[int, ...]:
        return tuple(s for a, s in zip(self.axes, self.shape) if a != self.channel_axis)

    @property
    def loop_shape(self) -> tuple[int, ...]:
        return tuple(self.shape[self.axes.index(a)] for a in self.loop_axes)

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        return tuple(self.shape[self.axes.index(a)] for a in self.spatial_axes)

    @property
    def n_channels(self) -> int:
        return 1 if self.to_gray or self.channel_axis is None else len(self.channels)

    def arrange(self, image: Any) -> Any:
        """Lazy view of ``image`` with axes :attr:`work_axes` (a channel slot of size 1 is added
        when the image has no channel axis). Works on numpy, memmap and dask arrays."""
        order = [self.axes.index(a) for a in self.loop_axes]
        if self.channel_axis is not None:
            order.append(self.axes.index(self.channel_axis))
        order += [self.axes.index(a) for a in self.spatial_axes]
        view = image.transpose(order) if hasattr(image, "transpose") else np.transpose(image, order)
        if self.channel_axis is None:
            lead = len(self.loop_axes)
            view = view[(slice(None),) * lead + (None,)]
        return view

    def select(self, block: np.ndarray, raw: bool = False) -> np.ndarray:
        """Pick (or convert) the model's channels from ``block`` (C_image, ...) → float32 (C_model, ...).

        With ``raw`` the picked channels keep their dtype (RGB → gray is float32 anyway).
        """
        if self.channel_axis is None:
            return block if raw else block.astype(np.float32, copy=False)
        if self.to_gray:
            rgb = block[:3].astype(np.float32, copy=False)
            w = np.asarray(GRAY_WEIGHTS, dtype=np.float32).reshape((3,) + (1,) * (rgb.ndim - 1))
            return (rgb * w).sum(axis=0, keepdims=True)
        picked = block[list(self.channels)]
        return picked if raw else picked.astype(np.float32, copy=False)

    def to_output_order(self, array: np.ndarray, lead: int = 0) -> np.ndarray:
        """Transpose ``array`` from (``lead`` extra axes, *loop, *spatial) to (``lead``, *out_axes)."""
        work = self.loop_axes + self.spatial_axes
        order = list(range(lead)) + [lead + work.index(a) for a in self.out_axes]
        return array.transpose(order)

    def describe(self) -> str:
        """One line a user can check, e.g. ``axes ZCYX: channels C[1, 0], per plane over Z``."""
        parts = [f"axes {self.axes}"]
        if self.channel_axis is None:
            parts.append("no channel axis")
        elif self.to_gray:
            parts.append(f"RGB {self.channel_axis} converted to gray")
        else:
            parts.append(f"channels {self.channel_axis}{list(self.channels)}")
        parts.append(f"spatial {self.spatial_axes}")
        if self.loop_axes:
            parts.append(f"iterating over {self.loop_axes}")
        return ", ".join(parts)


def plan_layout(
    shape: Sequence[int],
    axes: str,
    *,
    model_channels: int,
    model_ndim: int = 2,
    channels: int | str | Sequence[int | str] | None = None,
    channel_names: Sequence[str] | None = None,
    model_channel_names: Sequence[str] | None = None,
    image_name: str = "image",
) -> Layout:
    """Decide how an image of ``shape``/``axes`` feeds a model.

    Parameters
    ----------
    shape, axes
        The image's shape and axes string (validated here).
    model_channels : int
        Input channels the network takes.
    model_ndim : int
        2 (planes; ``Z`` is iterated) or 3 (volumes; ``Z`` is spatial).
    channels : int, str or sequence of them, optional
        Channels to feed, by index or by name (names looked up in ``channel_names``).
        Default: all channels, which must then match ``model_channels``.
    channel_names : sequence of str, optional
        Names of the image's channels (from its file or layer).
    model_channel_names : sequence of str, optional
        Only used in error messages.
    image_name : str
        Used in error messages.

    Raises
    ------
    ValueError
        An axis of length 0, the channel count does not match the model, a channel index/name
        does not exist, the axes are invalid, or a 3D model meets an image without ``Z``.
    """
    shape = tuple(int(s) for s in shape)
    check_not_empty(shape, image_name)
    axes = validate_axes(axes, shape)
    sizes = dict(zip(axes, shape))
    expects = f"model expects {model_channels} channel{'s' if model_channels != 1 else ''}"
    if model_channel_names:
        expects += f" ({', '.join(model_channel_names)})"

    channel_axis: str | None = None
    for letter in ("C", "S"):
        if letter in sizes and (sizes[letter] > 1 or channel_axis is None):
            if channel_axis is not None and sizes[channel_axis] > 1:
                raise ValueError(
                    f"{image_name} has both a C ({sizes['C']}) and an S ({sizes['S']}) axis "
                    f"(axes {axes}); pick one with channels= after merging them"
                )
            channel_axis = letter
    # an axis of size 1 that lost to the other is iterated like a leading axis
    if model_ndim == 3 and "Z" not in sizes:
        raise ValueError(f"a 3D model needs a Z axis; {image_name} has axes {axes}")
    spatial_axes = "ZYX" if model_ndim == 3 else "YX"
    loop_axes = "".join(a for a in axes if a not in spatial_axes and a != channel_axis)

    to_gray = False
    chosen: tuple[int, ...] = ()
    if channel_axis is not None:
        n_image = sizes[channel_axis]
        if channels is not None:
            chosen = _resolve_channels(channels, n_image, channel_names, image_name, axes)
        elif channel_axis == "S" and model_channels == 1 and n_image in (3, 4):
            to_gray = True
            chosen = (0, 1, 2)
            log.info("%s: RGB samples (axes %s) converted to one gray channel", image_name, axes)
        elif channel_axis == "S" and model_channels == 3 and n_image == 4:
            chosen = (0, 1, 2)  # RGBA: alpha dropped
        else:
            chosen = tuple(range(n_image))
        n_fed = 1 if to_gray else len(chosen)
        if n_fed != model_channels:
            names = ""
            if channel_names and not to_gray:
                names = f" ({', '.join(str(channel_names[i]) for i in chosen)})"
            hint = "" if channels is not None else "; choose them with channels=[...]"
            raise ValueError(
                f"{expects}; {image_name} gives {n_fed}{names} (axes {axes}, {channel_axis} axis of {n_image}){hint}"
            )
    else:
        if channels is not None and _as_list(channels) not in ([0], ["0"]):
            raise ValueError(f"channels={channels!r} given but {image_name} has no channel axis (axes {axes})")
        if model_channels != 1:
            raise ValueError(f"{expects}; {image_name} has no channel axis (axes {axes}), so it gives 1")
    return Layout(
        axes=axes,
        shape=shape,
        channel_axis=channel_axis,
        channels=chosen,
        to_gray=to_gray,
        loop_axes=loop_axes,
        spatial_axes=spatial_axes,
    )


def _as_list(channels: int | str | Sequence[int | str]) -> list[int | str]:
    if isinstance(channels, (str, int, np.integer)):
        return [channels]  # type: ignore[list-item]
    return list(channels)


def _resolve_channels(
    channels: int | str | Sequence[int | str], n_image: int, names: Sequence[str] | None, image_name: str, axes: str
) -> tuple[int, ...]:
    out: list[int] = []
    for c in _as_list(channels):
        if isinstance(c, (int, np.integer)) and not isinstance(c, bool):
            idx = int(c) + n_image if c < 0 else int(c)
            if not 0 <= idx < n_image:
                raise ValueError(
                    f"channel {c} does not exist: {image_name} has {n_image} channels (axes {axes}), "
                    f"indices 0..{n_image - 1}"
                )
        elif isinstance(c, str):
            if not names or c not in list(names):
                known = f"its channels are {list(names)}" if names else "it has no channel names"
                raise ValueError(f"no channel named {c!r} in {image_name}; {known}")
            idx = list(names).index(c)
        else:
            raise TypeError(f"channels must be indices or names, got {c!r}")
        out.append(idx)
    if len(set(out)) != len(out):
        raise ValueError(f"channels {channels!r} name the same channel twice")
    return tuple(out)
