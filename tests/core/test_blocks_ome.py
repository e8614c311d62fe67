"""Block-wise runs writing OME-Zarr labels: ``napari-unet segment IN.zarr --into-input`` (block-wise
on a LocalCluster by default), ``--output OUT.zarr``, a killed run and ``--resume``, a time-lapse
(block-wise, tracked), ``--scheduler none``, and ``napari_unet.segment_blocks(into=/out=)``.

The model is the threshold network of ``known_nets`` (every pixel depends on itself only), so the
block-wise labels equal the in-memory ones up to relabelling, on a real DSB2018 image."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("dask")
zarr = pytest.importorskip("zarr")
pytest.importorskip("distributed")

from known_nets import threshold_net  # noqa: E402
from test_blocks_resume import same_up_to_relabelling  # noqa: E402

import napari_unet  # noqa: E402
from napari_unet.cli import main  # noqa: E402
from napari_unet.core import progress as progress_module  # noqa: E402
from napari_unet.core.image.ngff import ome_attrs  # noqa: E402
from napari_unet.core.image.zarr_copy import write_image  # noqa: E402
from napari_unet.core.image.zarr_write import labels_names, read_zarr_provenance  # noqa: E402
from napari_unet.core.model.file import save_model  # noqa: E402
from napari_unet.core.progress import drain  # noqa: E402
from napari_unet.core.segment import iter_segment  # noqa: E402

SRC = str(Path(__file__).resolve().parents[2] / "src")
BLOCKS = ["--block", "64", "--halo", "0", "--max-object", "64"]


@pytest.fixture
def real(data_dir: Path, tmp_path: Path, monkeypatch) -> tuple[Path, np.ndarray]:
    """A crop of a real DSB2018 image converted to OME-Zarr (zarr v3, NGFF 0.5, chunks of 64)."""
    import tifffile

    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([SRC, *filter(None, [os.environ.get("PYTHONPATH")])]))
    path = sorted((data_dir / "dsb2018_fluo" / "images").glob("*.tif"))[0]
    image = np.ascontiguousarray(tifffile.imread(path)[:192, :256])
    return write_image(tmp_path / "cells.ome.zarr", image, axes="YX", chunks=(64, 64)), image


@pytest.fixture
def model(tmp_path: Path) -> Path:
    return save_model(threshold_net(), tmp_path / "threshold.safetensors")


def in_memory(image: np.ndarray) -> np.ndarray:
    return drain(iter_segment(image, threshold_net(), axes="YX", device="cpu"))


def segment(capsys, *argv: object) -> tuple[int, str, str]:
    status = main(["segment", *(str(a) for a in argv), "--no-progress"])
    out = capsys.readouterr()
    return status, out.out, out.err


def test_into_input_is_block_wise_by_default_and_equals_in_memory(real, model: Path, capsys) -> None:
    path, image = real
    status, out, err = segment(capsys, path, "-m", model, "--into-input", "--workers", "2", *BLOCKS)
    assert status == 0, err
    assert "12 blocks of [64, 64] px" in out and "dashboard http" in out  # the first progress line, always shown
    assert f"-> {path / 'labels' / 'cells_labels'} (12 blocks, 12 run, 0 resumed" in out
    assert "workers: 0 cpu, 1 cpu" in out
    expected = in_memory(image)
    labels = zarr.open_group(str(path / "labels" / "cells_labels"))
    assert same_up_to_relabelling(labels["0"][:], expected) and labels["0"][:].max() == expected.max() > 10
    assert labels_names(path) == ["cells_labels"]
    assert sorted(p.name for p in (path / "labels").iterdir()) == ["cells_labels", "zarr.json"]  # no records left
    assert ome_attrs(labels)["image-label"]["source"] == {"image": "../../"}
    prov = read_zarr_provenance(path / "labels" / "cells_labels")
    assert prov["command"] == "napari-unet segment" and prov["scheduler"] == "local"
    run = prov["blocks"]
    assert run["n_blocks"] == 12 and run["block"] == [64, 64] and run["workers"] == 2
    assert run["percentiles"] == [1.0, 99.8] and len(run["lo"]) == len(run["hi"]) == 1
    assert set(run["devices"].values()) == {"cpu"}

    from ome_zarr.io import parse_url
    from ome_zarr.reader import Label, Reader

    nodes = [n for n in Reader(parse_url(str(path)))() if n.load(Label)]
    assert [n.zarr.path.rstrip("/").rsplit("/", 1)[-1] for n in nodes] == ["cells_labels"]
    np.testing.assert_array_equal(np.asarray(nodes[0].data[0]), labels["0"][:])


def test_a_killed_run_leaves_nothing_visible_and_resume_completes(real, model: Path, capsys, dask_client, monkeypatch):
    path, image = real
    argv = [path, "-m", model, "--into-input", "--scheduler", dask_client.scheduler.address, *BLOCKS]
    real_drain = progress_module.drain

    def killed_after_3_blocks(gen, progress=None):
        def watch(event):
            if progress is not None:
                progress(event)
            if event.stage == "blocks" and event.message.startswith("block ") and event.step >= 3:
                raise KeyboardInterrupt

        return real_drain(gen, watch)

    monkeypatch.setattr(progress_module, "drain", killed_after_3_blocks)
    status, _, err = segment(capsys, *argv)
    assert status == 130 and "blocks are done; run the same command with --resume to continue" in err
    assert labels_names(path) == []
    visible = [p.name for p in (path / "labels").iterdir() if not p.name.startswith(".")]
    assert visible == ["zarr.json"]  # only hidden names: .cells_labels.partial(.blocks)
    monkeypatch.setattr(progress_module, "drain", real_drain)
    status, out, err = segment(capsys, *argv, "--resume")
    assert status == 0, err
    resumed = int(out.split(" resumed")[0].rsplit(" ", 1)[-1])
    assert resumed >= 3 and "(12 blocks, " in out
    assert labels_names(path) == ["cells_labels"]
    labels = zarr.open_array(str(path / "labels" / "cells_labels" / "0"))[:]
    assert same_up_to_relabelling(labels, in_memory(image))
    assert sorted(p.name for p in (path / "labels").iterdir()) == ["cells_labels", "zarr.json"]


def test_output_zarr_block_wise_holds_the_image_and_labels(real, model: Path, capsys, dask_client, tmp_path) -> None:
    path, image = real
    out = tmp_path / "res.zarr"
    argv = [path, "-m", model, "-o", out, "--scheduler", dask_client.scheduler.address, *BLOCKS]
    status, lines, err = segment(capsys, *argv)
    assert status == 0, err
    np.testing.assert_array_equal(zarr.open_group(str(out))["0"][:], image)
    assert labels_names(out) == ["cells_labels"]
    assert same_up_to_relabelling(zarr.open_array(str(out / "labels" / "cells_labels" / "0"))[:], in_memory(image))
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.endswith(".zarr") or p.name.startswith(".")) == [
        "cells.ome.zarr",
        "res.zarr",
    ]
    status, _, err = segment(capsys, *argv)
    assert status == 1 and f"{out} exists; use --overwrite to replace it" in err


def test_a_time_lapse_into_input_runs_block_wise_and_is_tracked(tmp_path: Path, model: Path, capsys, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([SRC, *filter(None, [os.environ.get("PYTHONPATH")])]))
    frames = np.full((3, 40, 48), 10, np.uint16)
    for t in range(3):
        frames[t, 5 + t : 15 + t, 26 + 2 * t : 36 + 2 * t] = 1000  # crosses the block border at x = 32
    frames[2, 28:34, 4:10] = 1000  # appears in the last frame
    path = write_image(tmp_path / "movie.zarr", frames, axes="TYX")
    status, out, err = segment(
        capsys, path, "-m", model, "--into-input", "--workers", "1", "--block", "32", "--halo", "0"
    )
    assert status == 0, err
    assert "note" not in err and "in memory" not in err
    assert "12 blocks of [1, 32, 32] px" in out and f"-> {path / 'labels' / 'movie_labels'} (12 blocks, 12 run" in out
    assert ", 2 objects, " in out  # two tracks
    labels = zarr.open_array(str(path / "labels" / "movie_labels" / "0"))[:]
    assert labels.shape == (3, 40, 48) and (labels[0, 5:15, 26:36] == labels[2, 7:17, 30:40]).all()
    assert same_up_to_relabelling(labels, drain(iter_segment(frames, threshold_net(), axes="TYX", device="cpu")))
    run = read_zarr_provenance(path / "labels" / "movie_labels")["blocks"]
    assert run["track"] is True and run["z_mode"] is None and run["block"] == [1, 32, 32]
    csv = tmp_path / "movie_tracks.csv"  # beside the container, as in memory
    assert f", tracks {csv}, " in out
    rows = csv.read_text().splitlines()
    assert rows[0] == "track_id,t,y,x" and len(rows) == 1 + 4
    assert rows[1:3] == [f"{labels[0, 5, 26]},0,9.500,30.500", f"{labels[0, 5, 26]},1,10.500,32.500"]


def test_scheduler_none_segments_a_zarr_input_in_memory(real, model: Path, capsys) -> None:
    path, image = real
    status, out, err = segment(capsys, path, "-m", model, "--into-input", "--scheduler", "none")
    assert status == 0, err
    assert "blocks" not in out and f"-> {path / 'labels' / 'cells_labels'}: " in out  # the in-memory result line
    labels = zarr.open_array(str(path / "labels" / "cells_labels" / "0"))[:]
    np.testing.assert_array_equal(labels, in_memory(image))


def test_the_api_writes_ome_zarr_labels_into_an_image_or_a_new_container(real, dask_client, tmp_path: Path) -> None:
    path, image = real
    net, expected = threshold_net(), in_memory(image)
    opts = {"client": dask_client, "block": 64, "halo": 0, "max_object": 64}
    result = napari_unet.segment_blocks(str(path), net, into=path, labels_name="nuclei", **opts)
    assert result.path == path / "labels" / "nuclei" and labels_names(path) == ["nuclei"]
    assert result.n_objects == expected.max() and same_up_to_relabelling(result.out[:], expected)
    new = napari_unet.segment_blocks(image, net, axes="YX", out=tmp_path / "only_labels.zarr", **opts)
    assert new.path == tmp_path / "only_labels.zarr" and "image-label" in ome_attrs(zarr.open_group(str(new.path)))
    assert read_zarr_provenance(new.path)["blocks"]["n_blocks"] == 12
    with pytest.raises(ValueError, match="give out= .* or into= .*, one of them"):
        napari_unet.segment_blocks(image, net, axes="YX", out=tmp_path / "a.zarr", into=path, **opts)
    with pytest.raises(FileExistsError, match="labels 'nuclei' already exist"):
        napari_unet.segment_blocks(str(path), net, into=path, labels_name="nuclei", **opts)
    assert labels_names(path) == ["nuclei"] and not list((path / "labels").glob(".*"))  # nothing left behind
