"""Labels matched across the frames of a time-lapse (core/labels/tracking.py), on synthetic labels with known truth."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from napari_unet.core.labels.tracking import (
    DEFAULT_MAX_GAP,
    iter_track_labels,
    track_labels,
    tracking_settings,
    tracks_from_labels,
    write_tracks_csv,
)
from napari_unet.core.progress import Progress

SHAPE = (64, 80)


def disc(center: tuple[float, ...], radius: float, shape: tuple[int, ...] = SHAPE) -> np.ndarray:
    grid = np.ogrid[tuple(slice(0, n) for n in shape)]
    return sum((g - c) ** 2 for g, c in zip(grid, center)) <= radius**2


def movie(objects: dict[str, list], n_frames: int, shape: tuple[int, ...] = SHAPE) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame labels as segmentation makes them (every object of every frame its own id, counting
    on over the stack) and the truth (which object each pixel is: 1, 2, ... in ``objects`` order).

    ``objects``: name -> one ``(center, radius)`` or None (absent) per frame."""
    labels = np.zeros((n_frames, *shape), np.uint16)
    truth = np.zeros_like(labels)
    next_id = 1
    for t in range(n_frames):
        for k, frames in enumerate(objects.values(), start=1):
            if frames[t] is None:
                continue
            mask = disc(*frames[t], shape=shape)
            labels[t][mask] = next_id + (k * 7919) % 13  # ids neither consecutive nor ordered
            truth[t][mask] = k
        next_id += 20
    return labels, truth


def id_of(labels: np.ndarray, truth: np.ndarray, t: int, k: int) -> int:
    """The one id ``labels`` give true object ``k`` in frame ``t`` (0 when absent)."""
    ids = np.unique(labels[t][truth[t] == k])
    assert len(ids) <= 1, f"object {k} split into {ids} in frame {t}"
    return int(ids[0]) if len(ids) else 0


def moving(start: tuple[float, float], step: tuple[float, float], radius: float, n: int, gone=()) -> list:
    return [None if t in gone else ((start[0] + step[0] * t, start[1] + step[1] * t), radius) for t in range(n)]


# ---------------------------------------------------------------------------- matching
def test_moving_discs_keep_one_id_each_numbered_by_first_appearance() -> None:
    n = 10
    labels, truth = movie(
        {
            "a": moving((15, 10), (0, 3), 6, n),
            "b": moving((45, 70), (-1, -3), 7, n),
            "c": moving((35, 30), (1, 1), 5, n),
        },
        n,
    )
    before = labels.copy()
    out = track_labels(labels, axes="TYX")
    assert out is labels, "relabelled in place"
    assert np.array_equal(out > 0, before > 0), "no pixel gained or lost"
    for k in (1, 2, 3):
        assert {id_of(out, truth, t, k) for t in range(n)} == {k}
    assert set(np.unique(out)) == {0, 1, 2, 3}


def test_an_object_missing_within_max_gap_keeps_its_id_beyond_it_gets_a_new_one() -> None:
    n = 12
    objects = {
        "steady": moving((20, 15), (0, 2), 6, n),
        "blinks": moving((45, 60), (0, -1), 6, n, gone={3, 4}),  # 2 frames missing = max_gap
        "lost": moving((45, 20), (0, 1), 5, n, gone={5, 6, 7}),  # 3 frames missing > max_gap
    }
    labels, truth = movie(objects, n)
    assert DEFAULT_MAX_GAP == 2
    out = track_labels(labels, axis=0)
    assert {id_of(out, truth, t, 1) for t in range(n)} == {1}
    assert {id_of(out, truth, t, 2) for t in range(n)} == {2, 0}
    lost = [id_of(out, truth, t, 3) for t in range(n)]
    assert lost[:5] == [3] * 5 and lost[5:8] == [0, 0, 0]
    assert set(lost[8:]) == {4}, "back after more than max_gap frames: a new track"
    # with max_gap=3 the lost object is found again; with 0 even the blinking one is not
    labels, _ = movie(objects, n)
    out = track_labels(labels, axis=0, max_gap=3)
    assert {id_of(out, truth, t, 3) for t in range(n)} == {3, 0}
    labels, _ = movie(objects, n)
    out = track_labels(labels, axis=0, max_gap=0)
    assert {id_of(out, truth, t, 2) for t in range(5, n)} == {4}, "the first new id after 1, 2, 3"
    assert {id_of(out, truth, t, 3) for t in range(8, n)} == {5}


