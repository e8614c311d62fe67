"""The plugin's small persistent settings: the list of recently used model files.

Stored as JSON in ``settings.json`` inside :func:`config_dir`:

* ``$NAPARI_UNET_CONFIG_DIR`` when set (tests point it at a temporary folder);
* else the user config folder of ``napari-unet`` from :mod:`platformdirs` (a napari
  dependency), e.g. ``~/.config/napari-unet/`` on Linux.

The file looks like ``{"version": 1, "recent_models": ["/abs/path/a.safetensors", ...]}``.
It is written atomically (temporary file + rename); a corrupt or unreadable file is
treated as empty, with a logged warning, and replaced on the next save. Unknown keys are
kept, so later widgets (training) can store their own entries beside the model list.
"""

from __future__ import annotations

import json
import logging
import os
import pathlib
from typing import Any

__all__ = [
    "CONFIG_DIR_ENV",
    "MAX_RECENT_MODELS",
    "add_recent_model",
    "config_dir",
    "load_settings",
    "recent_models",
    "remove_recent_model",
    "save_settings",
    "settings_path",
]

log = logging.getLogger(__name__)

#: Environment variable that overrides the settings folder.
CONFIG_DIR_ENV = "NAPARI_UNET_CONFIG_DIR"
#: How many recent model files are remembered.
MAX_RECENT_MODELS = 8
_FILE_NAME = "settings.json"
_VERSION = 1


def config_dir() -> pathlib.Path:
    """The folder holding napari-unet's settings (not created here).

    Returns
    -------
    pathlib.Path
        ``$NAPARI_UNET_CONFIG_DIR`` if set and not empty, else platformdirs' user config folder
        for ``napari-unet`` (``$XDG_CONFIG_HOME/napari-unet`` or ``~/.config/napari-unet`` on
        Linux).
    """
    env = os.environ.get(CONFIG_DIR_ENV, "").strip()
    if env:
        return pathlib.Path(env).expanduser()
    try:
        from platformdirs import user_config_dir
    except ImportError:  # pragma: no cover - platformdirs comes with napari
        base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
        return pathlib.Path(base) / "napari-unet"
    return pathlib.Path(user_config_dir("napari-unet", appauthor=False))


def settings_path() -> pathlib.Path:
    """The settings file, ``config_dir() / "settings.json"``."""
    return config_dir() / _FILE_NAME


def load_settings() -> dict[str, Any]:
    """Read the settings file.

    Returns
    -------
    dict
        The stored settings; ``{}`` when the file is missing, unreadable or corrupt (the last
        two log a warning naming the file).
    """
    path = settings_path()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        log.warning("cannot read napari-unet settings %s (%s); starting with empty settings", path, exc)
        return {}
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        log.warning("napari-unet settings %s are corrupt (%s); starting with empty settings", path, exc)
        return {}
    if not isinstance(data, dict):
        log.warning("napari-unet settings %s are not a JSON object; starting with empty settings", path)
        return {}
    return data


def save_settings(settings: dict[str, Any]) -> pathlib.Path:
    """Write ``settings`` atomically, creating the folder if needed.

    Parameters
    ----------
    settings : dict
        JSON-serialisable settings; ``"version"`` is set.

    Returns
    -------
    pathlib.Path
        The file written.
    """
    from ..core.image.files import atomic_write

    path = settings_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps({**settings, "version": _VERSION}, indent=1, ensure_ascii=False)
    with atomic_write(path) as tmp:
        tmp.write_text(text + "\n", encoding="utf-8")
    return path


def _normalise(path: str | os.PathLike) -> str:
    return os.path.abspath(os.path.expanduser(os.fspath(path)))


def recent_models() -> list[pathlib.Path]:
    """Recently used model files, most recent first; files that no longer exist are left out.

    Returns
    -------
    list of pathlib.Path
        At most :data:`MAX_RECENT_MODELS` absolute paths.
    """
    entries = load_settings().get("recent_models", [])
    if not isinstance(entries, list):
        log.warning("napari-unet settings: 'recent_models' is not a list; ignored")
        return []
    out: list[pathlib.Path] = []
    seen: set[str] = set()
    for entry in entries:
        if not isinstance(entry, str) or not entry:
            continue
        norm = _normalise(entry)
        if norm in seen or not os.path.isfile(norm):
            continue
        seen.add(norm)
        out.append(pathlib.Path(norm))
    return out[:MAX_RECENT_MODELS]


def add_recent_model(path: str | os.PathLike) -> list[pathlib.Path]:
    """Put ``path`` first in the recent model list and save it.

    Parameters
    ----------
    path : str or os.PathLike
        A model file; stored as an absolute path.

    Returns
    -------
    list of pathlib.Path
        The new list (missing files dropped, at most :data:`MAX_RECENT_MODELS`).
    """
    norm = _normalise(path)
    entries = [norm, *_recent_without(norm)][:MAX_RECENT_MODELS]
    _store_recent(entries)
    return [pathlib.Path(p) for p in entries if os.path.isfile(p)]


def remove_recent_model(path: str | os.PathLike) -> list[pathlib.Path]:
    """Remove ``path`` from the recent model list and save it; returns the new list."""
    entries = _recent_without(_normalise(path))
    _store_recent(entries)
    return [pathlib.Path(p) for p in entries]


def _recent_without(norm: str) -> list[str]:
    return [os.fspath(p) for p in recent_models() if os.fspath(p) != norm]


def _store_recent(entries: list[str]) -> None:
    """Save ``entries`` as the recent model list; a failure is logged, not raised."""
    settings = load_settings()
    settings["recent_models"] = entries
    try:
        save_settings(settings)
    except OSError as exc:
        log.warning("cannot save napari-unet settings to %s: %s", settings_path(), exc)
