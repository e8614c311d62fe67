"""The fast inference engine: folded network, device-side upload, band blending, label
features, measured halo, tile planning and the torch.compile fallback."""

import logging

import numpy as np
import pytest
import torch
from known_nets import OOMOnBigBatches

from napari_unet.core.inference import fastnet
from napari_unet.core.inference import halo as halo_mod
from napari_unet.core.inference.engine import upload
from napari_unet.core.inference.features import SEED_BIT, features_from_probabilities
from napari_unet.core.inference.planning import HOST_EXTRA_BUDGET, PROCESS_BASE, default_tile_and_batch
from napari_unet.core.inference.run import iter_features, predict
from napari_unet.core.inference.tiling import TileGrid
from napari_unet.core.model.unet import UNet
from napari_unet.core.progress import drain


def _net(n_classes=3, depth=2, features=8, ndim=2, dtype=torch.float64):
    torch.manual_seed(1)
    net = UNet(1, n_classes, depth=depth, base_features=features, ndim=ndim).to(dtype).eval()
    for m in net.modules():
        if isinstance(m, (torch.nn.BatchNorm2d, torch.nn.BatchNorm3d)):
            m.running_mean.uniform_(-0.3, 0.3)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    return net


@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize("upsampling", ["interpolate", "transpose"])
@pytest.mark.parametrize("norm", [True, False])
def test_lean_folded_network_matches_and_has_no_batchnorm(ndim, upsampling, norm):
    torch.manual_seed(2)
    net = UNet(2, 3, depth=3, base_features=4, ndim=ndim, upsampling=upsampling, norm=norm).double().eval()
    for m in net.modules():
        if isinstance(m, (torch.nn.BatchNorm2d, torch.nn.BatchNorm3d)):
            m.running_mean.uniform_(-0.3, 0.3)
            m.running_var.uniform_(0.5, 2.0)
    fast = fastnet.inference_network(net, torch.device("cpu"))
    assert isinstance(fast, fastnet.LeanUNet)
    assert not any(isinstance(m, (torch.nn.BatchNorm2d, torch.nn.BatchNorm3d)) for m in fast.modules())
    assert any(isinstance(m, (torch.nn.BatchNorm2d, torch.nn.BatchNorm3d)) for m in net.modules()) == norm
    x = torch.rand((2, 2) + (20,) * ndim, dtype=torch.float64)  # 20: padded to 24 inside
    with torch.no_grad():
        out = fast(x)
        assert out.shape == (2, 3) + (20,) * ndim
        np.testing.assert_allclose(out.numpy(), net(x).numpy(), atol=1e-12)


def test_inference_copy_is_cached_until_weights_change():
    net = _net()
    a = fastnet.inference_network(net, torch.device("cpu"))
    assert fastnet.inference_network(net, torch.device("cpu")) is a
    with torch.no_grad():
        net.outc.bias.add_(1.0)
    b = fastnet.inference_network(net, torch.device("cpu"))
    assert b is not a
    x = torch.rand(1, 1, 16, 16, dtype=torch.float64)
    with torch.no_grad():
        np.testing.assert_allclose(b(x).numpy(), net(x).numpy(), atol=1e-10)


def test_compile_failure_falls_back_to_eager(monkeypatch, caplog):
    def broken_compile(module, **kwargs):
        def run(x):
            raise RuntimeError("no C++ compiler found (simulated)")

        return run

    monkeypatch.setattr(torch, "compile", broken_compile)
    net = _net()
    image = np.random.default_rng(0).random((40, 50))
    ref = predict(image, net, axes="YX", device="cpu", compile=False)
    with caplog.at_level(logging.WARNING, logger="napari_unet.core.inference.fastnet"):
        probs = predict(image, net, axes="YX", device="cpu", compile=True)
    np.testing.assert_allclose(probs, ref, atol=1e-10)
    assert "torch.compile failed" in caplog.text


