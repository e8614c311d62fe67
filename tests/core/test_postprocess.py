"""Behaviour of napari_unet.core.labels.postprocess on hand-made probability arrays with known answers."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from scipy import ndimage
from skimage.segmentation import watershed

from napari_unet.core.inference.features import SEED_BIT, features_from_probabilities
from napari_unet.core.labels.making import smallest_label_dtype
from napari_unet.core.labels.postprocess import labels_from_features, labels_from_probabilities
from napari_unet.core.labels.probabilities import instance_labels, semantic_labels

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


@pytest.mark.parametrize(("shape", "spatial_ndim"), [((2, 37), 2), ((37, 41), 2), ((2, 37, 41), 3)])
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
        "import sys, napari_unet.core.labels.postprocess\n"
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


# --------------------------------------------------------------------------------------
# label features (uint8 codes + landscape) and banded processing of huge blocks
# --------------------------------------------------------------------------------------
def blob_probabilities(
    shape: tuple[int, ...], n_blobs: int, *, seed: int, noise: float = 0.0, exact_landscape: bool = False
) -> np.ndarray:
    """Soft (background, interior, boundary) probabilities of random touching discs / spheres.

    Overlapping blobs are split along their Voronoi line; the boundary class covers each blob's
    outline and the contact lines, and the class masks are blurred (plus optional noise) into
    probabilities. ``exact_landscape`` rounds the boundary probability to multiples of 1/255,
    which the uint8 landscape represents exactly.
    """
    rng = np.random.default_rng(seed)
    grid = np.indices(shape, dtype=np.float32)
    owner = np.zeros(shape, dtype=np.int32)
    nearest = np.full(shape, np.inf, dtype=np.float32)
    for i in range(n_blobs):
        centre = rng.uniform(0, shape).astype(np.float32)
        radius = rng.uniform(5, 11)
        d = np.sqrt(sum((g - c) ** 2 for g, c in zip(grid, centre))) / radius
        closer = (d < 1) & (d < nearest)
        owner[closer] = i + 1
        nearest[closer] = d[closer]
    edge = np.zeros(shape, dtype=bool)
    for axis in range(len(shape)):
        lo = [slice(None)] * len(shape)
        hi = [slice(None)] * len(shape)
        lo[axis], hi[axis] = slice(None, -1), slice(1, None)
        differs = owner[tuple(lo)] != owner[tuple(hi)]
        edge[tuple(lo)] |= differs
        edge[tuple(hi)] |= differs
    masks = (owner == 0, (owner > 0) & ~edge, (owner > 0) & edge)
    probs = np.stack([ndimage.gaussian_filter(m.astype(np.float32), 1.0) for m in masks])
    if noise:
        probs += rng.normal(0, noise, probs.shape).astype(np.float32)
    probs = np.clip(probs, 1e-3, None)
    probs /= probs.sum(axis=0)
    if exact_landscape:
        boundary = np.round(probs[BOUNDARY] * 255) / 255
        rest = (1 - boundary) / (probs[BACKGROUND] + probs[INTERIOR])
        probs[INTERIOR] *= rest
        probs[BOUNDARY] = boundary
        probs[BACKGROUND] = 1 - probs[INTERIOR] - probs[BOUNDARY]
    return probs.astype(np.float32)


def reference_float_instances(
    probs: np.ndarray,
    *,
    min_size: int = 0,
    seed_threshold: float | None = None,
    min_seed_size: int = 0,
    keep_seedless: bool = True,
) -> np.ndarray:
    """The float-probability algorithm (one block, boundary class 2) written out with scipy / skimage."""
    structure = ndimage.generate_binary_structure(probs.ndim - 1, 1)
    classes = np.argmax(probs, axis=0)
    foreground = classes != BACKGROUND
    if seed_threshold is None:
        interior = foreground & (classes != BOUNDARY)
    else:
        interior = probs[INTERIOR] >= seed_threshold
    seeds, n_seeds = ndimage.label(interior, structure=structure)
    if min_seed_size > 1:
        small = np.bincount(seeds.ravel()) < min_seed_size
        small[0] = False
        seeds[small[seeds]] = 0
        seeds, n_seeds = ndimage.label(seeds > 0, structure=structure)  # seeds do not touch: same components
    labels = watershed(probs[BOUNDARY], markers=seeds, mask=foreground | (seeds > 0), connectivity=1)
    orphans = foreground & (labels == 0)
    if keep_seedless:
        extra, _ = ndimage.label(orphans, structure=structure)
        labels[extra > 0] = extra[extra > 0] + n_seeds
    counts = np.bincount(labels.ravel())
    keep = counts >= max(min_size, 1)
    keep[0] = False
    lut = np.zeros(counts.size, dtype=np.int64)
    lut[keep] = np.arange(1, keep.sum() + 1)
    return lut[labels]


def features(probs: np.ndarray, **kwargs) -> tuple[np.ndarray, np.ndarray | None]:
    return features_from_probabilities(probs, **kwargs)


@pytest.mark.parametrize(
    "settings",
    [
        {},
        {"min_size": 30},
        {"seed_threshold": 0.7, "min_seed_size": 8, "keep_seedless": True},
        {"seed_threshold": 0.7, "min_seed_size": 8, "keep_seedless": False},
    ],
)
@pytest.mark.parametrize(("shape", "n_blobs"), [((120, 150), 70), ((24, 48, 40), 30)])
def test_features_path_equals_float_path_on_touching_blobs(shape, n_blobs, settings) -> None:
    # The boundary probability is a multiple of 1/255, so quantising it loses nothing and the
    # feature path must reproduce the float algorithm exactly.
    probs = blob_probabilities(shape, n_blobs, seed=3, noise=0.02, exact_landscape=True)
    expected = reference_float_instances(probs, **settings)
    assert expected.max() > n_blobs // 2  # touching blobs really are separated
    ndim = len(shape)
    got = instance_labels(probs, boundary_class=BOUNDARY, spatial_ndim=ndim, **settings)
    assert got.dtype == np.uint16
    np.testing.assert_array_equal(got, expected)
    codes, landscape = features(probs, boundary_class=BOUNDARY, seed_threshold=settings.get("seed_threshold"))
    other = {k: v for k, v in settings.items() if k != "seed_threshold"}
    from_features = labels_from_features(
        codes, landscape, n_classes=3, boundary_class=BOUNDARY, spatial_ndim=ndim, **other
    )
    np.testing.assert_array_equal(from_features, expected)


def test_quantised_landscape_changes_little() -> None:
    # Unrounded probabilities: the 256-level landscape may settle a few contested pixels
    # differently, but never the objects themselves.
    probs = blob_probabilities((200, 200), 110, seed=5, noise=0.02)
    expected = reference_float_instances(probs)
    got = instance_labels(probs, boundary_class=BOUNDARY)
    assert got.max() == expected.max()
    np.testing.assert_array_equal(got > 0, expected > 0)
    assert np.mean(got == expected) > 0.995


def test_features_semantic_and_plain_instances_match_probability_functions() -> None:
    probs = blob_probabilities((90, 110), 40, seed=1, noise=0.02)
    codes, landscape = features(probs, boundary_class=BOUNDARY)
    semantic = labels_from_features(codes, landscape, mode="semantic", n_classes=3, boundary_class=BOUNDARY, min_size=5)
    assert semantic.dtype == np.uint8
    np.testing.assert_array_equal(semantic, semantic_labels(probs, min_size=5))
    assert set(np.unique(semantic).tolist()) == {0, 1, 2}  # seed bits are masked off
    plain = labels_from_features(codes, n_classes=3, min_size=5)
    np.testing.assert_array_equal(plain, instance_labels(probs, min_size=5))


def comb_and_u_shapes() -> np.ndarray:
    """300x200 class map crossing the seams of 37-row bands in every awkward way."""
    cls = np.zeros((300, 200), dtype=np.uint8)
    cls[30:45, 5:8] = cls[30:45, 12:15] = 1  # U: two arms above the seam at row 37 ...
    cls[45:48, 5:15] = 1  # ... joined only below it (rows 45..47)
    cls[70:74, 20:40] = 1  # inverted U: a bar above the seam at row 74 ...
    cls[74:90, 20:23] = cls[74:90, 37:40] = 1  # ... with two legs below
    for x in range(50, 90, 4):  # comb: teeth span five seams, joined at the very bottom
        cls[5:200, x : x + 2] = 1
    cls[200:203, 50:90] = 1
    y = 100  # serpentine crossing the seams back and forth
    for i, x in enumerate(range(100, 190, 6)):
        cls[y : y + 80, x] = 1
        cls[y + (79 if i % 2 == 0 else 0), x : x + 7] = 1
    cls[110:111, 10:40] = 1  # a one-row object exactly on a seam row (row 110 = 37 * 2 + 36)
    cls[111, 45] = 1  # single pixel just below the seam
    cls[111, 46] = 0
    cls[147, 0:50:2] = 1  # 2-pixel objects split by the seam between rows 147 and 148
    cls[148, 0:50:2] = 1
    cls[250:299, 150:199] = 2  # a second class
    cls[260:270, 160:170] = 0
    return cls


def test_banded_connected_components_equal_unbanded() -> None:
    cls = comb_and_u_shapes()
    whole = labels_from_features(cls, n_classes=3)
    banded = labels_from_features(cls, n_classes=3, band_pixels=37 * 200)
    np.testing.assert_array_equal(banded, whole)  # same objects and the same numbering
    assert whole[46, 6] == whole[31, 6] == whole[31, 13]  # the U is one object
    assert whole[85, 21] == whole[85, 38] == whole[71, 30]  # the inverted U too
    assert len(np.unique(whole[5:200, 50:90])) == 2  # the comb: background + one object
    assert sizes(whole[147:149, 0:50]) == {i: 2 for i in np.unique(whole[147, 0:50:2]).tolist()}
    np.testing.assert_array_equal(
        labels_from_features(cls, n_classes=3, min_size=40, band_pixels=37 * 200),
        labels_from_features(cls, n_classes=3, min_size=40),
    )
    # One band per row, and bands of a single pixel row in 3D (Z slices).
    np.testing.assert_array_equal(labels_from_features(cls, n_classes=3, band_pixels=1), whole)


def test_banded_semantic_equals_unbanded() -> None:
    cls = comb_and_u_shapes()
    cls[147:149, 0:50:2] = 2  # 2-pixel regions of class 2 split by the seam at row 148
    expected = labels_from_features(cls, mode="semantic", n_classes=3, min_size=3)
    assert not expected[147:149, 0:50].any()
    banded = labels_from_features(cls, mode="semantic", n_classes=3, min_size=3, band_pixels=37 * 200)
    np.testing.assert_array_equal(banded, expected)
    assert expected[110, 10] == 1 and expected[111, 45] == 0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_banded_watershed_equals_unbanded_2d(seed: int) -> None:
    probs = blob_probabilities((300, 200), 150, seed=seed, noise=0.02)
    codes, landscape = features(probs, boundary_class=BOUNDARY)
    kwargs = dict(n_classes=3, boundary_class=BOUNDARY, min_size=10)
    whole = labels_from_features(codes, landscape, **kwargs)
    assert whole.max() > 100
    banded = labels_from_features(codes, landscape, band_pixels=37 * 200, **kwargs)
    np.testing.assert_array_equal(banded, whole)
    # Objects do cross the seams.
    seams = np.arange(37, 300, 37)
    assert np.count_nonzero((whole[seams - 1] == whole[seams]) & (whole[seams] > 0)) > 100


def test_banded_equals_unbanded_3d_along_z() -> None:
    probs = blob_probabilities((40, 36, 40), 30, seed=4, noise=0.02)
    codes, landscape = features(probs, boundary_class=BOUNDARY)
    kwargs = dict(n_classes=3, spatial_ndim=3)
    slice_pixels = 36 * 40
    whole = labels_from_features(codes, **kwargs)
    for slices in (1, 12):  # bands of 1 and 12 Z slices
        np.testing.assert_array_equal(labels_from_features(codes, band_pixels=slices * slice_pixels, **kwargs), whole)
    # The watershed window adds a margin of one band above and below: with 20-slice bands it
    # holds every sphere (diameter <= 22) crossing the seam at z = 20.
    whole = labels_from_features(codes, landscape, boundary_class=BOUNDARY, **kwargs)
    assert whole.max() > 15
    assert np.count_nonzero((whole[19] == whole[20]) & (whole[20] > 0)) > 50
    banded = labels_from_features(codes, landscape, boundary_class=BOUNDARY, band_pixels=20 * slice_pixels, **kwargs)
    np.testing.assert_array_equal(banded, whole)


def test_banded_stack_offsets_and_leading_axes() -> None:
    cls = comb_and_u_shapes()
    stack = np.stack([cls, np.zeros_like(cls), cls[::-1]])
    whole = labels_from_features(stack, n_classes=3)
    banded = labels_from_features(stack, n_classes=3, band_pixels=37 * 200)
    np.testing.assert_array_equal(banded, whole)
    n0 = int(whole[0].max())
    assert whole[2][whole[2] > 0].min() == n0 + 1


@pytest.mark.parametrize("band_pixels", [None, 50 * 600])
def test_features_dtype_widens_to_uint32(band_pixels) -> None:
    codes = np.zeros((600, 600), dtype=np.uint8)
    codes[::2, ::2] = 1  # 300 x 300 isolated single pixels
    labels = labels_from_features(codes, n_classes=3, band_pixels=band_pixels)
    assert labels.dtype == np.uint32
    assert labels.max() == 90000
    assert len(np.unique(labels)) == 90001
    np.testing.assert_array_equal(labels > 0, codes > 0)
    # As seeds of a boundary model: each seed floods its own pixel.
    seeds = codes | np.where(codes > 0, SEED_BIT, 0).astype(np.uint8)
    landscape = np.zeros_like(codes)
    flooded = labels_from_features(seeds, landscape, n_classes=3, boundary_class=2, band_pixels=band_pixels)
    np.testing.assert_array_equal(flooded, labels)
    # 90000 seeds need uint32 on the way, but min_size leaves no object: back to uint16.
    none = labels_from_features(seeds, landscape, n_classes=3, boundary_class=2, min_size=2, band_pixels=band_pixels)
    assert none.dtype == np.uint16 and not none.any()


def test_more_classes_than_features_still_give_instances() -> None:
    cls = np.zeros((37, 41), dtype=np.int64)
    cls[2:6, 2:6] = 150
    cls[10:14, 10:14] = 7
    probs = probs_from_classes(cls, n_classes=200, confidence=0.9)
    assert sizes(instance_labels(probs)) == {1: 16, 2: 16}


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"codes": np.zeros((8, 8), np.float32)}, "codes must be a uint8 array.*float32"),
        ({"codes": np.zeros((8, 8), np.int64)}, "codes must be a uint8 array.*int64"),
        ({"codes": np.zeros(8, np.uint8)}, r"at least 2 dimensions.*\(8,\)"),
        ({"landscape": np.zeros((8, 9), np.uint8)}, r"landscape must have the shape of codes \(8, 8\).*\(8, 9\)"),
        ({"landscape": np.zeros((8, 8), np.float32)}, "landscape must be a uint8 array.*float32"),
        ({"landscape": None}, "boundary_class=2 needs the landscape"),
        ({"boundary_class": None}, "landscape is only used.*boundary_class is None"),
        ({"boundary_class": 3}, "boundary_class.*3"),
        ({"n_classes": 0}, r"n_classes must be an integer in 1\.\.128.*0"),
        ({"n_classes": 129}, r"n_classes.*129"),
        ({"min_size": -1}, "min_size must be an integer >= 0.*-1"),
        ({"min_seed_size": -2}, "min_seed_size must be an integer >= 0.*-2"),
        ({"band_pixels": 0}, "band_pixels must be an integer >= 1.*0"),
        ({"spatial_ndim": 4}, "spatial_ndim must be 2 .* or 3 .*got 4"),
        ({"mode": "watershed"}, "mode must be one of 'semantic', 'instances', got 'watershed'"),
    ],
)
def test_labels_from_features_errors(kwargs, match) -> None:
    args = {
        "codes": np.zeros((8, 8), np.uint8),
        "landscape": np.zeros((8, 8), np.uint8),
        "n_classes": 3,
        "boundary_class": 2,
    } | kwargs
    codes, landscape = args.pop("codes"), args.pop("landscape")
    with pytest.raises(ValueError, match=match):
        labels_from_features(codes, landscape, **args)


@pytest.mark.parametrize("threads", [1, 4])
def test_banded_labels_do_not_depend_on_the_thread_count(monkeypatch, threads: int) -> None:
    from napari_unet.core.labels import banded

    probs = blob_probabilities((300, 200), 150, seed=5, noise=0.02)
    codes, landscape = features(probs, boundary_class=BOUNDARY)
    kwargs = dict(n_classes=3, boundary_class=BOUNDARY, min_size=10, band_pixels=23 * 200)
    monkeypatch.setattr(banded, "label_threads", lambda: 1)
    sequential = labels_from_features(codes, landscape, **kwargs)
    monkeypatch.setattr(banded, "label_threads", lambda: threads)
    monkeypatch.setattr(banded, "WATERSHED_MEMORY", 1 << 40)  # let every thread flood
    assert sequential.max() > 100
    for _ in range(3):  # thread timing varies between runs; the labels must not
        np.testing.assert_array_equal(labels_from_features(codes, landscape, **kwargs), sequential)


# --------------------------------------------------------------------------------------
# distance head: seeds and watershed ground from the normalised distance to the rim
# --------------------------------------------------------------------------------------
DISTANCE = 3  # channel of the distance head after the three classes
DISTANCE_SETTINGS = {"seed_threshold": 0.5, "min_seed_size": 4, "keep_seedless": True}  # DISTANCE_POSTPROCESS


def two_touching_objects() -> np.ndarray:
    """30x34 instance labels: an 11x11 square (id 1) touching an 11x13 rectangle (id 2)."""
    labels = np.zeros((30, 34), dtype=np.int32)
    labels[5:16, 4:15] = 1
    labels[5:16, 15:28] = 2
    return labels


def rim_and_distance(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Class map (0 background, 1 interior, 2 each object's outermost pixels) and the
    distance to the rim over the object's largest one, made here without the training code."""
    rim = np.zeros(labels.shape, bool)
    for axis in range(labels.ndim):
        for shift in (1, -1):
            rim |= (labels != np.roll(labels, shift, axis=axis)) & (labels > 0)
    cls = np.where(labels > 0, np.where(rim, BOUNDARY, INTERIOR), BACKGROUND)
    distance = np.zeros(labels.shape, np.float32)
    for i in range(1, int(labels.max()) + 1):
        d = ndimage.distance_transform_edt((labels == i) & ~rim)
        distance[labels == i] = (d / d.max())[labels == i]
    return cls, distance


