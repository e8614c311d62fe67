"""The console API (``napari_unet.segment`` / ``predict`` / ``load_model`` / ``save_model``) with tiny real models.

Two kinds of network are used:

* small random U-Nets (``depth=2, base_features=4``, seeded) for structural properties: shapes,
  dtypes, axes, probabilities summing to one, file round trips;
* a *threshold network* whose weights are set by hand so that its result is known exactly:
  it labels as foreground every pixel whose normalised intensity in one chosen input channel
  is above 0.5 (see :func:`threshold_net`).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from known_nets import threshold_net

from napari_unet import _sources, api
from napari_unet.core.image.axes import AxesGuessWarning
from napari_unet.core.model.unet import UNet

SQUARES = ((slice(5, 15), slice(6, 16)), (slice(20, 30), slice(25, 37)))  # 100 px and 120 px


# ---------------------------------------------------------------------------- helpers
def random_net(in_channels: int = 1, n_classes: int = 2, *, seed: int = 0, **spec: object) -> UNet:
    torch.manual_seed(seed)
    net = UNet(in_channels, n_classes, depth=2, base_features=4)
    for key, value in spec.items():
        setattr(net.spec, key, value)
    return net.eval()


def squares_image(squares=SQUARES, shape=(37, 41), seed: int = 0) -> np.ndarray:
    """Dark noisy background (0..99) with bright noisy squares (900..999), uint16."""
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 100, shape).astype(np.uint16)
    for sl in squares:
        region = img[sl]
        img[sl] = rng.integers(900, 1000, region.shape)
    return img


def mask_of(squares=SQUARES, shape=(37, 41)) -> np.ndarray:
    mask = np.zeros(shape, bool)
    for sl in squares:
        mask[sl] = True
    return mask


class FakeLayer:
    """The parts of a napari Image layer the API reads (napari itself is not imported in tests/core)."""

    def __init__(self, data, name="layer", axes=None, channel_names=None, rgb=False):
        self.data = data
        self.name = name
        self.metadata = {}
        if axes is not None:
            self.metadata["axes"] = axes
        if channel_names is not None:
            self.metadata["channel_names"] = list(channel_names)
        self.scale = (1.0,) * np.ndim(data)
        self.rgb = rgb


# ---------------------------------------------------------------------------- a real result
def test_threshold_net_finds_exactly_the_two_squares():
    img = squares_image()
    labels = api.segment(img, threshold_net(), axes="YX", device="cpu")
    assert labels.dtype == np.uint16 and labels.shape == img.shape
    assert labels.max() == 2
    assert set(np.unique(labels)) == {0, 1, 2}
    np.testing.assert_array_equal(labels > 0, mask_of())
    # each square is one object, and the two objects differ
    ids = [np.unique(labels[sl]) for sl in SQUARES]
    assert all(len(i) == 1 for i in ids) and ids[0][0] != ids[1][0]


def test_threshold_net_probabilities():
    img = squares_image()
    probs = api.predict(img, threshold_net(), axes="YX", device="cpu")
    assert probs.shape == (2, *img.shape) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(0), 1.0, atol=1e-6)
    np.testing.assert_array_equal(probs[1] > 0.5, mask_of())


def test_min_size_removes_small_objects():
    small = ((slice(33, 35), slice(2, 4)), (slice(1, 3), slice(30, 32)))  # 4 px each
    squares = SQUARES + small
    img = squares_image(squares)
    net = threshold_net()
    all_objects = api.segment(img, net, axes="YX", device="cpu")
    big_only = api.segment(img, net, axes="YX", device="cpu", min_size=5)
    assert all_objects.max() == 4
    assert big_only.max() == 2
    np.testing.assert_array_equal(big_only > 0, mask_of())
    assert api.segment(img, net, axes="YX", device="cpu", min_size=101).max() == 1  # only the 120 px square


# ---------------------------------------------------------------------------- shapes, axes, channels
def test_segment_yx_array_returns_uint16_labels_of_same_shape():
    img = np.random.default_rng(1).random((37, 41)).astype(np.float32)
    labels = api.segment(img, random_net())
    assert labels.shape == (37, 41)
    assert labels.dtype == np.uint16


def test_segment_zcyx_with_two_channel_model_returns_zyx():
    img = np.random.default_rng(2).random((3, 2, 37, 41)).astype(np.float32)
    labels = api.segment(img, random_net(2), axes="ZCYX", device="cpu")
    assert labels.shape == (3, 37, 41) and labels.dtype == np.uint16


def test_instance_ids_are_unique_across_planes():
    plane = squares_image()
    stack = np.stack([plane, plane[:, ::-1], plane])  # ZYX
    labels = api.segment(stack, threshold_net(), axes="ZYX", device="cpu")
    assert labels.shape == stack.shape
    assert labels.max() == 6
    for z in range(3):
        assert len(np.unique(labels[z])) == 3  # background + 2 objects per plane
    np.testing.assert_array_equal(labels[0] > 0, mask_of())
    np.testing.assert_array_equal(labels[1] > 0, mask_of()[:, ::-1])


def test_axes_order_is_kept_in_the_output():
    plane = squares_image()
    yxz = np.stack([plane, plane], axis=-1)  # axes YXZ
    labels = api.segment(yxz, threshold_net(), axes="YXZ", device="cpu")
    assert labels.shape == yxz.shape
    np.testing.assert_array_equal(labels[..., 0] > 0, mask_of())
    np.testing.assert_array_equal(labels[..., 1] > 0, mask_of())


def test_channels_by_name_from_a_layer():
    bright = squares_image()
    one_square = squares_image(SQUARES[:1], seed=1)
    dark = np.random.default_rng(2).integers(0, 100, bright.shape).astype(np.uint16)
    layer = FakeLayer(
        np.stack([dark, bright, one_square]), name="cells", axes="CYX", channel_names=["membrane", "nuclei", "golgi"]
    )
    net = threshold_net()
    nuclei = api.segment(layer, net, channels=["nuclei"], device="cpu")
    assert nuclei.shape == (37, 41)
    np.testing.assert_array_equal(nuclei > 0, mask_of())
    assert nuclei.max() == 2
    golgi = api.segment(layer, net, channels="golgi", device="cpu")
    np.testing.assert_array_equal(golgi > 0, mask_of(SQUARES[:1]))
    by_index = api.segment(layer, net, channels=1, device="cpu")
    np.testing.assert_array_equal(by_index, nuclei)


def test_channel_order_follows_channels_argument():
    a = squares_image()
    b = squares_image(SQUARES[:1], seed=1)
    layer = FakeLayer(np.stack([a, b]), axes="CYX", channel_names=["A", "B"])
    net = threshold_net(2, use_channel=0)  # looks only at the first channel it is fed
    assert api.segment(layer, net, device="cpu").max() == 2
    assert api.segment(layer, net, channels=["B", "A"], device="cpu").max() == 1
    assert api.segment(layer, net, channels=[1, 0], device="cpu").max() == 1


def test_unknown_channel_name_names_the_known_ones():
    layer = FakeLayer(np.zeros((2, 37, 41), np.uint16), name="cells", axes="CYX", channel_names=["A", "B"])
    with pytest.raises(ValueError, match=r"no channel named 'C'.*'cells'.*\['A', 'B'\]"):
        api.segment(layer, threshold_net(), channels="C")


def test_layer_axes_take_precedence_over_guessing(recwarn):
    # (2, 37, 41) would be guessed CYX; the layer says ZYX
    plane = squares_image()
    layer = FakeLayer(np.stack([plane, plane]), axes="ZYX")
    labels = api.segment(layer, threshold_net(), device="cpu")
    assert labels.shape == (2, 37, 41) and labels.max() == 2  # two squares, each linked over Z (z_mode "3d")
    assert not [w for w in recwarn if issubclass(w.category, AxesGuessWarning)]


def test_layer_axes_that_do_not_fit_are_ignored_with_a_warning(caplog):
    plane = squares_image()
    layer = FakeLayer(np.stack([plane] * 6), name="stack", axes="YX")  # 3D data, 2 letters
    with caplog.at_level("WARNING", logger="napari_unet.api"), pytest.warns(AxesGuessWarning, match="ZYX"):
        labels = api.segment(layer, threshold_net(), device="cpu")
    assert labels.shape == (6, 37, 41)
    assert "layer 'stack': metadata axes ignored: axes 'YX' name 2 dimensions" in caplog.text


def test_rgb_layer_is_converted_to_gray_for_a_one_channel_model():
    gray = squares_image()
    rgb = np.stack([gray, gray, gray], axis=-1)
    labels = api.segment(FakeLayer(rgb, rgb=True), threshold_net(), device="cpu")
    assert labels.shape == (37, 41)
    np.testing.assert_array_equal(labels > 0, mask_of())


def test_3d_array_without_axes_warns_and_guesses():
    plane = squares_image()
    stack = np.stack([plane] * 6)  # first axis > 4: guessed ZYX
    with pytest.warns(AxesGuessWarning, match="ZYX"):
        labels = api.segment(stack, threshold_net(), device="cpu")
    assert labels.shape == (6, 37, 41)
    two = np.random.default_rng(3).random((2, 37, 41)).astype(np.float32)  # guessed CYX
    with pytest.warns(AxesGuessWarning, match="CYX"):
        labels = api.segment(two, random_net(2), device="cpu")
    assert labels.shape == (37, 41)


def test_image_from_read_image_brings_axes_and_channel_names(tmp_path):
    import tifffile

    from napari_unet import read_image

    data = np.stack([np.stack([squares_image(SQUARES[:1]), squares_image(seed=1)])] * 2)  # ZCYX
    tifffile.imwrite(tmp_path / "stack.tif", data, imagej=True, metadata={"axes": "ZCYX", "Labels": ["one", "two"] * 2})
    image = read_image(tmp_path / "stack.tif")
    assert image.axes == "ZCYX" and image.channel_names == ["one", "two"]
    labels = api.segment(image, threshold_net(), channels=["two"], device="cpu")
    assert labels.shape == (2, 37, 41) and labels.max() == 2  # two squares, each linked over Z (z_mode "3d")
    np.testing.assert_array_equal(labels[1] > 0, mask_of())
    with pytest.raises(ValueError, match=r"stack\.tif gives 2"):
        api.segment(image, threshold_net())


# ---------------------------------------------------------------------------- model sources
def test_model_file_path_gives_same_result_as_unet(tmp_path):
    net = random_net(seed=3)
    path = api.save_model(net, tmp_path / "tiny.safetensors", description="tiny test net")
    img = np.random.default_rng(4).random((37, 41)).astype(np.float32)
    from_object = api.segment(img, net, device="cpu")
    from_str = api.segment(img, str(path), device="cpu")
    from_path = api.segment(img, path, device="cpu")
    np.testing.assert_array_equal(from_object, from_str)
    np.testing.assert_array_equal(from_object, from_path)
    np.testing.assert_allclose(api.predict(img, path, device="cpu"), api.predict(img, net, device="cpu"), atol=1e-6)
    loaded = api.load_model(path)
    assert isinstance(loaded, UNet) and loaded.spec.description == "tiny test net"


def test_threshold_net_survives_a_file_round_trip(tmp_path):
    path = api.save_model(threshold_net(), tmp_path / "threshold.safetensors")
    labels = api.segment(squares_image(), path, axes="YX", device="cpu")
    np.testing.assert_array_equal(labels > 0, mask_of())


def test_no_model_means_the_bundled_one_and_a_bad_model_is_a_type_error():
    img = np.zeros((37, 41), np.float32)
    probs = api.predict(img)
    assert probs.shape == (3, 37, 41)  # background / interior / boundary of the bundled model
    with pytest.raises(TypeError, match="model.*int"):
        api.segment(img, 42)


def test_missing_model_file():
    with pytest.raises(FileNotFoundError):
        api.segment(np.zeros((37, 41), np.float32), "no-such-model.safetensors")


# ---------------------------------------------------------------------------- modes and outputs
def test_semantic_mode_returns_class_indices():
    img = np.random.default_rng(5).random((37, 41)).astype(np.float32)
    net = random_net(1, 3, seed=5)
    labels = api.segment(img, net, mode="semantic", device="cpu")
    assert labels.shape == (37, 41)
    assert np.issubdtype(labels.dtype, np.unsignedinteger)
    assert labels.max() < 3
    np.testing.assert_array_equal(labels, api.predict(img, net, device="cpu").argmax(0))


def test_semantic_mode_of_threshold_net_is_the_mask():
    labels = api.segment(squares_image(), threshold_net(), mode="semantic", axes="YX", device="cpu")
    np.testing.assert_array_equal(labels, mask_of().astype(labels.dtype))


def test_bad_mode_and_min_size():
    img = np.zeros((37, 41), np.float32)
    with pytest.raises(ValueError, match="mode.*'objects'"):
        api.segment(img, random_net(), mode="objects")
    with pytest.raises(ValueError, match="min_size"):
        api.segment(img, random_net(), min_size=-1)


def test_predict_returns_probabilities_summing_to_one():
    img = np.random.default_rng(6).random((2, 3, 37, 41)).astype(np.float32)  # ZCYX, 3 channels
    net = random_net(3, 4, seed=6)
    probs = api.predict(img, net, axes="ZCYX", device="cpu")
    assert probs.shape == (4, 2, 37, 41)
    assert probs.dtype == np.float32
    assert (probs >= 0).all() and (probs <= 1).all()
    np.testing.assert_allclose(probs.sum(0), 1.0, atol=1e-5)


def test_tile_size_and_halo_are_honoured():
    img = squares_image(shape=(37, 41))
    events = []
    labels = api.segment(
        img,
        threshold_net(),
        axes="YX",
        device="cpu",
        tile_size=16,
        halo=4,
        batch_size=3,
        precision="float32",
        progress=events.append,
    )
    np.testing.assert_array_equal(labels > 0, mask_of())
    tiles = [e for e in events if e.stage == "tiles"]
    assert tiles[-1].total > 1  # several tiles, blended seamlessly


def test_dask_input_gives_the_numpy_result():
    da = pytest.importorskip("dask.array")
    img = squares_image()
    lazy = da.from_array(img, chunks=(16, 16))
    net = threshold_net()
    labels = api.segment(lazy, net, axes="YX", device="cpu")
    assert isinstance(labels, np.ndarray)
    np.testing.assert_array_equal(labels, api.segment(img, net, axes="YX", device="cpu"))
    probs = api.predict(lazy, net, axes="YX", device="cpu")
    assert isinstance(probs, np.ndarray) and probs.shape == (2, 37, 41)


# ---------------------------------------------------------------------------- progress
def test_progress_callable_receives_tile_and_postprocess_events():
    events = []
    api.segment(squares_image(), threshold_net(), axes="YX", device="cpu", progress=events.append)
    stages = [e.stage for e in events]
    assert "tiles" in stages and "postprocess" in stages
    assert stages.index("tiles") < stages.index("postprocess")
    tiles = [e for e in events if e.stage == "tiles"]
    assert tiles[-1].step == tiles[-1].total and tiles[-1].fraction == 1.0
    assert all(0 <= e.step <= e.total for e in events)
    assert events[-1].stage == "postprocess" and events[-1].fraction == 1.0


def test_predict_progress_has_tiles_but_no_postprocess():
    events = []
    api.predict(squares_image(), threshold_net(), axes="YX", device="cpu", progress=events.append)
    stages = {e.stage for e in events}
    assert "tiles" in stages and "postprocess" not in stages


def test_progress_true_prints_a_text_bar_to_stderr(capsys):
    api.segment(squares_image(), threshold_net(), axes="YX", device="cpu", progress=True)
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "tiles" in captured.err and "postprocess" in captured.err


# ---------------------------------------------------------------------------- errors
def test_channel_count_mismatch_names_both_counts():
    layer = FakeLayer(np.zeros((3, 37, 41), np.uint16), name="cells", axes="CYX")
    with pytest.raises(ValueError, match=r"expects 2 channels.*'cells' gives 3"):
        api.segment(layer, random_net(2))
    with pytest.raises(ValueError, match=r"expects 1 channel \(channel 0\); image gives 3 \(axes CYX.*channels="):
        api.segment(np.zeros((3, 37, 41), np.uint16), random_net(1), axes="CYX")


def test_model_with_channels_needs_a_channel_axis():
    with pytest.raises(ValueError, match=r"expects 2 channels.*no channel axis"):
        api.segment(np.zeros((37, 41), np.float32), random_net(2))


def test_wrong_axes_length():
    with pytest.raises(ValueError, match=r"'ZYX'.*3 dimensions.*has 2"):
        api.segment(np.zeros((37, 41), np.float32), random_net(), axes="ZYX")


# ---------------------------------------------------------------------------- lazy package
def test_public_api_is_lazy():
    code = textwrap.dedent(
        """
        import json, sys
        import napari_unet
        steps = {"import": ["torch" in sys.modules, "napari_unet.api" in sys.modules]}
        segment = napari_unet.segment
        steps["segment"] = ["torch" in sys.modules, "napari_unet.api" in sys.modules, callable(segment)]
        steps["train"] = ["torch" in sys.modules, callable(napari_unet.train), callable(napari_unet.evaluate)]
        unet = napari_unet.UNet
        steps["UNet"] = ["torch" in sys.modules, unet.__name__]
        steps["dir"] = [n in dir(napari_unet) for n in ("segment", "predict", "train", "evaluate", "load_model",
                                                         "save_model", "UNet")]
        try:
            napari_unet.no_such_thing
        except AttributeError as err:
            steps["missing"] = str(err)
        print(json.dumps(steps))
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    steps = json.loads(proc.stdout.strip().splitlines()[-1])
    assert steps["import"] == [False, False]
    assert steps["segment"][1:] == [True, True]
    assert steps["segment"][0] is False  # the API module itself does not import torch
    assert steps["train"] == [False, True, True]  # nor do train and evaluate until they are called
    assert steps["UNet"] == [True, "UNet"]
    assert all(steps["dir"])
    assert "no_such_thing" in steps["missing"]


