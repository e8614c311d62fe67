"""Fixtures shared by the viewer tests: an isolated settings folder and captured notifications."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(autouse=True)
def config_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """napari-unet's settings (recent models) go to a per-test folder, never the user's."""
    from napari_unet._napari import settings

    folder = tmp_path / "config"
    monkeypatch.setenv(settings.CONFIG_DIR_ENV, str(folder))
    return folder


@pytest.fixture
def notes() -> Any:
    """Notifications dispatched during the test (napari's notification_manager)."""
    from napari.utils.notifications import notification_manager

    got: list[Any] = []
    notification_manager.notification_ready.connect(got.append)
    yield got
    notification_manager.notification_ready.disconnect(got.append)
