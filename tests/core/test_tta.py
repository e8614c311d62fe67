"""Test-time augmentation (``tta=True``): the mean of the probabilities of the 8 flips and
quarter turns of every tile in its YX plane, each turned back."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from known_nets import OOMOnBigBatches, threshold_net

from napari_unet import api
from napari_unet.core.inference.engine import DIHEDRAL, dihedral, forward_probs, undo_dihedral
from napari_unet.core.inference.run import iter_features, iter_predict, predict
from napari_unet.core.model.unet import UNet
from napari_unet.core.progress import drain


def _random_net(ndim: int = 2, dtype: torch.dtype = torch.float64, heads=("distance",)) -> UNet:
    """A seeded random U-Net (3 classes + distance head) with non-trivial BatchNorm statistics."""
    torch.manual_seed(3)
    net = UNet(1, 3, depth=2, base_features=4, ndim=ndim, heads=list(heads)).to(dtype).eval()
    for m in net.modules():
        if isinstance(m, (torch.nn.BatchNorm2d, torch.nn.BatchNorm3d)):
            m.running_mean.uniform_(-0.3, 0.3)
            m.running_var.uniform_(0.5, 2.0)
    return net


def _image(shape, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = rng.random(shape)
    img[..., 5:20, 8:30] += 2.0  # an asymmetric bright block: transforms really differ
    return img


def _np_dihedral(a: np.ndarray, k: int, flip: bool) -> np.ndarray:
    if flip:
        a = np.flip(a, -1)
    return np.rot90(a, k, axes=(-2, -1))


def _np_undo(a: np.ndarray, k: int, flip: bool) -> np.ndarray:
    a = np.rot90(a, -k, axes=(-2, -1))
    return np.flip(a, -1) if flip else a


def test_the_eight_transforms_are_distinct_and_undone():
    x = torch.arange(2 * 3 * 4 * 5, dtype=torch.float64).reshape(2, 1, 3, 4, 5)
    views = [dihedral(x, k, f) for k, f in DIHEDRAL]
    assert len(DIHEDRAL) == 8 and DIHEDRAL[0] == (0, False)
    assert len({tuple(v.flatten().tolist()) for v in views}) == 8
    for (k, f), v in zip(DIHEDRAL, views):
        assert v.shape[:3] == x.shape[:3]  # Z (and batch, channel) untouched
        assert v.shape[3:] == ((5, 4) if k % 2 else (4, 5))
        torch.testing.assert_close(undo_dihedral(v, k, f), x, rtol=0, atol=0)
        np.testing.assert_array_equal(v.numpy(), _np_dihedral(x.numpy(), k, f))


@pytest.mark.parametrize("shape, tile, halo", [((37, 41), None, None), ((70, 90), 32, 8)])
def test_equivariant_network_gives_the_same_probabilities(shape, tile, halo):
    net = threshold_net()  # every output pixel depends only on its own input pixel
    image = _image(shape).astype(np.float32) * 500
    plain = predict(image, net, axes="YX", device="cpu", tile_size=tile, halo=halo)
    tta = predict(image, net, axes="YX", device="cpu", tile_size=tile, halo=halo, tta=True)
    assert tta.shape == plain.shape == (2, *shape) and tta.dtype == plain.dtype == np.float32
    np.testing.assert_allclose(tta, plain, atol=1e-5)


def test_tta_equals_the_average_of_the_transformed_predictions():
    net = _random_net()
    image = _image((48, 64))  # one tile (a multiple of the size multiple, 4): no halo, no padding
    tta = predict(image, net, axes="YX", device="cpu", heads=True, tta=True)
    plain = predict(image, net, axes="YX", device="cpu", heads=True)
    parts = [
        _np_undo(
            predict(np.ascontiguousarray(_np_dihedral(image, k, f)), net, axes="YX", device="cpu", heads=True), k, f
        )
        for k, f in DIHEDRAL
    ]
    expected = np.mean(parts, axis=0)
    assert tta.shape == (4, 48, 64) and tta.dtype == np.float64
    np.testing.assert_allclose(tta, expected, atol=1e-10)
    assert np.abs(tta - plain).max() > 1e-3, "a random network is not equivariant: TTA must change it"
    np.testing.assert_allclose(tta[:3].sum(0), 1.0, atol=1e-10)
    assert 0.0 <= tta[3].min() and tta[3].max() <= 1.0  # the averaged distance head stays a sigmoid


def test_3d_models_augment_in_the_yx_plane_only():
    net = _random_net(ndim=3, heads=())
    image = _image((8, 16, 24))
    tta = predict(image, net, axes="ZYX", device="cpu", tta=True)
    expected = np.mean(
        [
            _np_undo(predict(np.ascontiguousarray(_np_dihedral(image, k, f)), net, axes="ZYX", device="cpu"), k, f)
            for k, f in DIHEDRAL
        ],
        axis=0,
    )
    assert tta.shape == (3, 8, 16, 24)
    np.testing.assert_allclose(tta, expected, atol=1e-10)


def test_shapes_dtypes_and_features_are_unchanged():
    net = _random_net(dtype=torch.float32)
    image = _image((2, 40, 52)).astype(np.float32)  # a loop axis and a non-square tile
    for heads, n in ((False, 3), (True, 4)):
        plain = drain(iter_predict(image, net, axes="TYX", device="cpu", heads=heads))
        tta = drain(iter_predict(image, net, axes="TYX", device="cpu", heads=heads, tta=True))
        assert tta.shape == plain.shape == (n, 2, 40, 52)
        assert tta.dtype == plain.dtype == np.float32
    codes, landscape = drain(
        iter_features(image, net, axes="TYX", device="cpu", boundary_class=2, distance_channel=3, tta=True)
    )
    assert codes.shape == landscape.shape == (2, 40, 52) and codes.dtype == landscape.dtype == np.uint8


def test_tiled_tta_with_an_exact_halo_matches_untiled_tta():
    net = _random_net(heads=())
    image = _image((200, 160))
    halo = 2 * net.receptive_radius()  # exact: the result does not depend on the tiling
    whole = predict(image, net, axes="YX", device="cpu", tta=True)
    events = []
    tiled = predict(
        image, net, axes="YX", device="cpu", tta=True, tile_size=144, halo=halo, batch_size=4, progress=events.append
    )
    assert any(e.stage == "tiles" and e.total == 6 and "test-time augmentation" in e.message for e in events)
    np.testing.assert_allclose(tiled, whole, atol=1e-8)


def test_out_of_memory_splits_the_batch_and_each_half_runs_all_eight_views():
    net = _random_net(heads=())
    x = torch.rand(4, 1, 16, 20, dtype=torch.float64)
    with torch.inference_mode():
        ref = forward_probs(net, x, None, torch.float64, 3, tta=True)
        flaky = OOMOnBigBatches(net, max_pixels=2 * 16 * 20)
        probs = forward_probs(flaky, x, None, torch.float64, 3, tta=True)
    torch.testing.assert_close(probs, ref)
    assert flaky.calls[0][0] == 4
    assert [c[0] for c in flaky.calls[1:]] == [2] * 16
    assert sorted({c[2:] for c in flaky.calls[1:]}) == [(16, 20), (20, 16)]


@pytest.mark.parametrize("bad", ["yes", 1, None, 0.0])
def test_bad_tta_values_are_refused(bad):
    net = _random_net(heads=())
    image = _image((16, 16))
    with pytest.raises(ValueError, match=rf"tta must be True or False, got {bad!r}"):
        drain(iter_predict(image, net, axes="YX", device="cpu", tta=bad))
    with pytest.raises(ValueError, match=rf"tta must be True or False, got {bad!r}"):
        drain(iter_features(image, net, axes="YX", device="cpu", tta=bad))
    with pytest.raises(ValueError, match=r"tta .*" + repr(bad)):
        api.segment(image, net, axes="YX", device="cpu", tta=bad)
    with pytest.raises(ValueError, match=r"tta .*" + repr(bad)):
        api.predict(image, net, axes="YX", device="cpu", tta=bad)


def test_console_api_passes_tta_through():
    net = threshold_net()
    image = _image((37, 41)).astype(np.float32) * 500
    plain = api.segment(image, net, axes="YX", device="cpu")
    tta = api.segment(image, net, axes="YX", device="cpu", tta=np.bool_(True))
    np.testing.assert_array_equal(tta, plain)  # an equivariant network: the same labels
    probs = api.predict(image, net, axes="YX", device="cpu", tta=True)
    assert probs.shape == (2, 37, 41)