def test_model_files_are_loaded_once_per_file_version(tmp_path):
    import torch

    from napari_unet.core.model.file import save_model as _save
    from napari_unet.core.model.unet import UNet as _UNet

    path = tmp_path / "m.safetensors"
    torch.manual_seed(0)
    _save(_UNet(1, 2, depth=1, base_features=2), path)
    first = _sources.resolve_model(str(path))
    assert _sources.resolve_model(path) is first
    _save(_UNet(1, 3, depth=1, base_features=2), path)
    second = _sources.resolve_model(str(path))
    assert second is not first and second.n_classes == 3
    assert _sources.resolve_model(None) is _sources.resolve_model(None)  # the bundled model


# ---------------------------------------------------------------------------- train and evaluate
TINY_TRAINING = dict(
    depth=2,
    base_features=4,
    patch_size=32,
    batch_size=2,
    epochs=1,
    steps_per_epoch=2,
    device="cpu",
    warmup_steps=1,
    seed=0,
    object_size=None,
)


def training_pairs(n: int = 3) -> list[tuple[np.ndarray, np.ndarray]]:
    """Squares images (shifted per image) and their instance labels."""
    pairs = []
    for i in range(n):
        squares = tuple((slice(a.start + i, a.stop + i), slice(b.start, b.stop)) for a, b in SQUARES)
        labels = np.zeros((37, 41), np.uint16)
        for k, (a, b) in enumerate(squares, start=1):
            labels[a, b] = k
        pairs.append((squares_image(squares, seed=i), labels))
    return pairs