def with_distance(cls: np.ndarray, distance: np.ndarray) -> np.ndarray:
    return np.concatenate([probs_from_classes(cls, confidence=0.9), distance[np.newaxis]]).astype(np.float32)


@pytest.mark.parametrize("boundary_predicted", [True, False])
def test_distance_peaks_split_touching_objects_and_objects_keep_their_rims(boundary_predicted: bool) -> None:
    labels = two_touching_objects()
    cls, distance = rim_and_distance(labels)
    if not boundary_predicted:  # the classes see one blob; only the distance head tells them apart
        cls = np.where(labels > 0, INTERIOR, BACKGROUND)
    probs = with_distance(cls, distance)
    got = instance_labels(probs, boundary_class=BOUNDARY, distance_channel=DISTANCE, **DISTANCE_SETTINGS)
    assert got.max() == 2
    assert (got > 0).sum() == (labels > 0).sum() == 11 * 11 + 11 * 13  # rims belong to objects
    # each object is recovered exactly, rim included
    for i in (1, 2):
        ids = np.unique(got[labels == i])
        assert ids.size == 1 and ids[0] > 0
        np.testing.assert_array_equal(got == ids[0], labels == i)
    via_dispatcher = labels_from_probabilities(
        probs, mode="instances", boundary_class=BOUNDARY, distance_channel=DISTANCE, **DISTANCE_SETTINGS
    )
    np.testing.assert_array_equal(via_dispatcher, got)
    # without the distance channel the same classes alone merge the blob when no boundary is predicted
    if not boundary_predicted:
        assert instance_labels(probs[:3], boundary_class=BOUNDARY).max() == 1


