"""Training targets and segmentation metrics (numpy only, no torch).

Every case is built by hand so that its answer is known exactly: the IoU of two rectangles,
the TP/FP/FN of a label pair with a missed and a spurious object, the confusion matrix of a
10-pixel class map.
"""

from __future__ import annotations

import numpy as np
import pytest
from skimage.draw import disk

from napari_unet.core.training.metrics import (
    DEFAULT_THRESHOLDS,
    ap_counts,
    average_precision,
    iou_matrix,
    match_counts,
    mean_iou,
    summarize_ap,
)
from napari_unet.core.training.targets import (
    BOUNDARY_CLASS,
    INSTANCE_CLASSES,
    instance_targets,
    object_diameter,
    semantic_targets,
)

AP_KEYS = [f"AP{p}" for p in range(50, 100, 5)]


def rim(shape: tuple[int, int], rows: slice, cols: slice) -> np.ndarray:
    """Boolean mask of the outermost ring of the rectangle ``rows`` x ``cols``."""
    out = np.zeros(shape, bool)
    out[rows, cols] = True
    inner = np.zeros(shape, bool)
    inner[rows.start + 1 : rows.stop - 1, cols.start + 1 : cols.stop - 1] = True
    return out & ~inner


# ---------------------------------------------------------------------------- targets
def test_instance_classes_are_background_interior_boundary() -> None:
    assert INSTANCE_CLASSES == ["background", "interior", "boundary"]
    assert BOUNDARY_CLASS == 2


def test_instance_targets_separate_touching_squares() -> None:
    # two 6x5 rectangles sharing the line between columns 6 and 7
    labels = np.zeros((12, 16), np.int32)
    left, right = (slice(3, 9), slice(2, 7)), (slice(3, 9), slice(7, 12))
    labels[left] = 1
    labels[right] = 2
    t = instance_targets(labels)

    expected = np.zeros(labels.shape, np.uint8)
    expected[labels > 0] = 1
    expected[rim(labels.shape, *left)] = 2
    expected[rim(labels.shape, *right)] = 2
    assert t.dtype == np.uint8
    np.testing.assert_array_equal(t, expected)
    # both sides of the contact line are boundary, so the objects never touch as interior
    assert (t[3:9, 6] == 2).all() and (t[3:9, 7] == 2).all()
    assert (t[4:8, 3:6] == 1).all() and (t[4:8, 8:11] == 1).all()
    assert (t[labels == 0] == 0).all()


def test_instance_targets_3d_keeps_shape() -> None:
    labels = np.zeros((6, 8, 8), np.uint16)
    labels[1:5, 2:7, 2:7] = 3
    t = instance_targets(labels)
    assert t.shape == labels.shape
    assert t[3, 4, 4] == 1  # the cube's centre
    assert t[1, 4, 4] == 2 and t[3, 2, 4] == 2  # its faces
    assert t[0].max() == 0


def test_semantic_targets_maps_values_to_indices() -> None:
    labels = np.array([[0, 3, 7], [7, 7, 0]], np.int64)
    np.testing.assert_array_equal(semantic_targets(labels, [0, 3, 7]), [[0, 1, 2], [2, 2, 0]])
    assert semantic_targets(labels, [0, 3, 7]).dtype == np.uint8


def test_semantic_targets_unknown_value_is_named() -> None:
    labels = np.array([[0, 3, 5]])
    with pytest.raises(ValueError, match=r"\[5\].*\[0, 3\]"):
        semantic_targets(labels, [0, 3])
    with pytest.raises(ValueError, match=r"\[9\]"):
        semantic_targets(np.array([[0, 9]]), [0, 3])  # beyond the largest class value


def test_object_diameter_of_a_disc() -> None:
    labels = np.zeros((64, 64), np.int32)
    labels[disk((32, 32), 10)] = 1
    assert object_diameter(labels) == pytest.approx(20.0, abs=0.5)


def test_object_diameter_is_the_median_and_none_when_empty() -> None:
    labels = np.zeros((80, 80), np.int32)
    for i, (r, radius) in enumerate([(10, 4), (40, 10), (65, 12)], start=1):
        labels[disk((r, 40), radius)] = i
    assert object_diameter(labels) == pytest.approx(20.0, abs=0.5)
    assert object_diameter(np.zeros((5, 5), int)) is None


