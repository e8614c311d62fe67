"""Z-stacks with a 2D instance model: ``z_mode`` ("3d", "stitch", "planes", "3d-ortho"), the plane linking of
:mod:`napari_unet.core.labels.zlink` and the anisotropy, on synthetic stacks whose 3D truth is known.

The network is the hand-set *threshold network* of ``known_nets`` (foreground exactly where the
normalised image is above 0.5), so the per-plane 2D labels are the truth's cross-sections and every
difference between the modes comes from how they join planes.
"""

from __future__ import annotations

import warnings
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from known_nets import threshold_net

from napari_unet import segment
from napari_unet._sources import image_source
from napari_unet.core.image.calibration import anisotropy_from_scale
from napari_unet.core.labels.zlink import link_planes, match_planes
from napari_unet.core.labels.zstack import DEFAULT_Z_MODE, AnisotropyWarning
from napari_unet.core.model.unet import UNet
from napari_unet.core.options import Z_MODES, check_inference_options
from napari_unet.core.progress import drain
from napari_unet.core.segment import iter_segment
from napari_unet.core.training.metrics import average_precision

SHAPE = (12, 48, 48)
# (z range, centre y, centre x, radius): cross-sections shrink by 30% towards the ends
OBJECTS = [((1, 8), 14, 14, 8), ((3, 11), 32, 31, 9), ((9, 12), 14, 15, 6)]  # the third: above the first, a gap


