"""Block-wise runs of images with loop axes (T, or Z with a 2D model): plane by plane, then
tracked or linked along Z streaming over the output — equal to in memory up to relabelling."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("dask")
zarr = pytest.importorskip("zarr")
pytest.importorskip("distributed")

from known_nets import threshold_net  # noqa: E402
from test_blocks_resume import same_up_to_relabelling  # noqa: E402

from napari_unet.core.blocks.run import segment_blocks  # noqa: E402
from napari_unet.core.progress import drain  # noqa: E402
from napari_unet.core.segment import iter_segment  # noqa: E402

#: Blocks of 32 px (several per plane), read without network halo, objects up to 24 px.
BLOCKS = {"block": 32, "halo": 0, "max_object": 24, "device": "cpu"}


def disks(n: int, shape=(64, 80), seed: int = 0) -> np.ndarray:
    """``n`` planes of bright disks drifting 2 px per plane across the 32-px block borders; one
    disk appears at plane 1 and one vanishes after plane 1."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    stack = np.full((n, *shape), 10, np.uint16)
    rng = np.random.default_rng(seed)
    for t in range(n):
        for k, (cy, cx, r) in enumerate([(30, 28, 7), (12, 50, 5), (45, 62, 6), (52, 14, 5)]):
            if (k == 2 and t == 0) or (k == 3 and t > 1):
                continue
            stack[t][(yy - cy - t) ** 2 + (xx - cx - 2 * t) ** 2 <= r * r] = 1000
    return stack + rng.integers(0, 5, stack.shape, dtype=np.uint16)


def in_memory(image: np.ndarray, axes: str, **options) -> np.ndarray:
    return drain(iter_segment(image, threshold_net(), axes=axes, device="cpu", **options))


def test_a_time_lapse_is_segmented_frame_by_frame_and_tracked_like_in_memory(tmp_path: Path, dask_client) -> None:
    movie = disks(4)
    result = segment_blocks(movie, threshold_net(), out=tmp_path / "out.zarr", axes="TYX", client=dask_client, **BLOCKS)
    labels = zarr.open_array(str(tmp_path / "out.zarr"))
    assert labels.chunks == (1, 32, 32) and result.n_blocks == 4 * 2 * 3
    labels = labels[:]
    expected = in_memory(movie, "TYX")
    # one bijection over the whole movie: the same pixels form the same tracks in every frame
    assert same_up_to_relabelling(labels, expected)
    assert result.n_objects == expected.max() == 4  # tracks, not per-frame objects
    first = labels[0][30, 28]
    assert first > 0 and all(labels[t][30 + t, 28 + 2 * t] == first for t in range(4))
    signature = json.loads((result.records / "signature.json").read_text())
    assert signature["options"]["track"] is True and signature["options"]["z_mode"] is None
    assert signature["shape"] == [4, 64, 80] and signature["block"] == [1, 32, 32]


def test_without_track_each_frame_has_its_own_ids(tmp_path: Path, dask_client) -> None:
    movie = disks(3)
    result = segment_blocks(
        movie, threshold_net(), out=tmp_path / "o.zarr", axes="TYX", client=dask_client, track=False, **BLOCKS
    )
    labels = zarr.open_array(str(tmp_path / "o.zarr"))[:]
    assert same_up_to_relabelling(labels, in_memory(movie, "TYX", track=False))
    per_frame = [set(np.unique(f)) - {0} for f in labels]
    assert result.n_objects == sum(map(len, per_frame)) == 10 and not per_frame[0] & per_frame[1]


def test_a_z_stack_with_a_2d_model_links_planes_like_in_memory_stitch(tmp_path: Path, dask_client) -> None:
    stack = disks(5, seed=1)
    out = tmp_path / "z.zarr"
    result = segment_blocks(stack, threshold_net(), out=out, axes="ZYX", client=dask_client, z_mode="stitch", **BLOCKS)
    labels = zarr.open_array(str(out))[:]
    expected = in_memory(stack, "ZYX", z_mode="stitch")
    assert same_up_to_relabelling(labels, expected) and result.n_objects == expected.max() == 4
    planes = segment_blocks(
        stack, threshold_net(), out=tmp_path / "p.zarr", axes="ZYX", client=dask_client, z_mode="planes", **BLOCKS
    )
    assert same_up_to_relabelling(
        zarr.open_array(str(tmp_path / "p.zarr"))[:], in_memory(stack, "ZYX", z_mode="planes")
    )
    assert planes.n_objects == 4 + 4 * 3  # 2D objects, ids unique over the stack


