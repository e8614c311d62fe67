"""Shared fixtures for the whole test suite.

Real microscopy data lives outside the repository, in ``../shared/data`` beside the checkout
(CI lays it there). A person who just cloned the project does not have it, so every test that
needs it asks for the ``data_dir`` fixture and is skipped when the folder is absent. Set the
environment variable ``NAPARI_UNET_DATA`` to use another location.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA_ENV_VAR = "NAPARI_UNET_DATA"
DEFAULT_DATA_DIR = REPO_ROOT.parent / "shared" / "data"


def real_data_dir() -> Path:
    """Return where the real data is expected: ``$NAPARI_UNET_DATA``, else ``<repo>/../shared/data``."""
    env = os.environ.get(DATA_ENV_VAR)
    return Path(env).expanduser().resolve() if env else DEFAULT_DATA_DIR.resolve()


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The folder of real microscopy data (``dsb2018_fluo/``, ``stacks/``); skips the test when absent."""
    path = real_data_dir()
    if not path.is_dir():
        source = f"${DATA_ENV_VAR}" if os.environ.get(DATA_ENV_VAR) else f"default; set ${DATA_ENV_VAR} to override"
        pytest.skip(f"real test data not found at {path} ({source})")
    return path
