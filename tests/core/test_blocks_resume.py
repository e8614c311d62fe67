"""Block-wise runs: resuming from completion records, a worker killed mid-run, run signatures,
real data read from a zarr array, and errors naming the bad value."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("dask")
zarr = pytest.importorskip("zarr")
pytest.importorskip("distributed")

from known_nets import threshold_net  # noqa: E402

from napari_unet.core.blocks.resume import DONE  # noqa: E402
from napari_unet.core.blocks.run import segment_blocks  # noqa: E402
from napari_unet.core.model.bundled import resolve_model_file  # noqa: E402
from napari_unet.core.model.file import load_model  # noqa: E402
from napari_unet.core.progress import drain  # noqa: E402
from napari_unet.core.segment import iter_segment  # noqa: E402

OPTIONS = {"axes": "YX", "block": 32, "halo": 0, "max_object": 48}


class Stop(Exception):
    pass


def blobs(shape: tuple[int, int] = (128, 160), n: int = 40, seed: int = 3) -> np.ndarray:
    """Disks of radius 3-8 px (many across the 32 px block borders) on a dark background, uint16."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    img = np.full(shape, 100, np.uint16)
    for _ in range(n):
        y, x, r = rng.integers(0, shape[0]), rng.integers(0, shape[1]), rng.integers(3, 9)
        img[(yy - y) ** 2 + (xx - x) ** 2 <= r * r] = 4000
    return img


def same_up_to_relabelling(a: np.ndarray, b: np.ndarray) -> bool:
    if a.shape != b.shape or not np.array_equal(a > 0, b > 0):
        return False
    pairs = np.unique(np.stack([a.ravel(), b.ravel()], 1), axis=0)
    return len(np.unique(pairs[:, 0])) == len(pairs) == len(np.unique(pairs[:, 1]))


def stop_after(blocks: int):
    def progress(event) -> None:
        if event.stage == "blocks" and event.step >= blocks and "block " in event.message:
            raise Stop

    return progress


def test_resume_continues_an_interrupted_run_without_redoing_finished_blocks(dask_client, tmp_path: Path) -> None:
    image, net = blobs(), threshold_net()
    expected = drain(iter_segment(image, net, axes="YX", device="cpu"))
    out = tmp_path / "labels.zarr"
    with pytest.raises(Stop):
        segment_blocks(image, net, out=out, client=dask_client, progress=stop_after(4), **OPTIONS)
    done = tmp_path / "labels.zarr.blocks" / DONE
    first = {p.name: p.stat().st_mtime_ns for p in done.glob("*.npz")}
    assert 4 <= len(first) < 20
    result = segment_blocks(image, net, out=out, client=dask_client, resume=True, **OPTIONS)
    assert set(result.skipped) >= {int(Path(name).stem) for name in first}
    assert not set(result.run) & set(result.skipped)
    assert sorted(result.run + result.skipped) == list(range(20))
    for name, mtime in first.items():  # finished blocks were not done again
        assert (done / name).stat().st_mtime_ns == mtime
    assert same_up_to_relabelling(result.out[:], expected)
    assert result.n_objects == expected.max()
    # nothing left to do: a second resume runs no block and gives the same labels
    again = segment_blocks(image, net, out=out, client=dask_client, resume=True, **OPTIONS)
    assert again.run == [] and len(again.skipped) == 20
    np.testing.assert_array_equal(again.out[:], result.out[:])


def test_resume_refuses_a_run_with_another_signature(dask_client, tmp_path: Path) -> None:
    image, net = blobs(seed=4), threshold_net()
    out = tmp_path / "labels.zarr"
    segment_blocks(image, net, out=out, client=dask_client, mode="semantic", **OPTIONS)
    with pytest.raises(ValueError, match=r"cannot resume .*signature differs \(.*options\.min_size: 0 then, 5 now\)"):
        segment_blocks(image, net, out=out, client=dask_client, mode="semantic", min_size=5, resume=True, **OPTIONS)
    other = image.copy()
    other[0, 0] += 1
    with pytest.raises(ValueError, match=r"signature differs \(input\.array"):
        segment_blocks(other, net, out=out, client=dask_client, mode="semantic", resume=True, **OPTIONS)
    # without resume a changed run starts afresh
    fresh = segment_blocks(other, net, out=out, client=dask_client, mode="semantic", min_size=5, **OPTIONS)
    assert fresh.skipped == [] and len(fresh.run) == 20


