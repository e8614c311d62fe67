"""Time-lapses through the front ends: ``segment(track=...)``, ``napari-unet segment --track/--no-track``
and its tracks CSV, with a threshold network whose labels are known exactly (see known_nets)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import tifffile
from known_nets import threshold_net

import napari_unet
from napari_unet.cli import main
from napari_unet.core.image.io import read_image, read_provenance
from napari_unet.core.model.file import save_model

N_FRAMES, SHAPE = 6, (40, 48)


def timelapse(n_frames: int = N_FRAMES, gone: tuple[int, ...] = ()) -> np.ndarray:
    """TYX uint16: a square moving right 2 px a frame, a square moving down 1 px a frame (absent in ``gone``)."""
    rng = np.random.default_rng(0)
    stack = rng.integers(0, 100, (n_frames, *SHAPE)).astype(np.uint16)
    for t in range(n_frames):
        stack[t, 5:15, 4 + 2 * t : 14 + 2 * t] = 950
        if t not in gone:
            stack[t, 20 + t : 30 + t, 30:40] = 950
    return stack


def ids_at(labels: np.ndarray, y: int, x0: int, dx: int) -> list[int]:
    return [int(labels[t, y, x0 + dx * t]) for t in range(labels.shape[0])]


# ---------------------------------------------------------------------------- API
def test_segment_matches_labels_across_frames_by_default() -> None:
    labels = napari_unet.segment(timelapse(), threshold_net(1), axes="TYX", device="cpu")
    assert labels.shape == (N_FRAMES, *SHAPE)
    assert ids_at(labels, 10, 9, 2) == [1] * N_FRAMES
    assert [int(labels[t, 25 + t, 35]) for t in range(N_FRAMES)] == [2] * N_FRAMES
    assert set(np.unique(labels)) == {0, 1, 2}
    tracks = napari_unet.tracks_from_labels(labels, axes="TYX")
    assert tracks.shape == (2 * N_FRAMES, 4)
    np.testing.assert_allclose(tracks[tracks[:, 0] == 1][:, 3], [8.5 + 2 * t for t in range(N_FRAMES)])


def test_track_false_gives_the_per_frame_labels_of_before() -> None:
    stack = timelapse()
    per_frame = napari_unet.segment(stack, threshold_net(1), axes="TYX", device="cpu", track=False)
    looped = napari_unet.segment(stack, threshold_net(1), axes="QYX", device="cpu")  # a plain loop axis
    np.testing.assert_array_equal(per_frame, looped)
    assert len(np.unique(per_frame)) - 1 == 2 * N_FRAMES, "every object of every frame its own id"
    tracked = napari_unet.track_labels(per_frame.copy(), axes="TYX")
    np.testing.assert_array_equal(tracked, napari_unet.segment(stack, threshold_net(1), axes="TYX", device="cpu"))


def test_semantic_labels_and_images_without_t_are_not_relabelled() -> None:
    stack = timelapse()
    semantic = napari_unet.segment(stack, threshold_net(1), axes="TYX", mode="semantic", device="cpu")
    assert set(np.unique(semantic)) == {0, 1}
    zyx = napari_unet.segment(stack, threshold_net(1), axes="ZYX", z_mode="planes", device="cpu")
    assert len(np.unique(zyx)) - 1 == 2 * N_FRAMES, "a z-stack of 2D planes: no matching across T"


@pytest.mark.parametrize("value", ["yes", 1, None])
def test_bad_track_option_names_the_value(value) -> None:
    with pytest.raises(ValueError, match=f"track must be True or False, got {value!r}"):
        napari_unet.segment(timelapse(), threshold_net(1), axes="TYX", track=value)


# ---------------------------------------------------------------------------- CLI
@pytest.fixture
def model1(tmp_path) -> Path:
    path = tmp_path / "models" / "one.safetensors"
    path.parent.mkdir()
    save_model(threshold_net(1), path)
    return path


def write_tyx(path: Path, stack: np.ndarray) -> Path:
    tifffile.imwrite(path, stack, imagej=True, resolution=(2.0, 2.0), metadata={"axes": "TYX", "finterval": 30})
    return path


def read_csv(path: Path) -> list[list[str]]:
    with open(path, newline="") as fh:
        return list(csv.reader(fh))


def test_cli_writes_tracks_csv_beside_the_labels(tmp_path, capsys, model1) -> None:
    source = write_tyx(tmp_path / "movie.tif", timelapse(gone=(3,)))  # one square missing in frame 3
    out = tmp_path / "out"
    status = main(["segment", str(source), "--model", str(model1), "--output", str(out), "--no-progress"])
    lines = capsys.readouterr().out.splitlines()
    assert status == 0
    assert sorted(p.name for p in out.iterdir()) == ["movie_labels.tif", "movie_tracks.csv"]
    assert "2 tracks" in lines[0] and "movie_tracks.csv" in lines[0]
    labels = read_image(out / "movie_labels.tif").data
    assert ids_at(labels, 10, 9, 2) == [1] * N_FRAMES
    rows = read_csv(out / "movie_tracks.csv")
    assert rows[0] == ["track_id", "t", "y", "x"]
    body = [(int(r[0]), int(r[1]), float(r[2]), float(r[3])) for r in rows[1:]]
    assert [r[:2] for r in body] == [(1, t) for t in range(6)] + [(2, t) for t in (0, 1, 2, 4, 5)]
    assert body[0][2:] == (9.5, 8.5) and body[-1][2:] == (29.5, 34.5)
    prov = read_provenance(out / "movie_labels.tif")
    assert prov["options"]["track"] is True
    assert (prov["options"]["track_max_gap"], prov["options"]["track_min_iou"]) == (2, 0.1)


def test_cli_no_track_writes_per_frame_labels_and_no_csv(tmp_path, capsys, model1) -> None:
    source = write_tyx(tmp_path / "movie.tif", timelapse())
    out = tmp_path / "out"
    argv = ["segment", str(source), "--model", str(model1), "--output", str(out), "--no-progress", "--no-track"]
    assert main(argv) == 0
    assert "12 objects" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["movie_labels.tif"]
    assert len(np.unique(read_image(out / "movie_labels.tif").data)) - 1 == 2 * N_FRAMES
    prov = read_provenance(out / "movie_labels.tif")
    assert prov["options"]["track"] is False and "track_max_gap" not in prov["options"]


def test_cli_help_documents_the_option(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["segment", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--track, --no-track" in text and "<stem>_tracks.csv" in text
