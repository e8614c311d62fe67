"""A block-wise run whose driver is SIGKILLed mid-run (the CLI process, with its local cluster, or
only the driver of an external cluster started with ``dask scheduler`` / ``dask worker`` as a
SLURM job script would), then ``--resume``: the labels equal an uninterrupted run's, and the
blocks finished before the kill are not done again."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("dask")
zarr = pytest.importorskip("zarr")
pytest.importorskip("distributed")

from known_nets import threshold_net  # noqa: E402
from test_blocks_resume import blobs, same_up_to_relabelling  # noqa: E402

from napari_unet.cli import main  # noqa: E402
from napari_unet.core.model.file import save_model  # noqa: E402
from napari_unet.core.progress import drain  # noqa: E402
from napari_unet.core.segment import iter_segment  # noqa: E402

SRC = str(Path(__file__).resolve().parents[2] / "src")
BLOCKS = 144  # a 384 x 384 image in blocks of 32


def environment() -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([SRC, *filter(None, [os.environ.get("PYTHONPATH")])])}


def prepare(tmp_path: Path) -> tuple[np.ndarray, list[str]]:
    image = blobs((384, 384), n=220, seed=11)
    source = zarr.create_array(str(tmp_path / "image.zarr"), shape=image.shape, chunks=(64, 64), dtype=image.dtype)
    source[:] = image
    model = save_model(threshold_net(), tmp_path / "t.safetensors")
    argv = ["segment", str(tmp_path / "image.zarr"), "--model", str(model), "--output", str(tmp_path / "out"),
            "--axes", "YX", "--block", "32", "--halo", "0", "--max-object", "24", "--no-progress"]  # fmt: skip
    return image, argv


def kill_after_records(argv: list[str], tmp_path: Path, records: int, *, group: bool) -> int:
    """Start the CLI in a new session, SIGKILL it (its process group when ``group``) once ``records``
    blocks are recorded as done; return how many were done at the kill."""
    proc = subprocess.Popen([sys.executable, "-m", "napari_unet.cli", *argv], env=environment(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    deadline = time.monotonic() + 180
    done: list[Path] = []
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            done = list((tmp_path / "out").glob("*.blocks/**/done/*.npz"))
            if len(done) >= records:
                break
            time.sleep(0.02)
        assert proc.poll() is None, f"the run ended before it could be killed:\n{proc.stdout.read().decode()}"
        assert len(done) >= records, "no block finished in 180 s"
    finally:
        if proc.poll() is None:
            (os.killpg if group else os.kill)(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    return len(done)


def check_resumed(capsys, tmp_path: Path, image: np.ndarray, argv: list[str], done_at_kill: int) -> str:
    assert done_at_kill < BLOCKS
    outputs = list((tmp_path / "out").glob("*.zarr"))
    assert outputs == [], f"a killed run left {outputs} in place"  # only hidden / records names exist
    assert main([*argv, "--resume"]) == 0
    line = capsys.readouterr().out
    run, resumed = (int(x) for x in line.split(" blocks, ")[1].split(" resumed")[0].split(" run, "))
    assert run + resumed == BLOCKS and resumed >= done_at_kill, line
    labels = zarr.open_array(str(tmp_path / "out" / "image_labels.zarr"), mode="r")[:]
    expected = drain(iter_segment(image, threshold_net(), axes="YX", device="cpu"))
    assert same_up_to_relabelling(labels, expected)
    assert labels.max() == expected.max() > 100
    return line


def test_a_killed_cli_run_with_its_local_cluster_resumes(tmp_path: Path, capsys) -> None:
    image, argv = prepare(tmp_path)
    argv += ["--scheduler", "local", "--workers", "2"]
    done = kill_after_records(argv, tmp_path, 8, group=True)
    check_resumed(capsys, tmp_path, image, argv, done)


@pytest.fixture
def external_cluster(tmp_path: Path):
    """``dask scheduler`` and one ``dask worker`` process, as a cluster's job script starts them."""
    file = tmp_path / "scheduler.json"
    common = {"env": environment(), "stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    scheduler = subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                                  "--port", "0", "--dashboard-address", ":0", "--scheduler-file", str(file)],
                                 **common)  # fmt: skip
    worker = None
    try:
        deadline = time.monotonic() + 60
        while not file.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        address = json.loads(file.read_text())["address"]
        worker = subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", address, "--nworkers", "1",
                                   "--nthreads", "1", "--no-dashboard"], **common)  # fmt: skip
        from distributed import Client

        with Client(address, timeout=60) as client:
            client.wait_for_workers(1, timeout=60)
        yield address
    finally:
        for proc in (worker, scheduler):
            if proc is not None:
                proc.terminate()
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()


def test_a_killed_driver_of_an_external_cluster_resumes_on_it(tmp_path: Path, capsys, external_cluster) -> None:
    image, argv = prepare(tmp_path)
    argv += ["--scheduler", external_cluster]
    done = kill_after_records(argv, tmp_path, 8, group=False)
    line = check_resumed(capsys, tmp_path, image, argv, done)
    assert "workers: " in line and "cpu" in line.split("workers: ")[1], line