def test_object_diameter_3d_ball() -> None:
    zz, yy, xx = np.mgrid[:24, :24, :24]
    labels = ((zz - 12) ** 2 + (yy - 12) ** 2 + (xx - 12) ** 2 <= 8**2).astype(np.int32)
    assert object_diameter(labels) == pytest.approx(16.0, abs=0.5)


# ---------------------------------------------------------------------------- matching
def test_identical_labels_score_one_everywhere() -> None:
    labels = np.zeros((40, 40), np.int32)
    labels[2:10, 2:12] = 1
    labels[15:30, 5:9] = 7
    labels[20:38, 20:39] = 3
    ap = average_precision(labels, labels.copy())
    assert list(ap) == [float(t) for t in DEFAULT_THRESHOLDS]
    assert all(v == 1.0 for v in ap.values())
    assert summarize_ap([ap_counts(labels, labels)]) == {**{k: 1.0 for k in AP_KEYS}, "mAP": 1.0}
    assert mean_iou(labels > 0, labels > 0, 2) == 1.0


def test_label_ids_do_not_matter() -> None:
    truth = np.zeros((20, 20), np.int32)
    truth[2:8, 2:8] = 1
    truth[10:18, 10:18] = 2
    pred = np.where(truth == 1, 50, np.where(truth == 2, 9, 0))
    assert average_precision(truth, pred)[0.5] == 1.0


def test_iou_of_exactly_0_6_matches_below_and_not_at_or_above() -> None:
    truth = np.zeros((12, 12), np.int32)
    pred = np.zeros((12, 12), np.int32)
    truth[0:10, 0:8] = 1  # 80 px
    pred[0:10, 2:10] = 1  # 80 px, shifted 2 columns: overlap 60, union 100
    iou = iou_matrix(truth, pred)
    assert iou.shape == (1, 1)
    assert iou[0, 0] == 0.6
    counts = ap_counts(truth, pred)
    assert counts[0.5] == (1, 0, 0)
    assert counts[0.55] == (1, 0, 0)
    for t in (0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95):
        assert counts[t] == (0, 1, 1), t  # IoU must *exceed* the threshold
    ap = average_precision(truth, pred)
    assert ap[0.5] == ap[0.55] == 1.0 and ap[0.6] == 0.0
    assert summarize_ap([counts])["mAP"] == pytest.approx(0.2)  # 2 of 10 thresholds


def test_missed_and_spurious_objects() -> None:
    truth = np.zeros((40, 40), np.int32)
    pred = np.zeros((40, 40), np.int32)
    truth[1:6, 1:6] = 1
    truth[10:15, 10:15] = 2
    truth[30:35, 30:35] = 3  # missed
    pred[1:6, 1:6] = 4
    pred[10:15, 10:15] = 5
    pred[20:24, 1:5] = 6  # spurious
    pred[1:4, 30:38] = 8  # spurious
    counts = ap_counts(truth, pred)
    assert counts[0.5] == (2, 2, 1)
    assert average_precision(truth, pred)[0.5] == pytest.approx(2 / 5)
    assert summarize_ap([counts])["AP50"] == pytest.approx(2 / 5)


def test_one_prediction_covering_two_objects_matches_at_most_one() -> None:
    truth = np.zeros((10, 20), np.int32)
    truth[:, :9] = 1
    truth[:, 9:11] = 2
    pred = (truth > 0).astype(np.int32)  # merges both: IoU 90/110 with object 1
    assert ap_counts(truth, pred)[0.5] == (1, 0, 1)


def test_match_counts_is_one_to_one() -> None:
    # below 0.5 an object can overlap several others; matching is greedy by IoU (documented):
    # (0, 0) = 0.4 is taken first, which blocks both (1, 0) and (0, 1)
    iou = np.array([[0.4, 0.3], [0.35, 0.0]])
    assert match_counts(iou, 0.2) == (1, 1, 1)
    assert match_counts(iou, 0.5) == (0, 2, 2)
    assert match_counts(np.zeros((0, 3)), 0.5) == (0, 3, 0)
    assert match_counts(np.zeros((2, 0)), 0.5) == (0, 0, 2)