def test_distance_features_give_the_same_labels_as_the_probabilities() -> None:
    labels = two_touching_objects()
    probs = with_distance(*rim_and_distance(labels))
    codes, landscape = features(probs, boundary_class=BOUNDARY, distance_channel=DISTANCE, seed_threshold=0.5)
    other = {k: v for k, v in DISTANCE_SETTINGS.items() if k != "seed_threshold"}
    from_features = labels_from_features(codes, landscape, n_classes=3, boundary_class=BOUNDARY, **other)
    expected = instance_labels(probs, boundary_class=BOUNDARY, distance_channel=DISTANCE, **DISTANCE_SETTINGS)
    np.testing.assert_array_equal(from_features, expected)


def test_label_features_distance_codes_and_landscape() -> None:
    # one row of 6 pixels: background, then interior pixels at rising distance, last one boundary
    cls = np.array([[BACKGROUND, INTERIOR, INTERIOR, INTERIOR, INTERIOR, BOUNDARY]])
    distance = np.array([[0.9, 0.25, 0.5, 0.75, 1.0, 0.0]], np.float32)
    probs = with_distance(cls, distance)
    codes, landscape = features(probs, boundary_class=BOUNDARY, distance_channel=DISTANCE)
    assert codes.dtype == np.uint8 and landscape.dtype == np.uint8
    # classes from the first three channels; seeds: foreground with distance >= 0.5 (default)
    np.testing.assert_array_equal(codes & 0x7F, cls)
    np.testing.assert_array_equal(codes & SEED_BIT, [[0, 0, SEED_BIT, SEED_BIT, SEED_BIT, 0]])
    # ground: 255 * (1 - distance), rounded
    np.testing.assert_array_equal(landscape, [[26, 191, 128, 64, 0, 255]])
    strict, _ = features(probs, boundary_class=BOUNDARY, distance_channel=DISTANCE, seed_threshold=0.8)
    np.testing.assert_array_equal(strict & SEED_BIT, [[0, 0, 0, 0, SEED_BIT, 0]])
    # without a boundary class only the classes are made, the distance channel is ignored
    plain, none = features(probs, distance_channel=DISTANCE)
    assert none is None
    np.testing.assert_array_equal(plain, cls)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"distance_channel": 0}, r"distance_channel must be a channel index in 1\.\.3.*got 0"),
        ({"distance_channel": 4}, r"distance_channel must be a channel index in 1\.\.3.*got 4"),
        ({"distance_channel": True}, "distance_channel must be a channel index.*True"),
        ({"distance_channel": 3, "boundary_class": None}, "distance_channel needs boundary_class"),
        ({"distance_channel": 2, "boundary_class": 2}, "boundary_class"),
    ],
)
def test_distance_channel_errors(kwargs, match) -> None:
    probs = with_distance(*rim_and_distance(two_touching_objects()))
    args = {"boundary_class": BOUNDARY} | kwargs
    with pytest.raises(ValueError, match=match):
        instance_labels(probs, **args)


