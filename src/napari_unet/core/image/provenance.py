"""The provenance record written with every label image: one builder, one schema.

Every writer of labels (``napari-unet segment`` and ``demo``, the Segment panel's result layer
and the napari writer) builds its record here, so files and layers carry the same keys:

``software``, ``napari_unet_version``, ``date``
    napari-unet and its version, and when the record was made (UTC, ISO 8601);
``command``
    what made it: ``"napari-unet segment"``, ``"napari-unet demo"``, ``"napari panel"``;
``model``, ``model_description``
    the model by built-in name or path, and its description;
``input``, ``axes``, ``device``
    the input file or layer, its axes, and the device used;
``options``
    the options used (a mapping; the CLI also keeps them at the top level, as it always did);
    for instance labels, ``track`` says whether the labels of a time-lapse were matched across
    frames, and when they were, ``track_max_gap`` and ``track_min_iou`` give the settings
    (:func:`~napari_unet.core.labels.tracking.tracking_settings` makes these entries); for
    z-stacks ``z_mode`` and the ``anisotropy`` used (None when unknown), see docs/stacks.md.

:func:`normalize_provenance` reads records written before this schema (the panel's ``image``
and ``image_axes``) under the new names; :func:`~napari_unet.core.image.io.read_provenance`
applies it.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Mapping
from typing import Any

from ..._version import __version__

__all__ = ["PROVENANCE_KEYS", "build_provenance", "complete_provenance", "normalize_provenance"]

#: The keys every record built here has (extra keys may follow, e.g. the writer's ``layer_name``).
PROVENANCE_KEYS = (
    "software",
    "napari_unet_version",
    "date",
    "command",
    "model",
    "model_description",
    "input",
    "axes",
    "device",
    "options",
)
#: Old key → its name in the schema (records written before it).
OLD_KEYS = {"image": "input", "image_axes": "axes"}


def jsonable(value: Any) -> Any:
    """``value`` in plain JSON types, as stored in a label file: numpy scalars and arrays (anything with
    ``tolist``) become numbers and lists, anything else JSON cannot hold its ``str``."""
    return json.loads(json.dumps(value, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))


def build_provenance(
    *,
    command: str,
    model: str | None,
    model_description: str | None = None,
    input: str | None = None,
    axes: str | None = None,
    device: Any = None,
    options: Mapping[str, Any] | None = None,
    flat: bool = False,
    **extra: Any,
) -> dict[str, Any]:
    """The provenance record of one result.

    Parameters
    ----------
    command : str
        What made the result (``"napari-unet segment"``, ``"napari panel"``, ...).
    model : str or None
        The model by built-in name, else its path.
    model_description : str, optional
        The model's own description (``ModelSpec.description``).
    input : str, optional
        The input file or layer name.
    axes : str, optional
        The input's axes.
    device : optional
        The device used (stored as text).
    options : mapping, optional
        The options used.
    flat : bool
        Also store each option at the top level (the CLI's records always had them there); keys of
        the schema are not overwritten.
    **extra
        Further keys, stored after the schema's.

    Returns
    -------
    dict
        A new record with every key of :data:`PROVENANCE_KEYS`.
    """
    used = dict(options or {})
    record: dict[str, Any] = {
        "software": f"napari-unet {__version__}",
        "napari_unet_version": __version__,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": command,
        "model": model,
        "model_description": model_description,
        "input": input,
        "axes": axes,
        "device": None if device is None else str(device),
        "options": used,
    }
    if flat:
        for key, value in used.items():
            record.setdefault(key, value)
    record.update(extra)
    return record


def complete_provenance(record: Mapping[str, Any] | None, **extra: Any) -> dict[str, Any]:
    """``record`` (e.g. a layer's) with the schema's missing keys added as None, plus ``extra``.

    ``software`` and ``napari_unet_version`` default to this napari-unet; old key names are read
    under the new ones (:func:`normalize_provenance`).
    """
    out = normalize_provenance(record) or {}
    out.setdefault("software", f"napari-unet {__version__}")
    out.setdefault("napari_unet_version", __version__)
    for key in PROVENANCE_KEYS:
        out.setdefault(key, {} if key == "options" else None)
    out.update(extra)
    return out


def normalize_provenance(record: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """A stored record with old key names (``image``, ``image_axes``) also read under the new ones.

    The old keys stay (nothing is dropped); a new key already present wins. None or an empty
    record gives None.
    """
    if not record:
        return None
    out = dict(record)
    for old, new in OLD_KEYS.items():
        if old in out and new not in out:
            out[new] = out[old]
    return out