def test_a_new_object_gets_a_new_id_and_ids_are_never_reused() -> None:
    n = 8
    labels, truth = movie(
        {
            "old": moving((20, 20), (0, 2), 6, n),
            "short": moving((50, 20), (0, 0), 5, n, gone={5, 6, 7}),
            "new": moving((50, 60), (0, -1), 6, n, gone={0, 1, 2, 3}),
        },
        n,
    )
    out = track_labels(labels, axes="TYX")
    assert [id_of(out, truth, t, 3) for t in range(n)] == [0, 0, 0, 0, 3, 3, 3, 3]
    assert {id_of(out, truth, t, 2) for t in range(5)} == {2}
    assert out.max() == 3


def test_touching_objects_that_pass_each_other_keep_their_ids() -> None:
    """Two discs on neighbouring lanes slide past each other, touching at every frame in the middle."""
    n = 11
    labels, truth = movie({"left": moving((30, 10), (0, 6), 6, n), "right": moving((43, 70), (0, -6), 6, n)}, n)
    assert (disc((30, 40), 6) & disc((43, 40), 6)).sum() == 0  # touching, not overlapping
    assert (disc((31, 40), 6) & disc((43, 40), 6)).sum() > 0
    out = track_labels(labels, axes="TYX")
    assert {id_of(out, truth, t, 1) for t in range(n)} == {1}
    assert {id_of(out, truth, t, 2) for t in range(n)} == {2}


def test_the_matching_is_one_to_one_and_best_overall_not_greedy() -> None:
    """a's best overlap is b', but b overlaps only b': the best one-to-one matching is a-a', b-b'."""
    labels = np.zeros((2, 1, 14), np.uint16)
    labels[0, 0, 0:10], labels[0, 0, 10:14] = 5, 6  # a, b
    labels[1, 0, 0:4], labels[1, 0, 4:14] = 9, 8  # a' (IoU 0.4 with a), b' (IoU 0.43 with a, 0.4 with b)
    out = track_labels(labels, axis=0)
    assert out[1, 0, 0] == out[0, 0, 0] == 1 and out[1, 0, 13] == out[0, 0, 13] == 2


def test_min_iou_decides_whether_a_fast_object_is_the_same() -> None:
    labels, truth = movie({"fast": moving((30, 10), (0, 6), 8, 3)}, 3)  # steps of 6 px, radius 8: IoU ~0.36
    out = track_labels(labels.copy(), axes="TYX", min_iou=0.3)
    assert {id_of(out, truth, t, 1) for t in range(3)} == {1}
    out = track_labels(labels.copy(), axes="TYX", min_iou=0.5)
    assert [id_of(out, truth, t, 1) for t in range(3)] == [1, 2, 3]


def test_3d_frames_and_a_time_axis_that_is_not_first() -> None:
    n, shape = 6, (12, 30, 30)
    objects = {
        "a": [((6, 8, 5 + 2 * t), 4) for t in range(n)],
        "b": [None if t == 2 else ((5, 22, 24 - t), 4) for t in range(n)],
    }
    labels, truth = movie(objects, n, shape)
    zty = np.ascontiguousarray(np.moveaxis(labels, 0, 1))  # ZTYX
    track_labels(zty, axes="ZTYX")
    out = np.moveaxis(zty, 1, 0)
    assert {id_of(out, truth, t, 1) for t in range(n)} == {1}
    assert {id_of(out, truth, t, 2) for t in range(n)} == {2, 0}
    tracks = tracks_from_labels(out, axes="TZYX")
    assert tracks.shape == (2 * n - 1, 5)
    first = tracks[(tracks[:, 0] == 1) & (tracks[:, 1] == 3)][0]
    np.testing.assert_allclose(first[2:], (6, 8, 11), atol=1e-6)


def test_progress_events_one_per_frame() -> None:
    labels, _ = movie({"a": moving((20, 20), (0, 1), 5, 4)}, 4)
    gen = iter_track_labels(labels, 0)
    events = []
    while True:
        try:
            events.append(next(gen))
        except StopIteration as stop:
            assert stop.value is labels
            break
    assert all(isinstance(e, Progress) and e.stage == "track" for e in events)
    assert [e.step for e in events] == [0, 1, 2, 3, 4] and events[-1].total == 4