def test_uint16_is_uploaded_raw_and_normalised_on_the_device():
    x = np.array([[[[0, 1000, 32768, 65535]]]], dtype=np.uint16)
    lo = torch.tensor(1000.0).reshape(1, 1, 1, 1)
    scale = torch.tensor(1 / 64535.0).reshape(1, 1, 1, 1)
    out = upload(x, torch.device("cpu"), torch.float32, lo, scale, None)
    np.testing.assert_allclose(out.numpy().ravel(), (x.ravel().astype(np.float64) - 1000) / 64535, rtol=1e-6)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, ">u2", np.int16, np.float32])
def test_raw_dtypes_give_the_same_probabilities_as_float(dtype):
    net = _net()
    rng = np.random.default_rng(3)
    image = rng.integers(0, 120, (70, 90)).astype(dtype)
    ref = predict(image.astype(np.float64), net, axes="YX", device="cpu", tile_size=48, halo=8)
    probs = predict(image, net, axes="YX", device="cpu", tile_size=48, halo=8)
    np.testing.assert_allclose(probs, ref, atol=1e-6)


@pytest.mark.parametrize("boundary", [None, 2])
def test_features_equal_features_of_the_probabilities(boundary):
    net = _net()
    with torch.no_grad():  # all three classes present
        net.outc.bias[:] = torch.tensor([-1.6, 0.0, 1.2], dtype=torch.float64)
    image = np.random.default_rng(4).random((3, 70, 90))  # 3 planes, several tile rows each
    options = dict(axes="ZYX", device="cpu", tile_size=32, halo=8, batch_size=5)
    probs = predict(image, net, **options)
    codes, landscape = drain(iter_features(image, net, boundary_class=boundary, seed_threshold=0.3, **options))
    assert codes.dtype == np.uint8 and codes.shape == (3, 70, 90)
    for z in range(3):
        want_codes, want_land = features_from_probabilities(probs[:, z], boundary_class=boundary, seed_threshold=0.3)
        # the same probabilities up to float rounding: codes may differ only at exact ties
        assert np.mean(codes[z] == want_codes) > 0.999
        if boundary is None:
            assert landscape is None
        else:
            assert np.abs(landscape[z].astype(int) - want_land).max() <= 1
    if boundary is not None:
        assert (codes & SEED_BIT).any() and ((codes & 0x7F) == 2).any()


def test_measured_halo_is_within_the_receptive_field_and_cached(monkeypatch):
    net = _net(depth=3)
    radius = halo_mod.effective_radius(net)
    assert 0 < radius <= net.receptive_radius()
    first = halo_mod.auto_halo(net)
    assert first % 8 == 0 and radius <= first
    monkeypatch.setattr(halo_mod, "effective_radius", lambda *a, **k: pytest.fail("measured twice"))
    assert halo_mod.auto_halo(net) == first
    net.spec.halo = 24
    assert halo_mod.auto_halo(net) == 24


def test_wider_context_gives_a_wider_halo():
    shallow, deep = _net(depth=1), _net(depth=4)
    assert halo_mod.effective_radius(shallow) < halo_mod.effective_radius(deep)


def test_auto_halo_keeps_tiled_close_to_untiled():
    from napari_unet.core.image.io import read_image
    from napari_unet.core.image.samples import sample_path
    from napari_unet.core.model.bundled import load_default_model

    net = load_default_model()
    net.spec.halo = None  # measure it
    image = np.asarray(read_image(sample_path("nuclei")).data)
    full = predict(image, net, axes="YX", device="cpu", tile_size=1024)
    events = []
    tiled = predict(image, net, axes="YX", device="cpu", tile_size=256, progress=events.append)
    assert any(e.stage == "halo" for e in events)
    assert np.abs(tiled - full).max() < 0.02  # measured: 0.0095 with the 64 px halo
    assert np.mean(tiled.argmax(0) != full.argmax(0)) < 1e-4


def test_one_tile_images_skip_the_halo_measurement(monkeypatch):
    monkeypatch.setattr(halo_mod, "effective_radius", lambda *a, **k: pytest.fail("not needed"))
    net = _net()
    events = []
    predict(np.random.rand(60, 70), net, axes="YX", device="cpu", progress=events.append)
    assert not any(e.stage == "halo" for e in events)


