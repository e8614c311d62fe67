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
    out = _run(
        str(BENCH / "tiled_inference.py"),
        "--device",
        "cpu",
        "--size",
        "160",
        "--tile",
        "64",
        "--batch",
        "2",
        "--features",
        "4",
        "--skip-monai",
    )
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


def _one_image_folder(path: Path) -> Path:
    import numpy as np
    import tifffile

    for sub in ("images", "masks"):
        (path / sub).mkdir(parents=True)
    image = np.random.default_rng(1).integers(0, 40, (96, 96)).astype(np.uint8)
    mask = np.zeros((96, 96), np.uint16)
    for k, (y, x) in enumerate([(20, 20), (20, 60), (60, 40)], start=1):
        image[y : y + 14, x : x + 14] += 160
        mask[y : y + 14, x : x + 14] = k
    tifffile.imwrite(path / "images" / "a.tif", image)
    tifffile.imwrite(path / "masks" / "a.tif", mask)
    return path


def test_scales_benchmark_prints_one_row_per_magnification(tmp_path):
    out = _run(str(BENCH / "dsb_scales.py"), "--data", str(_one_image_folder(tmp_path)), "--mags", "1,2")
    rows = [line.split("|")[0].strip() for line in out.splitlines() if "|" in line]
    assert rows[1:] == ["1x", "2x"]
    assert "nothing to measure" in _run(str(BENCH / "dsb_scales.py"), "--data", str(tmp_path / "absent"))


def test_cpu_precision_benchmark_compares_both_precisions(tmp_path):
    out = _run(str(BENCH / "cpu_precision.py"), "--data", str(_one_image_folder(tmp_path)), "--size", "128")
    assert "native bf16 on this CPU:" in out
    assert "bfloat16 labels scored against float32 labels" in out
    assert "128x128 float32" in out and "128x128 bfloat16" in out


def test_timelapse_benchmark_prints_its_table(tmp_path):
    _one_image_folder(tmp_path / "dsb2018_fluo")
    out = _run(str(BENCH / "timelapse.py"), "--data", str(tmp_path), "--limit", "1", "--frames", "3", "--device", "cpu")
    assert "movies of 3 frames" in out
    rows = [line for line in out.splitlines() if line.startswith(("every frame", "frame 1 dropped"))]
    assert len(rows) == 2 * 8 and any("no tracking (track=False)" in row for row in rows)
    assert "ms per frame" in out
    assert "nothing to measure" in _run(str(BENCH / "timelapse.py"), "--data", str(tmp_path / "absent"))


def test_zstack_benchmark_prints_its_tables(tmp_path):
    import numpy as np
    import tifffile

    dsb = tmp_path / "dsb2018_fluo"
    for sub in ("images", "masks"):
        (dsb / sub).mkdir(parents=True)
    rng = np.random.default_rng(0)
    image = rng.integers(0, 50, (64, 64)).astype(np.uint8)
    mask = np.zeros((64, 64), np.uint16)
    for label, (y, x) in enumerate([(10, 12), (36, 30)], start=1):
        image[y : y + 16, x : x + 16] += 150
        mask[y : y + 16, x : x + 16] = label
    tifffile.imwrite(dsb / "images" / "a.tif", image)
    tifffile.imwrite(dsb / "masks" / "a.tif", mask)
    out = _run(
        str(BENCH / "zstack.py"),
        *("--data", str(tmp_path), "--limit", "1", "--planes", "6", "--crop", "64", "--modes", "3d,planes"),
        *("--link-iou", "0.25", "--device", "cpu"),
    )
    assert "synthetic z-stacks: 1 DSB2018 images, 6 planes" in out
    rows = [line.split()[0] for line in out.splitlines() if line.strip()]
    assert {"3d", "planes", "stitch@0.25"} <= set(rows)
    assert "no real stack in" in out


def test_big_data_benchmark_prints_its_table():
    import pytest

    pytest.importorskip("distributed")
    pytest.importorskip("zarr")
    out = _run(str(BENCH / "big_data.py"), "--size", "256", "--block", "128", "--workers", "1")
    assert "image 256x256 uint16" in out
    rows = [line.split("  ")[0].strip() for line in out.splitlines()]
    assert "in memory" in rows and "blocks, 1 worker" in rows