def test_uint32_labels_and_empty_frames() -> None:
    labels = np.zeros((4, 10, 10), np.uint32)
    labels[0, 2:5, 2:5] = 70_000
    labels[2, 2:5, 2:5] = 123_456  # frame 1 empty: a gap of one frame
    out = track_labels(labels, axes="TYX")
    assert out.dtype == np.uint32 and out[0, 3, 3] == out[2, 3, 3] == 1 and out[1].max() == out[3].max() == 0


# ---------------------------------------------------------------------------- tracks
def test_tracks_from_labels_are_sorted_centroids_and_the_csv_holds_them(tmp_path) -> None:
    labels = np.zeros((3, 20, 20), np.uint16)
    labels[0, 2:4, 2:6] = 2  # centroid (2.5, 3.5)
    labels[1, 10:12, 10:12] = 1
    labels[2, 2:4, 4:8] = 2  # centroid (2.5, 5.5)
    tracks = tracks_from_labels(labels, axes="TYX")
    np.testing.assert_allclose(tracks, [[1, 1, 10.5, 10.5], [2, 0, 2.5, 3.5], [2, 2, 2.5, 5.5]])
    assert tracks.dtype == np.float64
    path = write_tracks_csv(tmp_path / "t.csv", tracks, "TYX")
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["track_id", "t", "y", "x"]
    assert rows[1:] == [["1", "1", "10.500", "10.500"], ["2", "0", "2.500", "3.500"], ["2", "2", "2.500", "5.500"]]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.csv"], "no temporary file left"
    assert tracks_from_labels(np.zeros((2, 5, 5), np.uint8), axis=0).shape == (0, 4)
    with pytest.raises(ValueError, match="do not fit axes 'TZYX'"):
        write_tracks_csv(tmp_path / "u.csv", tracks, "TZYX")


def test_tracking_settings_say_what_the_provenance_records() -> None:
    assert tracking_settings(True, "instances", "TYX") == {"track": True, "track_max_gap": 2, "track_min_iou": 0.1}
    assert tracking_settings(False, "instances", "TYX") == {"track": False}
    assert tracking_settings(True, "instances", "ZYX") == {"track": False}
    assert tracking_settings(True, "semantic", "TYX") == {"track": False}


# ---------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("kwargs", "error", "fragment"),
    [
        ({"axes": "TYX", "max_gap": -1}, ValueError, "max_gap must be an integer >= 0, got -1 (int)"),
        ({"axes": "TYX", "max_gap": 1.5}, ValueError, "max_gap must be an integer >= 0, got 1.5"),
        ({"axes": "TYX", "min_iou": 1.5}, ValueError, "min_iou must be an IoU in 0..1, got 1.5 (float)"),
        ({"axes": "TYX", "min_iou": "0.3"}, ValueError, "min_iou must be an IoU in 0..1, got '0.3' (str)"),
        ({"axes": "ZYX"}, ValueError, "axes 'ZYX' have no time axis T"),
        ({"axes": "YX"}, ValueError, "one letter per dimension (3), got 'YX'"),
        ({"axis": 3}, ValueError, "axis must be an integer in -3..2, got 3 (int)"),
        ({}, ValueError, "give the time axis as axis="),
        ({"axis": 0, "axes": "TYX"}, ValueError, "give the time axis as axis="),
    ],
)
def test_bad_options_name_the_value(kwargs, error, fragment) -> None:
    with pytest.raises(error) as info:
        track_labels(np.zeros((2, 4, 4), np.uint16), **kwargs)
    assert fragment in str(info.value)


def test_bad_labels_are_refused() -> None:
    with pytest.raises(TypeError, match="numpy array of integers, got ndarray of float32"):
        track_labels(np.zeros((2, 4, 4), np.float32), axis=0)
    with pytest.raises(TypeError, match="got list"):
        track_labels([[1, 2], [3, 4]], axis=0)
    with pytest.raises(ValueError, match="labels must be >= 0"):
        track_labels(np.full((2, 4, 4), -1, np.int32), axis=0)
    per_frame = np.zeros((300, 2, 2), np.uint8)  # the same id in every frame, far apart: 300 tracks
    per_frame[::2, 0, 0] = per_frame[1::2, 1, 1] = 1
    with pytest.raises(ValueError, match="256 tracks do not fit in labels of uint8 .* labels.astype"):
        track_labels(per_frame, axis=0, max_gap=0)
    with pytest.raises(ValueError, match=r"at least one more axis, got shape \(5,\)"):
        track_labels(np.zeros(5, np.uint16), axis=0)
