"""Tiled inference equals untiled inference; devices, precision, OOM retry, progress."""

import numpy as np
import pytest
import torch
from known_nets import OOMOnBigBatches

from napari_unet.core.image.normalize import apply_range, percentile_range
from napari_unet.core.inference.planning import resolve_precision
from napari_unet.core.inference.run import iter_predict, predict
from napari_unet.core.model.unet import UNet
from napari_unet.core.options import resolve_device
from napari_unet.core.progress import Progress


def _double_net(in_ch=1, n_classes=3, ndim=2, depth=2, features=8):
    torch.manual_seed(0)
    net = UNet(in_ch, n_classes, depth=depth, base_features=features, ndim=ndim).double().eval()
    for m in net.modules():  # non-trivial BatchNorm statistics
        if isinstance(m, (torch.nn.BatchNorm2d, torch.nn.BatchNorm3d)):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
    return net


def _untiled(net, image_cyx):
    lo, hi = percentile_range(image_cyx, *net.spec.percentiles)
    x = torch.from_numpy(apply_range(image_cyx, lo, hi, np.float64))[None]
    with torch.no_grad():
        return torch.softmax(net(x), 1)[0].numpy()


@pytest.mark.parametrize(
    "shape, tile, halo",
    [
        ((1, 37, 41), 16, None),  # tiny tiles, default halo -> forced bigger below
        ((3, 129, 257), 128, "2rf"),  # many tiles, exact halo
        ((1, 37, 41), 512, 8),  # tile larger than the image
        ((1, 37, 41), 64, 200),  # halo larger than the image
        ((1, 200, 90), 96, "2rf"),  # odd sizes on both axes
    ],
)
def test_tiled_equals_untiled(shape, tile, halo):
    net = _double_net(in_ch=shape[0])
    if halo == "2rf" or (halo is None and tile == 16):
        halo = 2 * net.receptive_radius()
        tile = max(tile, 2 * halo + 16)
    image = np.random.default_rng(1).integers(0, 4000, shape).astype(np.uint16)
    probs = predict(image, net, axes="CYX", tile_size=tile, halo=halo, device="cpu")
    assert probs.shape == (3, *shape[1:]) and probs.dtype == np.float64
    assert np.isfinite(probs).all()
    np.testing.assert_allclose(probs.sum(0), 1.0, atol=1e-9)  # every pixel written
    np.testing.assert_allclose(probs, _untiled(net, image.astype(np.float64)), atol=1e-4)


def test_batched_stack_equals_per_plane():
    net = _double_net()
    stack = np.random.default_rng(2).random((1, 3, 129, 257))  # TZYX-like: T=1, Z=3
    halo = 2 * net.receptive_radius()
    probs = predict(stack, net, axes="TZYX", tile_size=2 * halo + 64, halo=halo, batch_size=5)
    assert probs.shape == (3, 1, 3, 129, 257)
    lo, hi = percentile_range(stack.reshape(1, -1), *net.spec.percentiles)
    for z in range(3):
        x = torch.from_numpy(apply_range(stack[0, z][None], lo, hi, np.float64))[None]
        with torch.no_grad():
            ref = torch.softmax(net(x), 1)[0].numpy()
        np.testing.assert_allclose(probs[:, 0, z], ref, atol=1e-4)


def test_default_tiling_float32_matches_untiled_closely():
    torch.manual_seed(0)
    net = UNet(1, 2, depth=3, base_features=8).eval()
    image = np.random.default_rng(3).random((300, 333)).astype(np.float32)
    probs = predict(image, net, axes="YX", tile_size=160, precision="float32")
    lo, hi = percentile_range(image[None], *net.spec.percentiles)
    with torch.no_grad():
        ref = torch.softmax(net(torch.from_numpy(apply_range(image[None], lo, hi))[None]), 1)[0].numpy()
    assert np.abs(probs - ref).max() < 2e-3


def test_3d_model_on_zyx_volume():
    net = _double_net(ndim=3, features=4, n_classes=2)
    vol = np.random.default_rng(4).random((9, 21, 23))
    probs = predict(vol, net, axes="ZYX", tile_size=16, halo=4)
    assert probs.shape == (2, 9, 21, 23)
    np.testing.assert_allclose(probs.sum(0), 1.0, atol=1e-9)


def test_output_keeps_input_axis_order():
    net = _double_net(in_ch=2, n_classes=2, features=4)
    img = np.random.default_rng(5).random((21, 2, 30, 4))  # Y C X T
    probs = predict(img, net, axes="YCXT")
    assert probs.shape == (2, 21, 30, 4)


def test_one_class_model_gives_sigmoid():
    torch.manual_seed(0)
    net = UNet(1, 1, depth=2, base_features=4).eval()
    probs = predict(np.random.rand(20, 20).astype(np.float32), net, axes="YX")
    assert probs.shape == (1, 20, 20) and probs.min() >= 0 and probs.max() <= 1