def truth_stack(shape=SHAPE, objects=OBJECTS) -> np.ndarray:
    truth = np.zeros(shape, np.uint16)
    yy, xx = np.mgrid[: shape[1], : shape[2]]
    for label, ((z0, z1), cy, cx, r) in enumerate(objects, start=1):
        middle, half = (z0 + z1 - 1) / 2, max((z1 - z0) / 2, 1)
        for z in range(z0, z1):
            radius = r * (1 - 0.3 * abs(z - middle) / half)
            truth[z][(yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2] = label
    return truth


def image_of(truth: np.ndarray, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 100, truth.shape).astype(np.uint16)
    image[truth > 0] += 900
    return image


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """The two label images hold the same objects (ids may differ)."""
    if a.shape != b.shape or ((a > 0) != (b > 0)).any():
        return False
    pairs = np.unique(np.stack([a[a > 0], b[b > 0]]), axis=1)
    return len(np.unique(pairs[0])) == len(np.unique(pairs[1])) == pairs.shape[1]


def z_extent(labels: np.ndarray, label: int) -> int:
    return len(np.unique(np.nonzero(labels == label)[0]))


@pytest.fixture(scope="module")
def net() -> UNet:
    return threshold_net()


def run(image, net, axes="ZYX", **options) -> np.ndarray:
    return drain(iter_segment(image, net, axes=axes, device="cpu", **options))


# ---------------------------------------------------------------------------- the modes end to end
@pytest.mark.parametrize("z_mode", ["3d", "stitch"])
def test_3d_modes_give_the_3d_objects(net, z_mode):
    truth = truth_stack()
    labels = run(image_of(truth), net, z_mode=z_mode)
    assert labels.shape == SHAPE and labels.dtype == np.uint16
    assert labels.max() == 3 and same_partition(labels, truth)
    assert sorted(z_extent(labels, i) for i in (1, 2, 3)) == [3, 7, 8]
    assert average_precision(truth, labels)[0.5] == 1.0


def test_planes_mode_is_one_object_per_plane_and_object(net):
    truth = truth_stack()
    labels = run(image_of(truth), net, z_mode="planes")
    per_plane = sum(len(np.unique(plane)) - 1 for plane in truth)
    assert labels.max() == per_plane == 18  # ids unique over the stack, as before
    assert all(z_extent(labels, i) == 1 for i in range(1, per_plane + 1))
    assert all(same_partition(a, b) for a, b in zip(labels, truth))


def test_default_is_3d(net):
    assert DEFAULT_Z_MODE == Z_MODES[0] == "3d"
    truth = truth_stack()
    image = image_of(truth)
    assert np.array_equal(run(image, net), run(image, net, z_mode="3d"))


def test_stitch_is_the_planes_labels_linked(net):
    truth = truth_stack()
    image = image_of(truth)
    planes = run(image, net, z_mode="planes")
    for iou in (0.25, 0.9):
        stitched = run(image, net, z_mode="stitch", link_iou=iou)
        assert np.array_equal(stitched, link_planes(planes.copy(), threshold=iou))
    # cross-sections of a neighbouring plane overlap with IoU 0.6..0.9: at 0.9 objects break up
    assert run(image, net, z_mode="stitch", link_iou=0.9).max() > 3


def test_zcyx_and_tzyx_stacks(net):
    truth = truth_stack()
    image = image_of(truth)
    other = np.zeros_like(image)
    zcyx = np.stack([other, image], axis=1)
    labels = run(zcyx, net, axes="ZCYX", channels=[1], z_mode="3d")
    assert labels.shape == SHAPE and same_partition(labels, truth)
    # each time point gets its own 3D labels, ids unique over the time-lapse (track=False) ...
    moved = np.roll(truth, 5, axis=2)
    tzyx = np.stack([image, image_of(moved, seed=1)])
    for z_mode in ("3d", "stitch"):
        labels = run(tzyx, net, axes="TZYX", z_mode=z_mode, track=False)
        assert labels.shape == (2, *SHAPE) and labels.max() == 6
        assert same_partition(labels[0], truth) and same_partition(labels[1], moved)
        assert not set(np.unique(labels[0])[1:]) & set(np.unique(labels[1])[1:])
        # ... and by default the 3D objects keep their ids from one time point to the next
        tracked = run(tzyx, net, axes="TZYX", z_mode=z_mode)
        assert tracked.max() == 3 and same_partition(tracked[0], truth) and same_partition(tracked[1], moved)
        for obj in range(1, 4):
            ids = {int(np.unique(tracked[t][np.roll(truth, 5 * t, axis=2) == obj])[0]) for t in (0, 1)}
            assert len(ids) == 1
    # Z after Y and X in the file: the result keeps the input's axis order
    yxz = np.moveaxis(image, 0, -1)
    assert same_partition(np.moveaxis(run(yxz, net, axes="YXZ", z_mode="3d"), -1, 0), truth)


def test_3d_ortho_averages_three_views(net):
    truth = truth_stack()
    image = image_of(truth)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # anisotropy given: no warning
        labels = run(image, net, z_mode="3d-ortho", anisotropy=2.0)
    assert labels.shape == SHAPE and labels.max() == 3
    assert average_precision(truth, labels)[0.75] == 1.0


def test_3d_ortho_without_anisotropy_warns_and_assumes_isotropic(net):
    truth = truth_stack()
    with pytest.warns(AnisotropyWarning, match=r"anisotropy= \(Python\), --anisotropy .*layer's scale"):
        labels = run(image_of(truth), net, z_mode="3d-ortho")
    assert labels.max() == 3
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the other modes do not need it
        run(image_of(truth), net, z_mode="3d")


def test_3d_models_and_semantic_labels_ignore_z_mode():
    torch.manual_seed(0)
    net3d = UNet(1, 2, depth=1, base_features=2, ndim=3).eval()
    image = image_of(truth_stack((8, 24, 24), [((1, 6), 10, 10, 6)]))
    results = [run(image, net3d, z_mode=z_mode) for z_mode in Z_MODES]
    assert all(np.array_equal(results[0], r) for r in results[1:])
    net2d = threshold_net()
    semantic = [run(image, net2d, mode="semantic", z_mode=z_mode) for z_mode in Z_MODES]
    assert all(np.array_equal(semantic[0], s) for s in semantic[1:]) and semantic[0].dtype == np.uint8


def test_2d_images_ignore_z_mode(net):
    plane = image_of(truth_stack())[5]
    assert np.array_equal(run(plane, net, axes="YX", z_mode="planes"), run(plane, net, axes="YX", z_mode="3d"))


# ---------------------------------------------------------------------------- linking planes
def test_link_planes_one_to_one_and_gaps():
    labels = np.zeros((4, 10, 10), np.uint16)
    labels[0, 0:6, 0:6] = 1  # one object ...
    labels[1, 0:6, 0:4] = 2  # ... split in two in the next plane: the larger part continues it
    labels[1, 0:6, 4:6] = 3
    labels[3, 0:6, 0:4] = 4  # after an empty plane: a new object
    out = link_planes(labels.copy())
    assert out[1, 0, 0] == out[0, 0, 0] == 1
    assert out[1, 0, 5] == 2 and out[3, 0, 0] == 3 and out.max() == 3


def test_match_planes_picks_the_best_one_to_one_pairs():
    previous = np.zeros((1, 20), np.int32)
    current = np.zeros((1, 20), np.int32)
    previous[0, 0:10], previous[0, 10:20] = 5, 6
    current[0, 0:6], current[0, 6:20] = 7, 8  # 8 overlaps 5 (IoU 0.29) and 6 (IoU 0.71)
    p, c = match_planes(previous, current, 0.25)
    assert dict(zip(c.tolist(), p.tolist())) == {7: 5, 8: 6}
    p, c = match_planes(previous, current, 0.8)
    assert p.size == c.size == 0


def test_link_planes_checks_its_input():
    with pytest.raises(ValueError, match=r"link_iou must be a number in \(0, 1\].*got 1.5"):
        link_planes(np.zeros((2, 4, 4), np.uint16), threshold=1.5)
    with pytest.raises(ValueError, match=r"\(\.\.\., Z, Y, X\).*shape \(4, 4\)"):
        link_planes(np.zeros((4, 4), np.uint16))
    with pytest.raises(ValueError, match="integer array, got dtype float32"):
        link_planes(np.zeros((2, 4, 4), np.float32))


# ---------------------------------------------------------------------------- options and anisotropy
@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"z_mode": "4d"}, r"z_mode must be one of '3d', 'stitch', 'planes', '3d-ortho', got '4d' \(str\)"),
        ({"z_mode": None}, r"z_mode must be one of .*got None"),
        ({"anisotropy": -2}, r"anisotropy must be a positive number \(Z spacing / XY spacing\), got -2 \(int\)"),
        ({"anisotropy": "2"}, r"anisotropy must be .*got '2' \(str\)"),
        ({"anisotropy": True}, r"anisotropy must be .*got True"),
    ],
)
def test_bad_z_options_are_refused_by_name(net, options, message):
    with pytest.raises(ValueError, match=message):
        check_inference_options(**options)
    with pytest.raises(ValueError, match=message):
        segment(np.zeros((3, 16, 16), np.uint8), net, axes="ZYX", **options)
    with pytest.raises(ValueError, match=message):  # also where Z modes do not apply
        run(np.zeros((16, 16), np.uint8), net, axes="YX", **options)