def test_tile_budget_shrinks_for_huge_planes_and_stays_within_the_host_budget():
    net = UNet(1, 3, depth=4, base_features=64)
    small_tile, _ = default_tile_and_batch(net, torch.device("cpu"), 64, None, plane_width=2048)
    huge_tile, batch = default_tile_and_batch(
        net, torch.device("cpu"), 64, None, plane_width=20000, store_bytes=2 * 20000 * 20000
    )
    assert huge_tile < small_tile
    per_px = 64 * 18
    work = per_px * huge_tile**2 * batch + 4 * 4 * huge_tile * 20000
    assert work <= max(HOST_EXTRA_BUDGET - PROCESS_BASE - 2 * 20000 * 20000, 256 << 20) * 1.01


def test_3d_tiles_leave_room_for_the_band_of_slices():
    net = UNet(1, 3, depth=2, base_features=16, ndim=3)
    small, _ = default_tile_and_batch(net, torch.device("cpu"), 8, None, plane_width=256 * 256, rows=64)
    wide, batch = default_tile_and_batch(net, torch.device("cpu"), 8, None, plane_width=1536 * 1536, rows=64)
    assert wide < small
    budget = min(HOST_EXTRA_BUDGET - PROCESS_BASE, fastnet_free_quarter())
    assert 16 * 18 * wide**3 * batch + 16 * 1536 * 1536 * min(wide, 64) <= max(budget, 256 << 20) * 1.01


def fastnet_free_quarter():
    from napari_unet.core.inference.planning import _free_memory

    return _free_memory(torch.device("cpu")) * 0.25


def test_tiles_share_the_axis_evenly():
    grid = TileGrid((2048, 2048), 1120, 88, multiple=16)
    assert len(grid) == 4 and grid.tile_size == (1120, 1120)
    # 2100 px (2112 padded) with tiles of at most 1024: three tiles of 752, not three of 1024
    grid = TileGrid((2100,), 1024, 32, multiple=16)
    assert len(grid) == 3 and grid.tile_size == (752,)
    assert grid.weight_sum().min() > 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("compile", [False, True])
def test_cuda_labels_match_cpu_on_uint16(compile):
    from napari_unet.core.image.io import read_image
    from napari_unet.core.image.samples import sample_path
    from napari_unet.core.model.bundled import load_default_model
    from napari_unet.core.segment import iter_segment
    from napari_unet.core.training.metrics import ap_counts, summarize_ap

    net = load_default_model()
    sample = np.asarray(read_image(sample_path("nuclei")).data, dtype=np.uint16) * 257  # full 16-bit range
    image = np.tile(sample, (2, 2))
    cpu = drain(iter_segment(image, net, axes="YX", device="cpu", tile_size=512))
    gpu = drain(iter_segment(image, net, axes="YX", device="cuda", tile_size=512, compile=compile))
    assert gpu.shape == cpu.shape
    assert abs(int(gpu.max()) - int(cpu.max())) <= 0.02 * cpu.max()
    assert summarize_ap([ap_counts(cpu, gpu)])["AP50"] > 0.97  # bf16 on the GPU vs float32 on the CPU


def test_small_user_tiles_get_the_halo_they_can_hold(caplog):
    net = _net(depth=3)
    net.spec.halo = 40
    image = np.random.default_rng(6).random((100, 120))
    with caplog.at_level(logging.WARNING, logger="napari_unet.core.inference.runner"):
        probs = predict(image, net, axes="YX", device="cpu", tile_size=48)
    assert probs.shape == (3, 100, 120) and np.isfinite(probs).all()
    assert "room for a halo of 20 px" in caplog.text