def test_a_worker_killed_mid_run_does_not_lose_or_duplicate_blocks(dask_client, tmp_path: Path) -> None:
    image, net = blobs((160, 160), n=60, seed=5), threshold_net()
    expected = drain(iter_segment(image, net, axes="YX", device="cpu"))
    pids = sorted(dask_client.run(os.getpid).values())
    killed = []

    def kill_one(event) -> None:  # SIGKILL one worker process after the second block
        if event.stage == "blocks" and event.step == 2 and not killed:
            os.kill(pids[0], signal.SIGKILL)
            killed.append(pids[0])

    result = segment_blocks(image, net, out=tmp_path / "l.zarr", client=dask_client, progress=kill_one, **OPTIONS)
    assert killed
    assert sorted(result.run) == list(range(25))
    assert same_up_to_relabelling(result.out[:], expected)
    dask_client.wait_for_workers(2, timeout=60)


def test_a_real_image_read_from_a_zarr_array_on_disk(dask_client, data_dir: Path, tmp_path: Path) -> None:
    import tifffile

    path = sorted((data_dir / "dsb2018_fluo" / "images").glob("*.tif"))[0]
    image = tifffile.imread(path)[:256, :320]
    source = zarr.create_array(str(tmp_path / "image.zarr"), shape=image.shape, chunks=(100, 100), dtype=image.dtype)
    source[:] = image
    model = load_model(resolve_model_file(None)).double()
    options = {"axes": "YX", "estimate_size": False, "halo": 144}
    expected = drain(iter_segment(image, model, device="cpu", tile_size=1024, **options))
    result = segment_blocks(
        str(tmp_path / "image.zarr"), model, out=tmp_path / "l.zarr", block=128, client=dask_client, **options
    )
    assert result.n_objects == expected.max() > 0
    assert same_up_to_relabelling(result.out[:], expected)


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"block": 48}, r"block \(48, 48\) must be whole output chunks \(32, 32\)"),
        ({"mode": "outlines"}, r"mode must be one of .*'outlines'"),
        ({"scheduler": "nowhere"}, r"scheduler must be 'local' or an address .*'nowhere'"),
        ({"workers": 0}, r"workers must be a positive integer, got 0"),
        ({"max_object": -1}, r"max_object must be a non-negative integer .*-1"),
    ],
)
def test_bad_options_are_refused_naming_the_value(tmp_path: Path, options: dict, error: str) -> None:
    out = zarr.create_array(str(tmp_path / "o.zarr"), shape=(64, 64), chunks=(32, 32), dtype="uint32")
    with pytest.raises(ValueError, match=error):
        segment_blocks(np.zeros((64, 64), np.uint16), threshold_net(), axes="YX", out=out, **options)


def test_outputs_and_inputs_that_do_not_fit_are_refused(tmp_path: Path) -> None:
    net = threshold_net()
    wrong = zarr.create_array(str(tmp_path / "o.zarr"), shape=(64, 60), chunks=(32, 32), dtype="uint32")
    with pytest.raises(ValueError, match=r"out has shape \(64, 60\), but the result has shape \(64, 64\)"):
        segment_blocks(np.zeros((64, 64), np.uint16), net, axes="YX", out=wrong)
    memory = zarr.create_array(zarr.storage.MemoryStore(), shape=(64, 64), chunks=(32, 32), dtype="uint32")
    with pytest.raises(ValueError, match="out must be a zarr array stored in a folder"):
        segment_blocks(np.zeros((64, 64), np.uint16), net, axes="YX", out=memory)
    with pytest.raises(ValueError, match=r"z_mode.*'volume'"):
        segment_blocks(np.zeros((2, 64, 64), np.uint16), net, axes="ZYX", out=tmp_path / "t.zarr", z_mode="volume")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        segment_blocks(str(tmp_path / "missing.zarr"), net, axes="YX", out=tmp_path / "m.zarr")
