"""Inputs that must give either the right result or one clear error, whatever the entry point
(console API, ``napari-unet segment``, the core generators):

* a few non-finite pixels (NaN, +inf, -inf) change nothing away from those pixels, and say so
  with a :class:`~napari_unet.core.image.checks.NonFiniteWarning`;
* an image with an axis of length 0 is one ``ValueError`` naming its shape;
* integer (and float64) images with a large offset give the result of the offset-free image.

The model is the *threshold network* of ``known_nets`` (foreground exactly where the normalised
intensity is above 0.5, each output pixel depending on its own input pixel only), so results are
known pixel by pixel; a small random U-Net checks that probabilities stay finite and close.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from known_nets import threshold_net
from scipy import ndimage

from napari_unet import api
from napari_unet.cli import main
from napari_unet.core.image.checks import NonFiniteWarning
from napari_unet.core.image.io import read_image
from napari_unet.core.image.layout import plan_layout
from napari_unet.core.image.normalize import apply_range, percentile_range
from napari_unet.core.model.file import save_model
from napari_unet.core.model.unet import UNet

SHAPE = (37, 41)
SQUARES = ((slice(5, 15), slice(6, 16)), (slice(20, 30), slice(25, 37)))
#: (row, col, value): NaN in the background and inside the first square, +inf inside the second
#: square, -inf in the background. NaN and -inf become the low percentile, +inf the high one.
BAD = ((1, 1, np.nan), (33, 2, np.nan), (9, 9, np.nan), (25, 30, np.inf), (3, 35, -np.inf))
BAD_KINDS = {"nan": BAD[:3], "+inf": BAD[3:4], "-inf": BAD[4:], "mixed": BAD}


def squares_image(low=(0, 100), high=(200, 300), seed=0) -> np.ndarray:
    """Noisy background in ``low`` with two noisy squares in ``high`` (int64)."""
    rng = np.random.default_rng(seed)
    img = rng.integers(*low, SHAPE).astype(np.int64)
    for sl in SQUARES:
        img[sl] = rng.integers(*high, img[sl].shape)
    return img


def mask_of() -> np.ndarray:
    mask = np.zeros(SHAPE, bool)
    for sl in SQUARES:
        mask[sl] = True
    return mask


def with_bad_pixels(img: np.ndarray, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """float32 copy of ``img`` with the ``kind`` pixels of :data:`BAD` set; and where they are."""
    out = img.astype(np.float32)
    where = np.zeros(img.shape, bool)
    for r, c, v in BAD_KINDS[kind]:
        out[r, c] = v
        where[r, c] = True
    return out, where


def size_net() -> UNet:
    """The threshold network, told it was trained on 20-px objects (so object_size= zooms)."""
    net = threshold_net()
    net.spec.object_size = 20.0
    return net


def random_net(seed: int = 0) -> UNet:
    torch.manual_seed(seed)
    return UNet(1, 2, depth=2, base_features=4).eval()


# Every way the console API (and through it the panel's core calls) can be run on a 2D image:
# labels from label features (default), from probabilities (zoomed), tiled with small tiles,
# and the probabilities themselves (foreground > 0.5).
def seg(img, **kw):
    return api.segment(img, threshold_net(), axes="YX", device="cpu", **kw)


def seg_tiled(img, **kw):
    return api.segment(img, threshold_net(), axes="YX", device="cpu", tile_size=16, halo=4, **kw)


def seg_zoomed(img, **kw):
    return api.segment(img, size_net(), axes="YX", device="cpu", object_size=25, **kw)


def pred_labels(img, **kw):
    probs = api.predict(img, threshold_net(), axes="YX", device="cpu", **kw)
    assert np.isfinite(probs).all(), "probabilities must be finite"
    return ndimage.label(probs[1] > 0.5)[0]


ENTRY_POINTS = {"segment": seg, "segment_tiled": seg_tiled, "segment_zoomed": seg_zoomed, "predict": pred_labels}


def run_cli(capsys, *argv):
    status = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return status, captured.out.splitlines(), captured.err.splitlines()


@pytest.fixture
def model1(tmp_path) -> Path:
    path = tmp_path / "models" / "threshold.safetensors"
    path.parent.mkdir()
    save_model(threshold_net(1), path)
    return path


# ---------------------------------------------------------------------------- 1. non-finite pixels
def test_percentiles_ignore_nonfinite_values_and_apply_range_gives_them_a_value():
    clean = np.arange(1000, dtype=np.float64).reshape(1, 10, 100)
    dirty = clean.copy()
    dirty[0, 0, :3] = [np.nan, np.inf, -np.inf]
    lo, hi = percentile_range(dirty, 1, 99)
    lo_ref, hi_ref = percentile_range(dirty[np.isfinite(dirty)].reshape(1, -1), 1, 99)  # the finite values
    np.testing.assert_allclose([lo[0], hi[0]], [lo_ref[0], hi_ref[0]])
    out = apply_range(dirty, lo, hi)
    assert np.isfinite(out).all()
    assert out[0, 0, :3].tolist() == [0.0, 1.0, 0.0]  # NaN -> low, +inf -> high, -inf -> low
    np.testing.assert_allclose(out[0, 1:], apply_range(clean, lo, hi)[0, 1:])


def test_a_channel_with_no_finite_value_maps_to_zero():
    lo, hi = percentile_range(np.full((1, 4, 4), np.nan))
    assert np.isfinite(lo).all() and np.isfinite(hi).all() and (hi > lo).all()
    assert (apply_range(np.full((1, 4, 4), np.nan), lo, hi) == 0).all()


@pytest.mark.parametrize("kind", sorted(BAD_KINDS))
@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
def test_a_few_nonfinite_pixels_change_nothing_elsewhere_and_are_counted(entry, kind):
    run = ENTRY_POINTS[entry]
    clean = squares_image().astype(np.float32)
    dirty, where = with_bad_pixels(clean, kind)
    with warnings.catch_warnings():
        warnings.simplefilter("error", NonFiniteWarning)
        reference = run(clean)  # a clean image gives no warning
    with pytest.warns(NonFiniteWarning) as caught:
        labels = run(dirty)
    mine = [w for w in caught if issubclass(w.category, NonFiniteWarning)]
    assert len(mine) == 1, [str(w.message) for w in mine]
    assert re.search(rf"\b{where.sum()} of {clean.size} pixel values are not finite", str(mine[0].message))
    assert labels.max() == reference.max() == 2
    # away from the bad pixels (and, zoomed, their interpolation neighbourhood) nothing changed
    near = ndimage.binary_dilation(where, iterations=3) if entry == "segment_zoomed" else where
    np.testing.assert_array_equal(labels[~near] > 0, reference[~near] > 0)


def test_nonfinite_pixels_do_not_spread_through_a_real_network():
    clean = squares_image().astype(np.float32)
    dirty, where = with_bad_pixels(clean, "mixed")
    net = random_net()
    with pytest.warns(NonFiniteWarning, match="5 of"):
        probs = api.predict(dirty, net, axes="YX", device="cpu", tile_size=16, halo=4)
    assert np.isfinite(probs).all()
    reference = api.predict(clean, net, axes="YX", device="cpu", tile_size=16, halo=4)
    far = ~ndimage.binary_dilation(where, iterations=12)  # beyond the network's receptive field
    # only the percentiles moved a little (5 values fewer)
    np.testing.assert_allclose(probs[:, far], reference[:, far], atol=1e-2)


def test_cli_segments_an_image_with_nan_and_says_how_many(tmp_path, capsys, model1):
    dirty, _ = with_bad_pixels(squares_image(), "nan")
    tifffile.imwrite(tmp_path / "nan.tif", dirty)
    status, out, err = run_cli(
        capsys,
        "segment",
        tmp_path / "nan.tif",
        "--model",
        model1,
        "--output",
        tmp_path / "out",
        "--device",
        "cpu",
        "--no-progress",
    )
    assert status == 0, err
    assert len(out) == 1 and ": 2 objects" in out[0]
    assert len(err) == 1, err
    assert err[0].startswith("napari-unet: warning:") and "nan.tif" in err[0]
    assert "3 of 1517 pixel values are not finite" in err[0]
    labels = read_image(tmp_path / "out" / "nan_labels.tif").data
    assert labels.max() == 2


# ---------------------------------------------------------------------------- 4. empty images
EMPTY = [((0, 64), "YX"), ((64, 0), "YX"), ((3, 0, 64, 64), "CZYX"), ((0, 1, 8, 8), "TCYX")]


def empty_message(shape) -> str:
    return re.escape(f"has shape {shape}: every axis must have at least one pixel")


class FakeLayer:
    """The parts of a napari Image layer the API reads."""

    def __init__(self, data, name="empty", axes=None):
        self.data, self.name, self.rgb = data, name, False
        self.metadata = {"axes": axes} if axes else {}


@pytest.mark.parametrize("given_axes", [True, False], ids=["axes", "no-axes"])
@pytest.mark.parametrize("shape,axes", EMPTY, ids=[str(s) for s, _ in EMPTY])
@pytest.mark.parametrize("call", ["segment", "predict", "layer", "estimate_object_size"])
def test_empty_image_is_one_clear_error_in_the_api(call, shape, axes, given_axes):
    img = np.zeros(shape, np.float32)
    kw = {"axes": axes} if given_axes else {}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no axes guess warning before the error either
        with pytest.raises(ValueError, match=r"^(image|layer 'empty') " + empty_message(shape)):
            if call == "layer":
                api.segment(FakeLayer(img, axes=axes if given_axes else None), threshold_net(), device="cpu")
            elif call == "estimate_object_size":
                api.estimate_object_size(img, size_net(), **kw)
            else:
                getattr(api, call)(img, threshold_net(), device="cpu", **kw)


@pytest.mark.parametrize("shape,axes", EMPTY, ids=[str(s) for s, _ in EMPTY])
def test_empty_shape_is_refused_by_the_layout_planner(shape, axes):
    # what the Segment panel checks before it starts a worker (plan_job)
    with pytest.raises(ValueError, match=r"^layer 'x' " + empty_message(shape)):
        plan_layout(shape, axes, model_channels=1, image_name="layer 'x'")


@pytest.mark.parametrize("shape", [(0, 64), (3, 0, 64, 64)], ids=str)
def test_cli_on_an_empty_tiff_is_one_error_line(tmp_path, capsys, model1, shape):
    path = tmp_path / "empty.tif"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tifffile: "writing zero-size array to nonconformant TIFF"
        tifffile.imwrite(path, np.zeros(shape, np.uint16))
    status, out, err = run_cli(
        capsys, "segment", path, "--model", model1, "--output", tmp_path / "out", "--device", "cpu", "--no-progress"
    )
    assert status == 1 and out == []
    assert len(err) == 1 and err[0].startswith("napari-unet: error:"), err
    assert "empty.tif" in err[0] and f"has shape {shape}: every axis must have at least one pixel" in err[0]
    assert not (tmp_path / "out" / "empty_labels.tif").exists()


# ---------------------------------------------------------------------------- 7. large offsets
#: (dtype, offset): values near the offset, spanning 300 levels, lose their contrast in float32
OFFSETS = [
    (np.uint32, 4_000_000_000),
    (np.int32, 2_000_000_000),
    (np.int64, 2**40),
    (np.int64, -(2**40)),
    (np.uint64, 2**50),
    (np.float64, 1e12),
]


def offset_image(dtype, offset) -> np.ndarray:
    # background 0..127 and squares 130..299: in float32 near 4e9 (spacing 256) they would merge
    base = squares_image(low=(0, 128), high=(130, 300))
    return (base + offset).astype(dtype) if np.dtype(dtype).kind != "u" else base.astype(dtype) + dtype(offset)


@pytest.mark.parametrize("dtype,offset", OFFSETS, ids=lambda v: getattr(v, "__name__", str(v)))
@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
def test_integer_offset_gives_the_labels_of_the_offset_free_image(entry, dtype, offset):
    run = ENTRY_POINTS[entry]
    reference = run(squares_image(low=(0, 128), high=(130, 300)).astype(np.uint16))
    assert reference.max() == 2
    np.testing.assert_array_equal(run(offset_image(dtype, offset)), reference)


@pytest.mark.parametrize("dtype,offset", OFFSETS, ids=lambda v: getattr(v, "__name__", str(v)))
def test_integer_offset_gives_the_probabilities_of_the_offset_free_image(dtype, offset):
    net = random_net(1)
    base = squares_image(low=(0, 128), high=(130, 300))
    reference = api.predict(base.astype(np.uint16), net, axes="YX", device="cpu", precision="float32")
    probs = api.predict(offset_image(dtype, offset), net, axes="YX", device="cpu", precision="float32")
    np.testing.assert_allclose(probs, reference, atol=1e-4)


def test_cli_uint32_with_offset_equals_the_offset_free_result(tmp_path, capsys, model1):
    base = squares_image(low=(0, 128), high=(130, 300))
    tifffile.imwrite(tmp_path / "plain.tif", base.astype(np.uint16))
    tifffile.imwrite(tmp_path / "offset.tif", base.astype(np.uint32) + np.uint32(4_000_000_000))
    status, out, err = run_cli(
        capsys,
        "segment",
        tmp_path / "plain.tif",
        tmp_path / "offset.tif",
        "--model",
        model1,
        "--output",
        tmp_path / "out",
        "--device",
        "cpu",
        "--no-progress",
    )
    assert status == 0 and err == [], err
    plain = read_image(tmp_path / "out" / "plain_labels.tif").data
    offset = read_image(tmp_path / "out" / "offset_labels.tif").data
    assert plain.max() == 2
    np.testing.assert_array_equal(offset, plain)


@pytest.mark.parametrize("dtype,offset", OFFSETS, ids=lambda v: getattr(v, "__name__", str(v)))
def test_training_images_with_an_offset_are_normalised_like_the_offset_free_image(dtype, offset):
    from napari_unet.core.training.data import prepare

    base = squares_image(low=(0, 128), high=(130, 300))
    labels = ndimage.label(mask_of())[0]
    reference = prepare([(base.astype(np.uint16), labels)], axes="YX").samples[0].image
    image = prepare([(offset_image(dtype, offset), labels)], axes="YX").samples[0].image
    assert image.dtype == np.float32
    # float64 percentiles near 2**50 are rounded to 1/4 level: 1e-4 of a 300-level range
    np.testing.assert_allclose(image, reference, atol=1e-3)
