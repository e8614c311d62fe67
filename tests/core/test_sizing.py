"""Object-size estimation (``core/inference/sizing.py``) and the automatic zoom of segment / predict / the API /
the CLI.

The regression itself is fitted on real networks elsewhere (the bundled model's card); here:

* the iteration of :func:`estimate_object_size` with a *reading* that measures the disks it is
  shown but saturates like a regression does outside its fitted range;
* :func:`fit_size_model` on a tiny random U-Net: the stored dict is valid, survives the model
  file, and a model carrying it zooms images whose objects are far from its size;
* validation of stored size models.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import ndimage

from napari_unet.core.inference import sizing
from napari_unet.core.inference.run import iter_predict
from napari_unet.core.model.file import ModelFileError, load_model, save_model
from napari_unet.core.model.spec import ModelSpec, check_size_model
from napari_unet.core.model.unet import UNet
from napari_unet.core.progress import drain
from napari_unet.core.segment import iter_segment


def disks(diameter: float, shape=(300, 300), spacing: float = 1.6) -> np.ndarray:
    """A (1, Y, X) float32 image of bright disks of ``diameter`` px on a grid."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    img = np.zeros(shape, np.float32)
    step = max(2, int(diameter * spacing))
    r = diameter / 2
    for cy in range(int(r) + 1, shape[0], step):
        for cx in range(int(r) + 1, shape[1], step):
            img[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = 1.0
    return img[None]


def measured_reading(lo: float, hi: float):
    """A stand-in for the regression: the median disk diameter in the crops, clipped to [lo, hi]."""

    def read(model, crops):
        areas = []
        for crop in crops:
            labels, n = ndimage.label(crop[0] > 0.5)
            areas.extend(np.bincount(labels.ravel())[1:].tolist())
        areas = np.asarray(areas, float)
        whole = areas[areas > 0.5 * areas.max()] if areas.size else np.array([1.0])
        return float(np.clip(2 * np.sqrt(np.median(whole) / np.pi), lo, hi))

    return read


def instance_spec(**extra) -> ModelSpec:
    return ModelSpec(
        channel_names=["gray"],
        class_names=["background", "interior", "boundary"],
        target="instances",
        boundary_class=2,
        **extra,
    )


def tiny_net(seed: int = 0, **spec) -> UNet:
    torch.manual_seed(seed)
    return UNet(1, 3, depth=2, base_features=4, heads=["distance"], spec=instance_spec(**spec)).eval()


class _Stub:
    def __init__(self, size: float) -> None:
        self.spec = instance_spec(object_size=size)


# ---------------------------------------------------------------------------- readings at several zooms
@pytest.mark.parametrize("true", [6.0, 18.0, 40.0, 150.0, 250.0])
def test_estimate_finds_sizes_beyond_what_one_reading_knows(monkeypatch, true):
    """Readings clipped to 6..60 px (the range a regression knows) still find 150-250 px objects:
    the zoomed-out readings agree with each other, the saturated ones do not."""
    monkeypatch.setattr(sizing, "read_crops", measured_reading(6.0, 60.0))
    shape = (int(true * 5),) * 2 if true > 40 else (300, 300)
    found = sizing.estimate_object_size(_Stub(18.0), disks(true, shape=shape))
    assert abs(math.log(found / true)) < math.log(1.2), (true, found)


def test_one_fooled_reading_is_outvoted(monkeypatch):
    """At zoom 1 the texture of a large nucleus reads as 11 px; every other zoom reads right."""
    measure = measured_reading(3.0, 300.0)
    zooms = []

    def read(model, crops):
        zooms.append(len(zooms))
        return 11.0 if len(zooms) == 2 else measure(model, crops)  # the second reading is zoom 1

    monkeypatch.setattr(sizing, "read_crops", read)
    assert sizing._reading_zooms((600, 600))[:2] == [2.0, 1.0]
    found = sizing.estimate_object_size(_Stub(18.0), disks(80.0, shape=(600, 600)))
    assert abs(math.log(found / 80.0)) < math.log(1.2), found
    assert len(zooms) == len(sizing._reading_zooms((600, 600))) == 5  # 2, 1, 1/2, 1/4, 1/8


def test_reading_zooms_keep_the_image_large_enough():
    assert sizing._reading_zooms((256, 300)) == [2.0, 1.0, 0.5, 0.25]
    assert sizing._reading_zooms((40, 40)) == [2.0]  # 40 px only gets a zoomed-in look
    assert sizing._reading_zooms((10, 10)) == [2.0]  # never nothing
    assert sizing._reading_zooms((100000, 100000))[-1] == 1 / 64


def test_a_tiny_image_still_gets_an_estimate(monkeypatch):
    monkeypatch.setattr(sizing, "read_crops", lambda model, crops: 500.0)
    found = sizing.estimate_object_size(_Stub(18.0), np.zeros((1, 40, 40), np.float32))
    assert found == pytest.approx(250.0)  # read at zoom 2 only


# ---------------------------------------------------------------------------- fitting and storing
def test_fit_size_model_is_valid_and_survives_the_model_file(tmp_path):
    net = tiny_net(object_size=12.0)
    images = [disks(d)[..., :200, :200] for d in (8.0, 12.0, 20.0)]
    fitted = sizing.fit_size_model(net, images, [8.0, 12.0, 20.0], samples=48, seed=1)
    n_features = 2 * 4 * 2**2
    check_size_model(fitted, n_features)
    assert fitted["range"] == pytest.approx([12.0 * sizing.FIT_RANGE[0], 12.0 * sizing.FIT_RANGE[1]])
    assert fitted["crops"] == 48 and fitted["rms_log"] >= 0
    net.spec.size_model = fitted
    path = save_model(net, tmp_path / "m.safetensors")
    again = load_model(path)
    assert again.spec.size_model["weights"] == pytest.approx(fitted["weights"])
    plane = disks(12.0)[..., :200, :200]
    assert sizing.predict_size(again, plane) == pytest.approx(sizing.predict_size(net, plane), rel=1e-5)


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"mean": [0.0], "scale": [1.0], "weights": [0.0]}, "lacks 'bias'"),
        ({"mean": [0.0] * 32, "scale": [1.0] * 32, "weights": [0.0] * 31, "bias": 0.0}, "entries"),
        ({"mean": [0.0] * 32, "scale": [0.0] * 32, "weights": [0.0] * 32, "bias": 0.0}, "positive"),
        ({"mean": [float("nan")] * 32, "scale": [1.0] * 32, "weights": [0.0] * 32, "bias": 0.0}, "non-finite"),
    ],
)
def test_broken_size_models_are_refused(tmp_path, bad, message):
    net = tiny_net(object_size=12.0)
    net.spec.size_model = bad
    with pytest.raises(ValueError, match=message):
        save_model(net, tmp_path / "m.safetensors")


