"""``ruff check`` and ``ruff format --check`` (configured in pyproject.toml) are part of the test suite,
so CI is gated on both."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
LINTED = ["src", "tests", "benchmarks", "scripts", "docs"]


def test_ruff_check_is_clean() -> None:
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    assert ruff, "ruff is not installed: it is in the `testing` extra (pip install -e .[testing])"
    proc = subprocess.run(
        [ruff, "check", "--no-cache", *LINTED], cwd=REPO_ROOT, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, f"ruff check {' '.join(LINTED)}:\n{proc.stdout}{proc.stderr}"


def _ruff() -> str:
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    assert ruff, "ruff is not installed: it is in the `testing` extra (pip install -e .[testing])"
    return ruff


def test_ruff_format_is_clean() -> None:
    proc = subprocess.run(
        [_ruff(), "format", "--check", "--no-cache", *LINTED],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, (
        f"ruff format --check {' '.join(LINTED)} (run `ruff format` to fix):\n{proc.stdout}{proc.stderr}"
    )