def test_bad_link_iou(net):
    with pytest.raises(ValueError, match=r"link_iou must be a number in \(0, 1\].*got 0 \(int\)"):
        run(np.zeros((3, 16, 16), np.uint8), net, link_iou=0)


@pytest.mark.parametrize(
    ("axes", "scale", "expected"),
    [
        ("ZYX", (2.0, 0.5, 0.5), 4.0),
        ("ZCYX", (0.5, 1.0, 0.25, 0.25), 2.0),
        ("TZYX", (10.0, 1.0, 1.0, 1.0), None),  # spatial spacings all 1: no calibration, unknown
        ("YX", (0.5, 0.5), None),
        ("ZYX", (2.0, 0.5), None),
        ("ZYX", (0.0, 0.5, 0.5), None),
        ("ZYX", None, None),
    ],
)
def test_anisotropy_from_scale(axes, scale, expected):
    assert anisotropy_from_scale(axes, scale) == expected


def test_anisotropy_from_an_image_file_and_a_layer(tmp_path):
    import tifffile

    from napari_unet.core.image.io import read_image

    path = tmp_path / "stack.tif"
    data = np.zeros((5, 2, 16, 16), np.uint16)
    tifffile.imwrite(path, data, imagej=True, resolution=(4.0, 4.0), metadata={"axes": "ZCYX", "spacing": 0.75})
    src = image_source(read_image(path))
    assert src.axes == "ZCYX" and src.zstack_options("3d", None) == {"z_mode": "3d", "anisotropy": 3.0}
    assert src.zstack_options("stitch", 1.5) == {"z_mode": "stitch", "anisotropy": 1.5}  # given wins
    layer = SimpleNamespace(data=np.zeros((5, 16, 16)), name="nuclei", scale=(2.0, 0.5, 0.5), metadata={"axes": "ZYX"})
    assert image_source(layer).zstack_options("3d", None)["anisotropy"] == 4.0
    assert image_source(np.zeros((5, 16, 16)), "ZYX").zstack_options("3d", None)["anisotropy"] is None


def test_api_segment_uses_the_file_anisotropy(tmp_path, net, monkeypatch):
    import tifffile

    from napari_unet.core import segment as segment_module
    from napari_unet.core.image.io import read_image

    path = tmp_path / "stack.tif"
    tifffile.imwrite(
        path, image_of(truth_stack()), imagej=True, resolution=(2.0, 2.0), metadata={"axes": "ZYX", "spacing": 1.0}
    )
    seen = {}
    original = segment_module.iter_segment

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return original(*args, **kwargs)

    monkeypatch.setattr(segment_module, "iter_segment", spy)
    labels = segment(read_image(path), net, z_mode="stitch", device="cpu")
    assert seen["z_mode"] == "stitch" and seen["anisotropy"] == 2.0
    assert labels.max() == 3


# ---------------------------------------------------------------------------- real data
def test_real_dna_stack_gives_few_3d_objects_spanning_many_planes(data_dir):
    from napari_unet.core.image.io import read_image

    path = data_dir / "stacks" / "xyzc_16bit__dna_conf_wf.tif"
    if not path.exists():
        pytest.skip(f"{path} not found")
    image = read_image(path)
    per_plane = segment(image, channels=[0], z_mode="planes", device="cpu")
    labels = segment(image, channels=[0], device="cpu")  # default: "3d"
    assert labels.shape == (45, 130, 133)
    n = int(labels.max())
    assert 1 <= n <= 3 < per_plane.max()
    assert max(z_extent(labels, i) for i in range(1, n + 1)) >= 10
    stitched = segment(image, channels=[0], z_mode="stitch", device="cpu")
    assert 1 <= stitched.max() <= 3