def test_size_model_needs_an_object_size():
    with pytest.raises(ValueError, match="needs object_size"):
        UNet(
            1,
            3,
            depth=2,
            base_features=4,
            spec=instance_spec(
                size_model={"mean": [0.0] * 32, "scale": [1.0] * 32, "weights": [0.0] * 32, "bias": 0.0}
            ),
        )


# ---------------------------------------------------------------------------- segment / predict zoom
def constant_size_model(net: UNet, diameter: float) -> dict:
    """A valid size model (zero weights, bias log d); the tests below replace its reading by a
    measurement of the disks shown (``measured``), so the estimate is known exactly."""
    n = 2 * net.config["base_features"] * 2 ** net.config["depth"]
    return {"mean": [0.0] * n, "scale": [1.0] * n, "weights": [0.0] * n, "bias": math.log(diameter)}


def stages(gen):
    events = []
    result = drain(gen, events.append)
    return result, events


@pytest.fixture
def measured(monkeypatch):
    monkeypatch.setattr(sizing, "read_crops", measured_reading(3.0, 1000.0))


def test_segment_zooms_by_the_estimate_and_reports_it(measured):
    net = tiny_net(object_size=12.0)
    net.spec.size_model = constant_size_model(net, 36.0)  # reads 36 px: zoom by 1/3
    image = disks(36.0, shape=(120, 150))[0]
    labels, events = stages(iter_segment(image, net, axes="YX", device="cpu"))
    assert labels.shape == image.shape
    size = [e for e in events if e.stage == "size" and e.value is not None]
    assert len(size) == 1 and size[0].value == pytest.approx(36.0, rel=0.05)
    assert "px (estimated)" in size[0].message
    assert any(e.stage == "rescale" for e in events)
    probs, events = stages(iter_predict(image, net, axes="YX", device="cpu"))
    assert probs.shape == (3, 120, 150)
    assert any(e.stage == "rescale" for e in events)