def test_train_and_evaluate_are_the_public_api(tmp_path):
    import napari_unet

    assert napari_unet.train is api.train and napari_unet.evaluate is api.evaluate
    output = tmp_path / "squares.safetensors"
    events = []
    model = napari_unet.train(
        training_pairs(), output=output, val_fraction=0.34, progress=events.append, **TINY_TRAINING
    )
    assert isinstance(model, UNet) and model.in_channels == 1 and model.spec.target == "instances"
    assert output.is_file()
    assert isinstance(api.load_model(output), UNet)
    assert events[0].kind == "start" and events[-1].kind == "done"
    assert [e.kind for e in events].count("step") == 2

    scores = napari_unet.evaluate(model, training_pairs(2), device="cpu")
    assert scores["n_images"] == 2
    assert {"AP50", "AP95", "mAP", "mIoU", "per_image"} <= set(scores)
    assert all(0.0 <= scores[k] <= 1.0 for k in ("AP50", "mAP", "mIoU"))
    assert napari_unet.evaluate(output, training_pairs(2), device="cpu")["AP50"] == scores["AP50"]


def test_train_a_3d_model_with_ndim(tmp_path):
    """``ndim=3``: the option name of the Train panel and ``napari-unet train --ndim``; 64-voxel patches by default."""
    import napari_unet

    labels = np.zeros((6, 24, 24), np.uint16)
    labels[1:5, 2:10, 3:11], labels[2:5, 13:22, 12:21] = 1, 2
    image = (labels > 0).astype(np.float32) + np.random.default_rng(0).normal(0, 0.1, labels.shape).astype(np.float32)
    options = {k: v for k, v in TINY_TRAINING.items() if k != "patch_size"}
    output = tmp_path / "net3d.safetensors"
    model = napari_unet.train(
        [(image, labels)], output=output, ndim=3, axes="ZYX", val_fraction=0, **dict(options, batch_size=1)
    )
    assert model.ndim == 3 and model.spec.axes == "ZYX"
    assert api.load_model(output).spec.training["patch_size"] == 64
    assert napari_unet.segment(image, model=model, axes="ZYX", device="cpu").shape == (6, 24, 24)