def test_semantic_mode_drops_the_distance_channel() -> None:
    labels = two_touching_objects()
    cls, distance = rim_and_distance(labels)
    probs = with_distance(cls, distance)
    got = labels_from_probabilities(probs, mode="semantic", boundary_class=BOUNDARY, distance_channel=DISTANCE)
    np.testing.assert_array_equal(got, semantic_labels(probs[:3]))
    np.testing.assert_array_equal(got, cls)


# --------------------------------------------------------------------------------------
# foreground threshold: which pixels are in an object, from the background probability
# --------------------------------------------------------------------------------------
def four_pixels() -> np.ndarray:
    """(3 classes + distance, 1, 4): pixels with P(background) 0.45, 0.35, 0.10, 0.90."""
    classes = np.array(
        [
            [[0.45, 0.35, 0.10, 0.90]],  # background
            [[0.30, 0.60, 0.20, 0.05]],  # interior
            [[0.25, 0.05, 0.70, 0.05]],  # boundary
        ],
        np.float32,
    )
    return np.concatenate([classes, np.full((1, 1, 4), 0.9, np.float32)])


@pytest.mark.parametrize(
    ("threshold", "expected"),
    [
        (None, [BACKGROUND, INTERIOR, BOUNDARY, BACKGROUND]),  # the most probable class
        (0.5, [INTERIOR, INTERIOR, BOUNDARY, BACKGROUND]),  # 1 - 0.45 >= 0.5: in, as its likelier class
        (0.6, [BACKGROUND, INTERIOR, BOUNDARY, BACKGROUND]),
        (0.7, [BACKGROUND, BACKGROUND, BOUNDARY, BACKGROUND]),  # 1 - 0.35 < 0.7 although interior is likeliest
    ],
)
def test_foreground_threshold_decides_foreground_from_the_background_probability(threshold, expected) -> None:
    codes, _ = features(
        four_pixels(), boundary_class=BOUNDARY, distance_channel=DISTANCE, foreground_threshold=threshold
    )
    np.testing.assert_array_equal(codes & 0x7F, [expected])
    # seeds stay foreground pixels with a high distance
    np.testing.assert_array_equal((codes & SEED_BIT) > 0, [[c != BACKGROUND for c in expected]])