def test_dask_input_and_progress_events():
    da = pytest.importorskip("dask.array")
    net = _double_net(features=4)
    image = da.from_array(np.random.default_rng(6).random((100, 90)), chunks=(30, 30))
    events = []
    probs = predict(image, net, axes="YX", tile_size=64, halo=8, progress=events.append)
    assert probs.shape == (3, 100, 90)
    tiles = [e for e in events if e.stage == "tiles"]
    assert tiles[0].step == 0 and tiles[-1].step == tiles[-1].total > 1
    assert events[-1].stage == "done" and all(isinstance(e, Progress) for e in events)


def test_generator_returns_probabilities():
    net = _double_net(features=4)
    gen = iter_predict(np.random.rand(17, 19), net, axes="YX")
    with pytest.raises(StopIteration) as stop:
        while True:
            next(gen)
    assert stop.value.value.shape == (3, 17, 19)


def test_model_training_flag_is_restored():
    net = _double_net(features=4).train()
    predict(np.random.rand(17, 19), net, axes="YX")
    assert net.training


def test_axes_guess_warns_for_3d_array():
    from napari_unet.core.image.axes import AxesGuessWarning

    net = _double_net(features=4)
    with pytest.warns(AxesGuessWarning, match="ZYX"):
        probs = predict(np.random.rand(6, 17, 19), net)
    assert probs.shape == (3, 6, 17, 19)


def test_out_of_memory_splits_batches_then_shrinks_tiles():
    net = _double_net(features=4, depth=1)
    image = np.random.default_rng(7).random((200, 200))
    halo = 2 * net.receptive_radius()  # exact halo: results independent of the tiling
    ref = predict(image, net, axes="YX", tile_size=128, halo=halo, batch_size=8)
    flaky = OOMOnBigBatches(net, max_pixels=64 * 64)  # even one 128x128 tile "does not fit"
    events = []
    probs = predict(image, flaky, axes="YX", tile_size=128, halo=halo, batch_size=8, progress=events.append)
    assert any(e.stage == "retry" for e in events)
    assert max(s[0] * s[2] * s[3] for s in flaky.calls[-3:]) <= 64 * 64
    np.testing.assert_allclose(probs, ref, atol=1e-6)
    hopeless = OOMOnBigBatches(net, max_pixels=10)
    with pytest.raises(MemoryError, match="single tile"):
        predict(image, hopeless, axes="YX", tile_size=128, halo=16)


def test_devices_and_precisions():
    assert resolve_device("auto").type in ("cpu", "cuda", "mps")
    assert resolve_device("cpu").type == "cpu"
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU"):
            resolve_device("cuda")
    assert resolve_precision("float32", torch.device("cpu")) is None
    with pytest.raises(ValueError, match="precision must be one of"):
        resolve_precision("half", torch.device("cpu"))
    net = _double_net(features=4)
    with pytest.raises(ValueError, match="batch_size"):
        predict(np.random.rand(17, 19), net, axes="YX", batch_size=0)


def test_auto_precision_on_the_cpu_follows_native_bf16(monkeypatch):
    from napari_unet.core.inference import planning as inference

    monkeypatch.setattr(inference, "cpu_has_native_bf16", lambda: False)
    assert resolve_precision("auto", torch.device("cpu")) is None
    monkeypatch.setattr(inference, "cpu_has_native_bf16", lambda: True)
    assert resolve_precision("auto", torch.device("cpu")) is torch.bfloat16
    torch.manual_seed(0)
    net = UNet(1, 2, depth=2, base_features=8).eval()
    image = np.random.default_rng(8).random((64, 64)).astype(np.float32)
    auto = predict(image, net, axes="YX", device="cpu")
    np.testing.assert_array_equal(auto, predict(image, net, axes="YX", precision="bfloat16", device="cpu"))
    exact = net.double()  # float64 models stay exact under "auto"
    np.testing.assert_array_equal(
        predict(image, exact, axes="YX", device="cpu"),
        predict(image, exact, axes="YX", precision="float32", device="cpu"),
    )


def test_bfloat16_on_cpu_is_close_to_float32():
    torch.manual_seed(0)
    net = UNet(1, 2, depth=2, base_features=8).eval()
    image = np.random.default_rng(8).random((64, 64)).astype(np.float32)
    full = predict(image, net, axes="YX", precision="float32", device="cpu")
    half = predict(image, net, axes="YX", precision="bfloat16", device="cpu")
    assert np.abs(full - half).max() < 0.1


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_matches_cpu_within_amp_tolerance():
    torch.manual_seed(0)
    net = UNet(1, 2, depth=3, base_features=16).eval()
    image = np.random.default_rng(9).random((700, 900)).astype(np.float32)
    cpu = predict(image, net, axes="YX", device="cpu", tile_size=512)
    gpu = predict(image, net, axes="YX", device="cuda", tile_size=512)
    assert np.abs(cpu - gpu).mean() < 0.01 and np.abs(cpu - gpu).max() < 0.1