def test_empty_truth_and_prediction() -> None:
    empty = np.zeros((16, 16), np.int32)
    assert all(v == 1.0 for v in average_precision(empty, empty).values())
    one = empty.copy()
    one[3:6, 3:6] = 1
    assert average_precision(empty, one)[0.5] == 0.0  # only a false positive
    assert average_precision(one, empty)[0.5] == 0.0  # only a false negative
    assert ap_counts(empty, one)[0.5] == (0, 1, 0)
    assert ap_counts(one, empty)[0.5] == (0, 0, 1)


def test_size_mismatch_is_an_error() -> None:
    with pytest.raises(ValueError, match="differ in size"):
        iou_matrix(np.zeros((4, 4), int), np.zeros((4, 5), int))
    with pytest.raises(ValueError, match="differ in size"):
        mean_iou(np.zeros((4, 4), int), np.zeros((5, 4), int), 2)


# ---------------------------------------------------------------------------- data set AP
def test_summarize_pooled_versus_per_image() -> None:
    # image 1: one object, found exactly                  → TP 1, FP 0, FN 0, AP 1
    a_truth = np.zeros((20, 20), np.int32)
    a_truth[5:10, 5:10] = 1
    a_pred = a_truth.copy()
    # image 2: three objects, one found, two missed, one spurious → TP 1, FP 1, FN 2, AP 1/4
    b_truth = np.zeros((30, 30), np.int32)
    b_truth[1:5, 1:5] = 1
    b_truth[10:14, 10:14] = 2
    b_truth[20:24, 20:24] = 3
    b_pred = np.zeros_like(b_truth)
    b_pred[1:5, 1:5] = 1
    b_pred[1:5, 20:28] = 2
    counts = [ap_counts(a_truth, a_pred), ap_counts(b_truth, b_pred)]
    assert counts[1][0.5] == (1, 1, 2)

    pooled = summarize_ap(counts, pooled=True)  # (1+1) / (2 + 1 + 2)
    per_image = summarize_ap(counts, pooled=False)  # (1 + 1/4) / 2
    assert list(pooled) == AP_KEYS + ["mAP"]
    assert pooled["AP50"] == pytest.approx(2 / 5)
    assert per_image["AP50"] == pytest.approx(5 / 8)
    # matches are exact (IoU 1), so every threshold gives the same value
    assert pooled["mAP"] == pytest.approx(2 / 5) and pooled["AP95"] == pytest.approx(2 / 5)
    assert per_image["mAP"] == pytest.approx(5 / 8)
    assert summarize_ap([]) == {}


def test_summarize_with_custom_thresholds() -> None:
    truth = np.zeros((12, 12), np.int32)
    pred = np.zeros((12, 12), np.int32)
    truth[0:10, 0:8] = 1
    pred[0:10, 2:10] = 1  # IoU 0.6
    out = summarize_ap([ap_counts(truth, pred, thresholds=(0.3, 0.7))])
    assert out == {"AP30": 1.0, "AP70": 0.0, "mAP": 0.5}


# ---------------------------------------------------------------------------- mean IoU
def test_mean_iou_three_classes_known_confusion() -> None:
    truth = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2, 2])
    pred = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2, 2])
    # class 0: 3 / 4; class 1: 2 / 4 ({4, 5} of {3, 4, 5, 6}); class 2: 3 / 4
    assert mean_iou(truth, pred, 3) == pytest.approx((0.75 + 0.5 + 0.75) / 3)
    # a class absent from both maps is left out of the mean
    assert mean_iou(truth, pred, 4) == pytest.approx(2 / 3)
    assert mean_iou(truth.reshape(2, 5), pred.reshape(2, 5), 3) == pytest.approx(2 / 3)


def test_mean_iou_class_only_predicted_counts_as_zero() -> None:
    truth = np.array([0, 0, 1, 1])
    pred = np.array([0, 2, 1, 1])
    # class 0: 1/2, class 1: 1, class 2: 0 (predicted, never true)
    assert mean_iou(truth, pred, 3) == pytest.approx(0.5)