def wide_rims() -> tuple[np.ndarray, np.ndarray]:
    """Two touching objects whose predicted boundary spills one pixel outside them, where the
    background probability is 0.4: what a network trained with class weights tends to draw."""
    labels = two_touching_objects()
    cls, distance = rim_and_distance(labels)
    probs = with_distance(cls, distance)
    outside = ndimage.binary_dilation(labels > 0) & (labels == 0)
    probs[:3, outside] = np.array([0.4, 0.1, 0.5], np.float32)[:, None]
    return labels, probs


def test_foreground_threshold_puts_wide_boundaries_where_the_objects_end() -> None:
    labels, probs = wide_rims()
    settings = {"boundary_class": BOUNDARY, "distance_channel": DISTANCE, **DISTANCE_SETTINGS}
    wide = instance_labels(probs, **settings)
    ring = ndimage.binary_dilation(labels > 0) & (labels == 0)
    assert (wide > 0).sum() == (labels > 0).sum() + ring.sum()  # argmax: the ring joins the objects
    tight = instance_labels(probs, foreground_threshold=0.7, **settings)
    assert tight.max() == 2
    for i in (1, 2):
        ids = np.unique(tight[labels == i])
        assert ids.size == 1 and ids[0] > 0
        np.testing.assert_array_equal(tight == ids[0], labels == i)
    # the same through the label features the tiled engine keeps, and through the dispatcher
    codes, landscape = features(
        probs, boundary_class=BOUNDARY, distance_channel=DISTANCE, seed_threshold=0.5, foreground_threshold=0.7
    )
    other = {k: v for k, v in DISTANCE_SETTINGS.items() if k != "seed_threshold"}
    from_features = labels_from_features(codes, landscape, n_classes=3, boundary_class=BOUNDARY, **other)
    np.testing.assert_array_equal(from_features, tight)
    via = labels_from_probabilities(probs, mode="instances", foreground_threshold=0.7, **settings)
    np.testing.assert_array_equal(via, tight)


@pytest.mark.parametrize("value", [1.5, -0.1, "0.7", True, float("nan")])
def test_foreground_threshold_errors_name_the_value(value) -> None:
    _, probs = wide_rims()
    with pytest.raises(ValueError, match=r"foreground_threshold must be a (finite )?number in 0\.\.1, got"):
        instance_labels(probs, boundary_class=BOUNDARY, distance_channel=DISTANCE, foreground_threshold=value)
