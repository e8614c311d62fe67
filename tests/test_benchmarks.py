"""Smoke runs of the benchmark scripts on tiny settings, so they keep working (no timing is asserted)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"


def _run(*args: str) -> str:
    proc = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_tiled_inference_benchmark_prints_its_table():
    out = _run(str(BENCH / "tiled_inference.py"), "--device", "cpu", "--size", "160", "--tile", "64",
               "--batch", "2", "--features", "4", "--skip-monai")
    assert "image 160x160 uint16" in out
    rows = {line.split("  ")[0].strip() for line in out.splitlines()}
    assert {"napari-unet", "forward, plain", "forward, channels-last", "forward, napari-unet's net"} <= rows


def test_large_image_memory_benchmark_reports_the_target():
    out = _run(str(BENCH / "large_image_memory.py"), "--size", "700", "--device", "cpu")
    assert "image 700x700 uint16" in out
    assert "objects, labels uint16" in out
    assert "target input + output + 2 GiB" in out and "-> met" in out


def test_tta_benchmark_prints_both_rows(tmp_path):
    import numpy as np
    import tifffile

    for sub in ("images", "masks"):
        (tmp_path / sub).mkdir()
    image = np.random.default_rng(0).integers(0, 50, (64, 64)).astype(np.uint8)
    mask = np.zeros((64, 64), np.uint16)
    image[10:24, 12:26] += 150
    mask[10:24, 12:26] = 1
    tifffile.imwrite(tmp_path / "images" / "a.tif", image)
    tifffile.imwrite(tmp_path / "masks" / "a.tif", mask)
    out = _run(str(BENCH / "tta.py"), "--data", str(tmp_path), "--limit", "1", "--device", "cpu")
    assert "on 1 images from" in out
    rows = [line.split()[0] for line in out.splitlines()]
    assert "off" in rows and "on" in rows and "x the time per image" in out
    assert "nothing to measure" in _run(str(BENCH / "tta.py"), "--data", str(tmp_path / "absent"))