def test_one_tile_image_that_runs_out_of_memory_is_retiled_with_a_measured_halo(monkeypatch):
    net = _net(depth=2)
    net.spec.halo = 12
    image = np.random.default_rng(8).random((150, 150))
    ref = predict(image, net, axes="YX", device="cpu")
    fastnet._cache.clear()
    monkeypatch.setattr(fastnet, "LeanUNet", lambda folded, fmt: OOMOnBigBatches(folded, 100 * 100))
    events = []
    probs = predict(image, net, axes="YX", device="cpu", progress=events.append)
    retiled = [e.message for e in events if e.stage == "tiles" and e.step == 0]
    assert any(e.stage == "retry" for e in events)
    assert "halo (12, 12)" in retiled[-1]  # not 0: the pieces are blended
    assert np.abs(probs - ref).max() < 0.05


def test_halo_is_measured_under_a_callers_inference_mode_too():
    net = _net(depth=2)
    with torch.inference_mode():
        radius = halo_mod.effective_radius(net)
    assert radius == halo_mod.effective_radius(net) > 0


def test_batches_are_equal_sized():
    class Recorder(torch.nn.Module):
        def __init__(self, net, calls):
            super().__init__()
            self.net, self.calls = net, calls

        def forward(self, x):
            self.calls.append(x.shape[0])
            return self.net(x)

    calls = []
    net = _net(depth=2)
    fastnet._cache.clear()
    original = fastnet.LeanUNet
    try:
        fastnet.LeanUNet = lambda folded, fmt: Recorder(original(folded, fmt), calls)
        predict(np.random.rand(9, 40, 40), net, axes="ZYX", device="cpu", tile_size=64, batch_size=8)
    finally:
        fastnet.LeanUNet = original
        fastnet._cache.clear()
    assert calls == [5, 4]


def _distance_net() -> UNet:
    torch.manual_seed(2)
    net = UNet(1, 3, depth=2, base_features=8, heads=["distance"]).to(torch.float64).eval()
    with torch.no_grad():  # all three classes and a spread of distances
        net.outc.bias[:] = torch.tensor([-1.6, 0.0, 1.2, 0.0], dtype=torch.float64)
    return net


def test_distance_head_probabilities_through_the_tiled_engine():
    net = _distance_net()
    image = np.random.default_rng(5).random((70, 90))
    options = dict(axes="YX", device="cpu", tile_size=32, halo=8, batch_size=3)
    classes = predict(image, net, **options)
    both = predict(image, net, heads=True, **options)
    assert classes.shape == (3, 70, 90) and both.shape == (4, 70, 90)
    np.testing.assert_allclose(both[:3], classes, atol=1e-12)
    np.testing.assert_allclose(classes.sum(0), 1.0, atol=1e-9)  # softmax over the classes only
    assert 0 < both[3].min() and both[3].max() < 1
    # one tile of an already normalised image: softmax of the class logits, sigmoid of the head's
    whole = predict(image, net, heads=True, normalized=True, axes="YX", device="cpu", tile_size=96)
    with torch.no_grad():
        logits = net(torch.from_numpy(image)[None, None])[0]
    np.testing.assert_allclose(whole[3], torch.sigmoid(logits[3]).numpy(), atol=1e-9)
    np.testing.assert_allclose(whole[:3], torch.softmax(logits[:3], 0).numpy(), atol=1e-9)


def test_distance_features_equal_features_of_the_probabilities():
    net = _distance_net()
    image = np.random.default_rng(6).random((2, 70, 90))
    options = dict(axes="ZYX", device="cpu", tile_size=32, halo=8, batch_size=5)
    probs = predict(image, net, heads=True, **options)
    codes, landscape = drain(
        iter_features(image, net, boundary_class=2, distance_channel=3, seed_threshold=0.5, **options)
    )
    assert codes.shape == landscape.shape == (2, 70, 90)
    for z in range(2):
        want_codes, want_land = features_from_probabilities(
            probs[:, z], boundary_class=2, distance_channel=3, seed_threshold=0.5
        )
        assert np.mean(codes[z] == want_codes) > 0.999
        assert np.abs(landscape[z].astype(int) - want_land).max() <= 1
    assert (codes & SEED_BIT).any() and not (codes & SEED_BIT).all()
