"""The seed U-Net: shapes on odd sizes, 2D/3D, options, receptive field bound."""

import pytest
import torch

from napari_unet.core.model.spec import ModelSpec
from napari_unet.core.model.unet import UNet, pad_to_multiple


@pytest.mark.parametrize("upsampling", ["interpolate", "transpose"])
@pytest.mark.parametrize("shape", [(37, 41), (1, 1), (16, 16), (5, 129)])
def test_2d_any_size_gives_same_size(upsampling, shape):
    net = UNet(2, 3, depth=2, base_features=8, upsampling=upsampling).eval()
    out = net(torch.randn(2, 2, *shape))
    assert out.shape == (2, 3, *shape)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("upsampling", ["interpolate", "transpose"])
def test_3d_any_size(upsampling):
    net = UNet(1, 2, depth=2, base_features=4, ndim=3, upsampling=upsampling).eval()
    out = net(torch.randn(1, 1, 5, 19, 23))
    assert out.shape == (1, 2, 5, 19, 23)


def test_blocks_follow_the_seed():
    net = UNet(1, 2, depth=3, base_features=8)
    conv_bn_relu = [type(m).__name__ for m in net.inc]
    assert conv_bn_relu == ["Conv2d", "BatchNorm2d", "ReLU"] * 2
    assert [type(m).__name__ for m in net.downs[0]][0] == "MaxPool2d"
    assert len(net.downs) == 3 and len(net.ups) == 3
    assert net.outc.kernel_size == (1, 1)
    widths = [d[1][0].out_channels for d in net.downs]
    assert widths == [16, 32, 64]


def test_norm_off_has_no_batchnorm_and_conv_bias():
    net = UNet(1, 2, depth=2, base_features=4, norm=False)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())
    assert net.inc[0].bias is not None


def test_wrong_input_is_a_clear_error():
    net = UNet(2, 2, depth=2, base_features=4)
    with pytest.raises(ValueError, match="expects 2 input channels, got 3"):
        net(torch.zeros(1, 3, 16, 16))
    with pytest.raises(ValueError, match="expects input of 4 dims"):
        net(torch.zeros(2, 16, 16))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"depth": 0}, "depth"),
        ({"ndim": 4}, "ndim"),
        ({"upsampling": "nearest"}, "upsampling"),
        ({"in_channels": 0}, "in_channels"),
        ({"base_features": 2.5}, "base_features"),
    ],
)
def test_bad_configuration(kwargs, match):
    with pytest.raises(ValueError, match=match):
        UNet(**kwargs)


def test_spec_must_match_architecture():
    with pytest.raises(ValueError, match="names 1 channels"):
        UNet(2, 2, depth=2, base_features=4, spec=ModelSpec(channel_names=["dna"]))
    spec = ModelSpec(channel_names=["dna", "membrane"], class_names=["bg", "fg"])
    assert UNet(2, 2, depth=2, base_features=4, spec=spec).spec.channel_names == ["dna", "membrane"]


def test_receptive_radius_bounds_the_real_reach():
    torch.manual_seed(0)
    net = UNet(1, 1, depth=3, base_features=4, norm=False).double().eval()
    x = torch.rand(1, 1, 160, 160, dtype=torch.float64, requires_grad=True)
    net(x)[0, 0, 80, 80].backward()
    reach = (x.grad[0, 0].abs() > 0).nonzero()
    extent = max((80 - reach.min()).item(), (reach.max() - 80).item())
    assert 0 < extent <= net.receptive_radius()


def test_pad_to_multiple_reflects_and_replicates():
    x = torch.arange(5.0).reshape(1, 1, 1, 5)
    assert pad_to_multiple(x, 8)[0, 0, 0].tolist()[:5] == [0, 1, 2, 3, 4]
    assert pad_to_multiple(x, 8).shape[-2:] == (8, 8)  # height 1 < pad 7: replicate
    y = torch.arange(9.0).reshape(1, 1, 3, 3)
    assert pad_to_multiple(y, 4)[0, 0, 0].tolist() == [0, 1, 2, 1]  # reflect


def test_init_is_sensible():
    net = UNet(1, 2, depth=2, base_features=8)
    assert float(net.inc[1].weight.detach().mean()) == 1.0
    assert float(net.outc.bias.detach().abs().sum()) == 0.0
    assert 0.05 < float(net.inc[0].weight.detach().std()) < 1.0


# ----------------------------------------------------------------------------- output heads
@pytest.mark.parametrize("ndim, shape", [(2, (19, 23)), (3, (5, 9, 11))])
def test_distance_head_adds_one_output_channel_after_the_classes(ndim, shape):
    net = UNet(1, 3, depth=2, base_features=4, ndim=ndim, heads=["distance"]).eval()
    out = net(torch.randn(2, 1, *shape))
    assert out.shape == (2, 4, *shape)
    assert net.heads == ["distance"] and net.n_classes == 3 and net.n_outputs == 4
    assert net.head_channel("distance") == 3
    assert net.config["heads"] == ["distance"]
    assert net.outc.out_channels == 4


def test_plain_network_has_no_heads_and_no_heads_key():
    net = UNet(1, 3, depth=2, base_features=4)
    assert net.heads == [] and net.n_outputs == 3
    assert net.head_channel("distance") is None
    assert "heads" not in net.config
    assert "heads" not in UNet(1, 3, depth=2, base_features=4, heads=[]).config


@pytest.mark.parametrize("heads", ["distance", ["size"], ["distance", "distance"], [1], [None]])
def test_invalid_heads_are_a_value_error_naming_them(heads):
    with pytest.raises(ValueError, match="heads must be"):
        UNet(1, 3, depth=2, base_features=4, heads=heads)


def test_style_is_pooled_bottleneck_features():
    net = UNet(1, 2, depth=2, base_features=4).eval()
    with torch.no_grad():
        style = net.style(torch.randn(3, 1, 37, 41))
    assert style.shape == (3, 2 * 4 * 2**2)
    assert torch.isfinite(style).all()