def _size_of(stack: np.ndarray, axes: str) -> float:
    net = tiny_net(object_size=12.0)
    net.spec.size_model = constant_size_model(net, 12.0)
    from napari_unet.core.inference.planning import plan_for

    return drain(sizing.iter_object_size(stack, net, plan_for(stack, net, axes=axes)))


@pytest.mark.parametrize("axes", ["TYX", "ZYX"])
def test_a_dark_middle_frame_does_not_decide_the_size_of_the_stack(measured, axes):
    frame = disks(30.0, shape=(160, 160))[0]
    stack = np.stack([frame] * 5)
    stack[2] = 0.0  # the middle frame is dark (dropped, or the lamp off)
    assert _size_of(stack, axes) == pytest.approx(30.0, rel=0.1)
    stack[2] = 0.2 * disks(12.0, shape=(160, 160))[0]  # a dim, low-contrast middle plane
    assert _size_of(stack, axes) == pytest.approx(30.0, rel=0.1)


def test_the_middle_plane_is_read_when_it_has_contrast(measured):
    stack = np.stack([1.1 * disks(30.0, shape=(160, 160))[0]] * 5)
    stack[2] = disks(12.0, shape=(160, 160))[0]  # a little less contrast than the others: still read
    assert _size_of(stack, "ZYX") == pytest.approx(12.0, rel=0.1)


def test_no_zoom_when_the_estimate_is_within_the_trained_range(measured):
    net = tiny_net(object_size=12.0)
    net.spec.size_model = constant_size_model(net, 13.0)
    _, events = stages(iter_segment(disks(13.0, shape=(64, 64))[0], net, axes="YX", device="cpu"))
    assert any(e.stage == "size" for e in events)
    assert not any(e.stage == "rescale" for e in events)
    plain = tiny_net(object_size=12.0)  # same weights, no size model: same labels
    a = drain(iter_segment(disks(13.0, shape=(64, 64))[0], net, axes="YX", device="cpu"))
    b = drain(iter_segment(disks(13.0, shape=(64, 64))[0], plain, axes="YX", device="cpu"))
    np.testing.assert_array_equal(a, b)


def test_given_object_size_wins_and_estimate_can_be_off():
    net = tiny_net(object_size=12.0)
    net.spec.size_model = constant_size_model(net, 36.0)
    _, events = stages(iter_segment(disks(12.0, shape=(64, 64))[0], net, axes="YX", device="cpu", object_size=12))
    assert not any(e.stage == "size" for e in events)
    _, events = stages(iter_predict(disks(12.0, shape=(64, 64))[0], net, axes="YX", device="cpu", estimate_size=False))
    assert not any(e.stage in ("size", "rescale") for e in events)


def test_api_estimate_object_size(tmp_path, measured):
    from napari_unet import api

    net = tiny_net(object_size=12.0)
    with pytest.raises(ValueError, match="cannot estimate object sizes"):
        api.estimate_object_size(disks(12.0)[0], net, axes="YX")
    net.spec.size_model = constant_size_model(net, 30.0)
    assert api.estimate_object_size(disks(30.0)[0], net, axes="YX") == pytest.approx(30.0, rel=0.05)


def test_cli_line_names_the_estimate(tmp_path, capsys, measured):
    import tifffile

    from napari_unet.cli import main

    net = tiny_net(object_size=12.0)
    net.spec.size_model = constant_size_model(net, 30.0)
    model = save_model(net, tmp_path / "m.safetensors")
    tifffile.imwrite(tmp_path / "img.tif", (disks(30.0, shape=(90, 90))[0] * 200).astype(np.uint8))
    rc = main(
        [
            "segment",
            str(tmp_path / "img.tif"),
            "--model",
            str(model),
            "--output",
            str(tmp_path / "out"),
            "--no-progress",
            "--device",
            "cpu",
        ]
    )
    assert rc == 0
    assert "object size 30 px (estimated)" in capsys.readouterr().out
    assert (tmp_path / "out" / "img_labels.tif").exists()


def test_unknown_spec_file_with_bad_size_model_is_a_model_file_error(tmp_path):
    net = tiny_net(object_size=12.0)
    path = save_model(net, tmp_path / "m.safetensors")
    import json

    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(path), framework="pt") as f:
        meta = json.loads(f.metadata()["napari_unet"])
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    meta["spec"]["size_model"] = {"mean": [1.0], "scale": [1.0], "weights": [1.0], "bias": 0.0}
    save_file(tensors, str(path), metadata={"napari_unet": json.dumps(meta)})
    with pytest.raises(ModelFileError, match="size_model"):
        load_model(path)
