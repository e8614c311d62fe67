"""Reading captured napari notifications in tests."""

from __future__ import annotations

from typing import Any

from napari.utils.notifications import NotificationSeverity


def errors(notes: list[Any]) -> list[str]:
    return [str(n.message) for n in notes if n.severity == NotificationSeverity.ERROR]


def infos(notes: list[Any]) -> list[str]:
    return [str(n.message) for n in notes if n.severity == NotificationSeverity.INFO]