def test_train_and_evaluate_take_folders_and_a_text_bar(tmp_path, capsys):
    import tifffile

    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    for i, (img, lab) in enumerate(training_pairs()):
        tifffile.imwrite(images / f"im{i}.tif", img)
        tifffile.imwrite(masks / f"im{i}_masks.tif", lab)
    output = tmp_path / "from_folders.safetensors"
    model = api.train(images, masks, output=output, progress=True, **TINY_TRAINING)
    assert isinstance(model, UNet) and output.is_file()
    assert "epoch 1" in capsys.readouterr().err
    scores = api.evaluate(str(output), images, masks, device="cpu", progress=True)
    assert scores["n_images"] == 3 and "mAP" in scores
    assert "evaluate" in capsys.readouterr().err
    with pytest.raises(ValueError, match="masks"):
        api.train(images, output=output, **TINY_TRAINING)  # a folder of images needs its masks
    with pytest.raises(ValueError, match="built-in models: nuclei"):
        api.evaluate("cells", images, masks)


def test_a_built_in_model_by_name_and_an_unknown_name():
    img = np.zeros((37, 41), np.float32)
    assert _sources.resolve_model("nuclei") is _sources.resolve_model(None)
    assert api.load_model("nuclei").spec.channel_names == ["nuclei"]
    with pytest.raises(ValueError, match=r"no built-in model named 'cells'.*built-in models: nuclei"):
        api.segment(img, "cells")
