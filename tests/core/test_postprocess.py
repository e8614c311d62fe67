"""Behaviour of napari_unet.core.postprocess on hand-made probability arrays with known answers."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from napari_unet.core.postprocess import (
    instance_labels,
    labels_from_probabilities,
    semantic_labels,
    smallest_label_dtype,
)

BACKGROUND, INTERIOR, BOUNDARY = 0, 1, 2


def probs_from_classes(class_map: np.ndarray, n_classes: int = 3, confidence: float = 0.8) -> np.ndarray:
    """Soft probabilities of shape (n_classes, *class_map.shape) whose argmax is ``class_map``."""
    other = (1.0 - confidence) / (n_classes - 1)
    probs = np.full((n_classes, *class_map.shape), other, dtype=np.float32)
    for c in range(n_classes):
        probs[c][class_map == c] = confidence
    return probs


def foreground_probs(mask: np.ndarray) -> np.ndarray:
    """Single-class foreground probability (1, *mask.shape): 0.9 inside, 0.1 outside."""
    return np.where(mask, 0.9, 0.1).astype(np.float32)[np.newaxis]


def sizes(labels: np.ndarray) -> dict[int, int]:
    ids, counts = np.unique(labels[labels > 0], return_counts=True)
    return dict(zip(ids.tolist(), counts.tolist()))


def touching_squares(line_width: int) -> np.ndarray:
    """37x41 class map: two 15-row squares side by side separated by a boundary line.

    Left interior: rows 5..19, cols 4..(15-line_width//2); the boundary line sits in the
    middle; right interior follows. Total foreground is 15 x 24 = 360 pixels.
    """
    cls = np.zeros((37, 41), dtype=np.int64)
    cls[5:20, 4:28] = INTERIOR
    start = 16 - line_width // 2
    cls[5:20, start : start + line_width] = BOUNDARY
    return cls


# --------------------------------------------------------------------------------------
# smallest_label_dtype
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("max_label", "expected"),
    [
        (0, np.uint16),
        (255, np.uint16),
        (65535, np.uint16),
        (65536, np.uint32),
        (2**32 - 1, np.uint32),
        (2**32, np.uint64),
        (2**64 - 1, np.uint64),
    ],
)
def test_smallest_label_dtype(max_label: int, expected: type) -> None:
    assert smallest_label_dtype(max_label) == np.dtype(expected)


def test_smallest_label_dtype_rejects_negative() -> None:
    with pytest.raises(ValueError, match="-1"):
        smallest_label_dtype(-1)


# --------------------------------------------------------------------------------------
# instances with a boundary class
# --------------------------------------------------------------------------------------
def test_boundary_class_separates_touching_squares_exact_counts() -> None:
    # A 2-pixel line: each line column touches exactly one interior, so the split is exact.
    probs = probs_from_classes(touching_squares(line_width=2))
    labels = instance_labels(probs, boundary_class=BOUNDARY)
    assert labels.shape == (37, 41)
    assert labels.dtype == np.uint16
    assert sizes(labels) == {1: 180, 2: 180}
    # The left object is the left half (incl. its line column), the right one the right half.
    assert np.all(labels[5:20, 4:16] == 1)
    assert np.all(labels[5:20, 16:28] == 2)
    assert np.all(labels[:5] == 0) and np.all(labels[20:] == 0)


def test_boundary_class_thin_line_assigns_boundary_to_neighbours() -> None:
    cls = touching_squares(line_width=1)
    probs = probs_from_classes(cls)
    labels = instance_labels(probs, boundary_class=BOUNDARY)
    counts = sizes(labels)
    assert sorted(counts) == [1, 2]
    # Every foreground pixel, boundary included, belongs to an object.
    assert np.array_equal(labels > 0, cls != BACKGROUND)
    assert sum(counts.values()) == 360
    # Each object holds its whole interior: 15 x 12 = 180 on the left, 15 x 11 = 165 on the right.
    assert np.all(labels[5:20, 4:16] == 1)
    assert np.all(labels[5:20, 17:28] == 2)


def test_same_squares_without_boundary_class_merge() -> None:
    probs = probs_from_classes(touching_squares(line_width=2))
    labels = instance_labels(probs)
    assert sizes(labels) == {1: 360}


def test_via_dispatcher_matches_instance_labels() -> None:
    probs = probs_from_classes(touching_squares(line_width=2))
    direct = instance_labels(probs, boundary_class=BOUNDARY)
    via = labels_from_probabilities(probs, mode="instances", boundary_class=BOUNDARY)
    assert np.array_equal(direct, via)
    assert via.dtype == direct.dtype


def test_boundary_only_blob_is_kept_and_min_size_removes_it() -> None:
    cls = touching_squares(line_width=2)
    cls[28:31, 30:33] = BOUNDARY  # a 9-pixel blob the model sees as all boundary
    probs = probs_from_classes(cls)
    labels = instance_labels(probs, boundary_class=BOUNDARY)
    assert sorted(sizes(labels).values()) == [9, 180, 180]
    assert len(np.unique(labels[28:31, 30:33])) == 1
    filtered = instance_labels(probs, boundary_class=BOUNDARY, min_size=10)
    assert sizes(filtered) == {1: 180, 2: 180}


@pytest.mark.parametrize("bad", [0, 3, -1])
def test_boundary_class_out_of_range(bad: int) -> None:
    probs = probs_from_classes(touching_squares(line_width=2))
    with pytest.raises(ValueError, match=f"boundary_class.*{bad}"):
        instance_labels(probs, boundary_class=bad)


def test_boundary_class_needs_three_classes() -> None:
    probs = probs_from_classes(touching_squares(line_width=2) > 0, n_classes=2)
    with pytest.raises(ValueError, match="at least 3 classes.*2 class"):
        instance_labels(probs, boundary_class=1)


# --------------------------------------------------------------------------------------
# instances: stacks, min_size, 3D, threshold, dtype
# --------------------------------------------------------------------------------------
def test_three_frame_stack_has_unique_ids_across_frames() -> None:
    stack = np.zeros((3, 37, 41), dtype=bool)
    stack[0, 2:6, 2:6] = True  # frame 0: one object (16 px)
    stack[1, 2:6, 2:6] = True  # frame 1: two objects (16, 25 px)
    stack[1, 20:25, 30:35] = True
    stack[2, 1:3, 1:3] = True  # frame 2: three objects (4, 9, 1 px)
    stack[2, 10:13, 10:13] = True
    stack[2, 30, 39] = True
    labels = instance_labels(foreground_probs(stack))
    assert labels.shape == (3, 37, 41)
    assert labels.dtype == np.uint16
    assert sizes(labels[0]) == {1: 16}
    assert sizes(labels[1]) == {2: 16, 3: 25}
    assert sizes(labels[2]) == {4: 4, 5: 9, 6: 1}
    # Same answer with 3 classes and the frame axis as a leading axis.
    cls = stack.astype(np.int64)
    assert np.array_equal(instance_labels(probs_from_classes(cls, n_classes=2)), labels)


def test_several_leading_axes_are_offset_in_c_order() -> None:
    stack = np.zeros((2, 3, 9, 11), dtype=bool)
    stack[..., 4, 5] = True  # one single-pixel object per block
    labels = instance_labels(foreground_probs(stack))
    assert labels.shape == (2, 3, 9, 11)
    assert labels[:, :, 4, 5].tolist() == [[1, 2, 3], [4, 5, 6]]


def test_min_size_removes_three_pixel_object_and_relabels_consecutively() -> None:
    mask = np.zeros((37, 41), dtype=bool)
    mask[1:5, 1:5] = True  # 16 px, first in raster order
    mask[10, 3:6] = True  # 3 px, second in raster order
    mask[20:25, 20:25] = True  # 25 px, third
    unfiltered = instance_labels(foreground_probs(mask))
    assert sizes(unfiltered) == {1: 16, 2: 3, 3: 25}
    labels = instance_labels(foreground_probs(mask), min_size=4)
    assert sizes(labels) == {1: 16, 2: 25}
    assert np.all(labels[10, 3:6] == 0)
    # min_size equal to an object's size keeps it ("fewer pixels" are removed).
    assert sizes(instance_labels(foreground_probs(mask), min_size=3)) == {1: 16, 2: 3, 3: 25}


def test_min_size_offsets_count_only_kept_objects() -> None:
    stack = np.zeros((2, 37, 41), dtype=bool)
    stack[0, 0, 0] = True  # removed
    stack[0, 5:9, 5:9] = True
    stack[1, 0:2, 0:2] = True
    labels = instance_labels(foreground_probs(stack), min_size=2)
    assert sizes(labels[0]) == {1: 16}
    assert sizes(labels[1]) == {2: 4}


def test_face_connectivity_diagonal_pixels_are_separate() -> None:
    mask = np.zeros((37, 41), dtype=bool)
    mask[3, 3] = mask[4, 4] = True
    labels = instance_labels(foreground_probs(mask))
    assert sizes(labels) == {1: 1, 2: 1}


def test_spatial_ndim_3_connects_across_z() -> None:
    vol = np.zeros((5, 37, 41), dtype=bool)
    vol[0:3, 10:14, 10:14] = True  # a 3 x 4 x 4 column across z
    vol[4, 30:32, 30:32] = True  # separate 4-voxel object
    probs = foreground_probs(vol)
    labels3d = instance_labels(probs, spatial_ndim=3)
    assert labels3d.shape == (5, 37, 41)
    assert sizes(labels3d) == {1: 48, 2: 4}
    # Treated as a stack of 2D planes, the column splits into one object per plane.
    labels2d = instance_labels(probs, spatial_ndim=2)
    assert sizes(labels2d) == {1: 16, 2: 16, 3: 16, 4: 4}


def test_spatial_ndim_3_face_connectivity_and_leading_time_axis() -> None:
    vol = np.zeros((2, 4, 9, 11), dtype=bool)  # T, Z, Y, X
    vol[:, 1, 2, 2] = True
    vol[:, 2, 3, 3] = True  # only diagonal contact with the voxel above: separate
    vol[:, 1:4, 6, 6] = True  # face contact across z: one object
    labels = instance_labels(foreground_probs(vol), spatial_ndim=3)
    assert labels.shape == (2, 4, 9, 11)
    assert sizes(labels[0]) == {1: 1, 2: 3, 3: 1}
    assert sizes(labels[1]) == {4: 1, 5: 3, 6: 1}


def test_spatial_ndim_3_with_boundary_class() -> None:
    cls2d = touching_squares(line_width=2)
    cls = np.stack([cls2d, cls2d, np.zeros_like(cls2d)])  # Z=3, objects span z 0..1
    labels = instance_labels(probs_from_classes(cls), spatial_ndim=3, boundary_class=BOUNDARY)
    assert sizes(labels) == {1: 360, 2: 360}


def test_single_class_threshold() -> None:
    probs = np.zeros((1, 37, 41), dtype=np.float32)
    probs[0, 2:4, 2:4] = 0.5  # exactly the threshold: foreground (p >= threshold)
    probs[0, 10:13, 10:13] = 0.7
    probs[0, 20:22, 30:35] = 0.3
    assert sizes(instance_labels(probs)) == {1: 4, 2: 9}
    assert sizes(instance_labels(probs, threshold=0.6)) == {1: 9}
    assert sizes(instance_labels(probs, threshold=0.2)) == {1: 4, 2: 9, 3: 10}


def test_empty_prediction_gives_zero_labels() -> None:
    probs = np.zeros((1, 2, 37, 41), dtype=np.float32)
    labels = instance_labels(probs, min_size=5)
    assert labels.shape == (2, 37, 41)
    assert labels.dtype == np.uint16
    assert not labels.any()


def test_dtype_switches_to_uint32_above_65535_objects() -> None:
    mask = np.zeros((600, 600), dtype=bool)
    mask[::2, ::2] = True  # 300 x 300 isolated single pixels
    labels = instance_labels(foreground_probs(mask), min_size=0)
    assert labels.dtype == np.uint32
    assert labels.max() == 90000
    assert len(np.unique(labels)) == 90001  # background + 90000 distinct ids
    assert np.array_equal(labels > 0, mask)


def test_dtype_widens_mid_stack() -> None:
    mask = np.zeros((3, 300, 300), dtype=bool)
    mask[:, ::2, ::2] = True  # 22500 per frame, 67500 in total
    labels = instance_labels(foreground_probs(mask))
    assert labels.dtype == np.uint32
    for t in range(3):
        frame = labels[t][mask[t]]
        assert frame.min() == t * 22500 + 1
        assert frame.max() == (t + 1) * 22500
        assert len(np.unique(frame)) == 22500


# --------------------------------------------------------------------------------------
# semantic
# --------------------------------------------------------------------------------------
def test_semantic_argmax_values_and_dtype() -> None:
    cls = touching_squares(line_width=2)
    labels = semantic_labels(probs_from_classes(cls))
    assert labels.shape == (37, 41)
    assert labels.dtype == np.uint8
    assert np.array_equal(labels, cls)
    assert np.array_equal(labels_from_probabilities(probs_from_classes(cls), mode="semantic"), cls)


def test_semantic_single_class_threshold() -> None:
    probs = np.zeros((1, 2, 37, 41), dtype=np.float32)
    probs[0, 0, 3:5, 3:5] = 0.6
    probs[0, 1, 3:5, 3:5] = 0.4
    labels = semantic_labels(probs)
    assert labels.dtype == np.uint8
    assert labels.shape == (2, 37, 41)
    assert set(np.unique(labels[0]).tolist()) == {0, 1}
    assert labels[0].sum() == 4
    assert not labels[1].any()
    assert semantic_labels(probs, threshold=0.3)[1].sum() == 4


def test_semantic_many_classes_use_uint16() -> None:
    cls = np.arange(37 * 41).reshape(37, 41) % 300
    labels = semantic_labels(probs_from_classes(cls, n_classes=300, confidence=0.9))
    assert labels.dtype == np.uint16
    assert np.array_equal(labels, cls)


def test_semantic_min_size_removes_small_regions_per_class() -> None:
    cls = np.zeros((37, 41), dtype=np.int64)
    cls[5:15, 5:15] = 1  # 100 px class 1
    cls[5:15, 15:17] = 2  # 20 px class 2 touching class 1: regions are per class
    cls[30, 30:33] = 2  # 3 px class 2: removed
    cls[20:22, 2] = 1  # 2 px class 1: removed
    labels = semantic_labels(probs_from_classes(cls), min_size=4)
    expected = cls.copy()
    expected[30, 30:33] = 0
    expected[20:22, 2] = 0
    assert np.array_equal(labels, expected)
    # Per spatial block: the same 3-px region in a 3D volume spanning z is big enough.
    vol = np.stack([cls, cls])
    labels3d = semantic_labels(probs_from_classes(vol), min_size=4, spatial_ndim=3)
    assert np.array_equal(labels3d[:, 30, 30:33], np.full((2, 3), 2))
    labels2d = semantic_labels(probs_from_classes(vol), min_size=4, spatial_ndim=2)
    assert np.array_equal(labels2d, np.stack([expected, expected]))


# --------------------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------------------
def test_bad_mode_names_value_and_allowed_ones() -> None:
    probs = foreground_probs(np.zeros((37, 41), dtype=bool))
    with pytest.raises(ValueError, match="'watershed'") as info:
        labels_from_probabilities(probs, mode="watershed")
    assert "'semantic'" in str(info.value) and "'instances'" in str(info.value)


@pytest.mark.parametrize("bad", [1, 4, 0])
@pytest.mark.parametrize("func", [instance_labels, semantic_labels])
def test_bad_spatial_ndim(func, bad: int) -> None:
    probs = foreground_probs(np.zeros((3, 37, 41), dtype=bool))
    with pytest.raises(ValueError, match=f"spatial_ndim must be 2 .* or 3 .*got {bad}"):
        func(probs, spatial_ndim=bad)


def test_bad_spatial_ndim_via_dispatcher() -> None:
    probs = foreground_probs(np.zeros((3, 37, 41), dtype=bool))
    with pytest.raises(ValueError, match="got 4"):
        labels_from_probabilities(probs, spatial_ndim=4)


@pytest.mark.parametrize(
    ("shape", "spatial_ndim"),
    [((2, 37), 2), ((37, 41), 2), ((2, 37, 41), 3)],
)
def test_too_few_dimensions(shape: tuple[int, ...], spatial_ndim: int) -> None:
    probs = np.zeros(shape, dtype=np.float32)
    with pytest.raises(ValueError, match=rf"at least {1 + spatial_ndim} dimensions.*got {len(shape)}"):
        instance_labels(probs, spatial_ndim=spatial_ndim)


def test_negative_min_size() -> None:
    probs = foreground_probs(np.zeros((37, 41), dtype=bool))
    with pytest.raises(ValueError, match="min_size.*-3"):
        semantic_labels(probs, min_size=-3)


def test_module_does_not_import_torch_or_qt() -> None:
    code = (
        "import sys, napari_unet.core.postprocess\n"
        "bad = [m for m in ('torch', 'napari', 'qtpy', 'PyQt5', 'magicgui') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_strict_seeds_drop_weak_and_tiny_seeds():
    """seed_threshold / min_seed_size / keep_seedless: settings stored in instance models."""
    probs = np.zeros((3, 30, 40), np.float32)
    probs[0] = 1.0
    # a confident object (interior 0.9) ...
    probs[:, 5:15, 5:15] = np.array([0.0, 0.9, 0.1])[:, None, None]
    # ... and an unsure one (interior 0.6) with a 2-pixel confident speck
    probs[:, 18:26, 20:30] = np.array([0.0, 0.6, 0.4])[:, None, None]
    probs[:, 21, 24:26] = np.array([0.0, 0.95, 0.05])[:, None]
    default = instance_labels(probs, boundary_class=2)
    assert default.max() == 2
    strict = instance_labels(probs, boundary_class=2, seed_threshold=0.8, min_seed_size=5, keep_seedless=False)
    assert strict.max() == 1 and (strict[5:15, 5:15] == 1).all() and not strict[18:26, 20:30].any()
    kept = instance_labels(probs, boundary_class=2, seed_threshold=0.8, min_seed_size=5, keep_seedless=True)
    assert kept.max() == 2 and (kept[18:26, 20:30] == 2).all()