def test_z_mode_3d_links_the_planes_instead_with_a_note(tmp_path: Path, dask_client) -> None:
    stack = disks(3, seed=2)
    with pytest.warns(UserWarning, match=r"z_mode='3d' needs the whole stack's features at once; block-wise runs"):
        result = segment_blocks(
            stack, threshold_net(), out=tmp_path / "z.zarr", axes="ZYX", client=dask_client, **BLOCKS
        )
    labels = zarr.open_array(str(tmp_path / "z.zarr"))[:]
    assert same_up_to_relabelling(labels, in_memory(stack, "ZYX", z_mode="stitch"))
    options = json.loads((result.records / "signature.json").read_text())["options"]
    assert options["z_mode"] == "stitch" and options["link_iou"] == 0.1 and options["track"] is False


def test_resume_passes_the_frames_again_from_the_block_ids(tmp_path: Path, dask_client) -> None:
    movie = disks(3, seed=3)
    out = tmp_path / "out.zarr"
    segment_blocks(movie, threshold_net(), out=out, axes="TYX", client=dask_client, **BLOCKS)
    done = zarr.open_array(str(out))[:]
    broken = zarr.open_array(str(out), mode="r+")
    broken[1, :32, :32] = 7  # as if killed while frame 1 was being rewritten
    broken[2] = 0
    result = segment_blocks(movie, threshold_net(), out=out, axes="TYX", client=dask_client, resume=True, **BLOCKS)
    assert result.run == [] and len(result.skipped) == result.n_blocks == 18
    np.testing.assert_array_equal(zarr.open_array(str(out))[:], done)


def test_an_output_chunked_across_frames_is_refused(tmp_path: Path, dask_client) -> None:
    out = zarr.create_array(str(tmp_path / "o.zarr"), shape=(3, 64, 80), chunks=(2, 32, 32), dtype=np.uint32)
    with pytest.raises(ValueError, match=r"out has chunks \(2, 32, 32\) \(TYX\): .* chunks of 1 along the loop axes T"):
        segment_blocks(disks(3), threshold_net(), out=out, axes="TYX", client=dask_client, **BLOCKS)


def test_the_cli_links_a_z_stack_block_wise_with_a_note_for_z_mode_3d(tmp_path: Path, dask_client, capsys) -> None:
    from napari_unet.cli import main
    from napari_unet.core.image.zarr_copy import write_image
    from napari_unet.core.image.zarr_write import read_zarr_provenance
    from napari_unet.core.model.file import save_model

    stack = disks(3, seed=4)
    path = write_image(tmp_path / "stack.zarr", stack, axes="ZYX")
    model = save_model(threshold_net(), tmp_path / "t.safetensors")
    argv = [path, "-m", model, "--into-input", "--scheduler", dask_client.scheduler.address, "--block", "32"]
    status = main(["segment", *(str(a) for a in argv), "--halo", "0", "--max-object", "24", "--no-progress"])
    out, err = capsys.readouterr()
    assert status == 0, err
    assert f"napari-unet: note: {path}: z_mode='3d' needs the whole stack's features at once; block-wise runs" in err
    assert "(18 blocks, 18 run, 0 resumed, 4 objects" in out
    labels = zarr.open_array(str(path / "labels" / "stack_labels" / "0"))[:]
    assert same_up_to_relabelling(labels, in_memory(stack, "ZYX", z_mode="stitch"))
    run = read_zarr_provenance(path / "labels" / "stack_labels")["blocks"]
    assert run["z_mode"] == "stitch" and run["track"] is False
