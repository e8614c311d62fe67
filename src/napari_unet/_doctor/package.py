"""Checks on the installation itself: PyTorch imports, and each bundled model file matches the SHA-256
recorded beside it in ``data/models/checksums.json`` (a truncated download or an edited file shows here,
not as a strange segmentation)."""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path

from .report import Check

CHECKSUMS = "checksums.json"
#: The oldest torch the package supports (pyproject's torch>=2.1).
MIN_TORCH = (2, 1)


def torch_check() -> Check:
    """PyTorch imports; its version and build (CPU, CUDA, ROCm)."""
    try:
        import torch
    except Exception as err:  # noqa: BLE001 - a broken install is what the doctor is for
        return Check(
            "PyTorch",
            "FAIL",
            f"import torch failed: {type(err).__name__}: {err}",
            "reinstall it: pip install --force-reinstall torch (the CPU build: add --index-url "
            "https://download.pytorch.org/whl/cpu)",
        )
    version = torch.__version__
    build = (
        f"CUDA {torch.version.cuda}"
        if torch.version.cuda
        else f"ROCm {torch.version.hip}"
        if getattr(torch.version, "hip", None)
        else "CPU-only"
    )
    details = {"version": version, "cuda": torch.version.cuda, "hip": getattr(torch.version, "hip", None)}
    numbers = tuple(int(p) for p in version.split("+")[0].split(".")[:2] if p.isdigit())
    if numbers < MIN_TORCH:
        return Check(
            "PyTorch",
            "FAIL",
            f"torch {version} is older than 2.1, which napari-unet needs",
            "pip install --upgrade torch",
            details,
        )
    return Check("PyTorch", "OK", f"torch {version} ({build} build), Python {sys.version.split()[0]}", details=details)


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def recorded_checksums(folder: Path) -> dict[str, dict]:
    """``{file name: {"sha256", "bytes"}}`` from ``folder/checksums.json``."""
    return json.loads((folder / CHECKSUMS).read_text(encoding="utf-8"))


def model_checks(folder: Path | None = None) -> Iterator[Check]:
    """One check per bundled model file: present, and its SHA-256 as recorded."""
    from ..core.model.bundled import _bundled_dir

    folder = folder or _bundled_dir()
    reinstall = "reinstall napari-unet (pip install --force-reinstall --no-deps napari-unet)"
    try:
        recorded = recorded_checksums(folder)
    except (OSError, ValueError) as err:
        yield Check("bundled model", "FAIL", f"no readable {CHECKSUMS} in {folder}: {err}", reinstall)
        return
    for name, entry in sorted(recorded.items()):
        path = folder / name
        label = f"bundled model {Path(name).stem}"
        if not path.is_file():
            yield Check(label, "FAIL", f"{path} is missing", reinstall)
            continue
        digest = sha256(path)
        details = {"path": str(path), "sha256": digest, "expected": entry["sha256"], "bytes": path.stat().st_size}
        if digest != entry["sha256"]:
            yield Check(
                label,
                "FAIL",
                f"{path} ({details['bytes']} bytes, {entry['bytes']} expected) has SHA-256 {digest[:12]}…, "
                f"not the recorded {entry['sha256'][:12]}…: the file is damaged or was replaced",
                reinstall,
                details,
            )
        else:
            yield Check(label, "OK", f"{name}: SHA-256 {digest[:12]}… as recorded", details=details)
