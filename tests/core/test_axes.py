"""Axes validation, guessing, and mapping images onto a model's channels."""

import numpy as np
import pytest

from napari_unet.core.image.axes import (
    AxesChoice,
    AxesGuessWarning,
    choose_axes,
    guess_axes,
    parse_channels,
    validate_axes,
)
from napari_unet.core.image.layout import plan_layout


def test_validate_axes():
    assert validate_axes("zcyx", (2, 3, 4, 5)) == "ZCYX"
    with pytest.raises(ValueError, match="name 3 dimensions but the image has 4"):
        validate_axes("CYX", (1, 2, 3, 4))
    with pytest.raises(ValueError, match="repeat Y"):
        validate_axes("YYX", (1, 2, 3))
    with pytest.raises(ValueError, match="both Y and X"):
        validate_axes("ZCX", (1, 2, 3))
    with pytest.raises(ValueError, match="letters only"):
        validate_axes("Z1X", (1, 2, 3))


@pytest.mark.parametrize(
    "shape, axes",
    [
        ((2, 64, 64), "CYX"),
        ((64, 64, 3), "YXS"),
        ((30, 64, 64), "ZYX"),
        ((45, 2, 64, 64), "ZCYX"),
        ((2, 45, 64, 64), "CZYX"),
        ((10, 45, 64, 64), "TZYX"),
        ((3, 4, 2, 64, 64), "TZCYX"),
    ],
)
def test_guess_warns(shape, axes):
    with pytest.warns(AxesGuessWarning, match=axes):
        assert guess_axes(shape) == axes


def test_guess_2d_is_silent_and_6d_refused(recwarn):
    assert guess_axes((10, 12)) == "YX"
    assert not recwarn.list
    with pytest.raises(ValueError, match="pass axes="):
        guess_axes((1,) * 6 + (5, 5))


def test_zcyx_for_2d_model_iterates_z_and_keeps_order():
    lay = plan_layout((45, 2, 13, 17), "ZCYX", model_channels=2)
    assert (lay.channel_axis, lay.channels, lay.loop_axes, lay.spatial_axes) == ("C", (0, 1), "Z", "YX")
    assert lay.out_axes == "ZYX" and lay.out_shape == (45, 13, 17)
    img = np.arange(45 * 2 * 13 * 17).reshape(45, 2, 13, 17)
    view = lay.arrange(img)
    assert view.shape == (45, 2, 13, 17)


def test_3d_model_takes_z_as_spatial_and_iterates_t():
    lay = plan_layout((3, 5, 2, 16, 16), "TZCYX", model_channels=1, model_ndim=3, channels=[1])
    assert lay.spatial_axes == "ZYX" and lay.loop_axes == "T" and lay.channels == (1,)
    assert lay.out_axes == "TZYX"
    with pytest.raises(ValueError, match="3D model needs a Z axis"):
        plan_layout((3, 16, 16), "TYX", model_channels=1, model_ndim=3)


def test_channels_by_name_and_reordered():
    names = ["DAPI", "tubulin", "actin"]
    lay = plan_layout((3, 8, 8), "CYX", model_channels=2, channels=["actin", "DAPI"], channel_names=names)
    assert lay.channels == (2, 0)
    block = np.stack([np.full((8, 8), v) for v in (10, 20, 30)])
    assert lay.select(block)[:, 0, 0].tolist() == [30.0, 10.0]


def test_channel_mismatch_message_names_counts_and_axes():
    with pytest.raises(ValueError) as err:
        plan_layout((3, 8, 8), "CYX", model_channels=2, model_channel_names=["DNA", "membrane"], image_name="layer 'x'")
    msg = str(err.value)
    assert "model expects 2 channels (DNA, membrane)" in msg and "layer 'x' gives 3" in msg
    assert "axes CYX" in msg and "channels=" in msg


def test_bad_channel_references():
    with pytest.raises(ValueError, match="channel 5 does not exist"):
        plan_layout((3, 8, 8), "CYX", model_channels=1, channels=5)
    with pytest.raises(ValueError, match="no channel named 'GFP'"):
        plan_layout((3, 8, 8), "CYX", model_channels=1, channels="GFP", channel_names=["a", "b", "c"])
    with pytest.raises(ValueError, match="same channel twice"):
        plan_layout((3, 8, 8), "CYX", model_channels=2, channels=[0, 0])
    with pytest.raises(ValueError, match="no channel axis"):
        plan_layout((8, 8), "YX", model_channels=2)


def test_rgb_samples_to_gray_or_channels():
    gray = plan_layout((8, 9, 3), "YXS", model_channels=1)
    assert gray.to_gray and gray.n_channels == 1 and gray.out_axes == "YX"
    block = np.zeros((3, 2, 2), np.uint8)
    block[1] = 100
    assert np.allclose(gray.select(block), 58.7)
    rgb = plan_layout((8, 9, 3), "YXS", model_channels=3)
    assert not rgb.to_gray and rgb.channels == (0, 1, 2)


def test_c_and_s_together():
    lay = plan_layout((1, 8, 8, 3), "CYXS", model_channels=1)
    assert lay.channel_axis == "S" and "C" in lay.loop_axes and lay.out_axes == "CYX"
    with pytest.raises(ValueError, match="both a C"):
        plan_layout((2, 8, 8, 3), "CYXS", model_channels=1)


def test_unknown_letters_are_iterated_and_output_follows_input_order():
    lay = plan_layout((4, 8, 9, 2), "QYXC", model_channels=2)
    assert lay.loop_axes == "Q" and lay.out_axes == "QYX"
    out = np.zeros((7, 4, 8, 9))  # (classes, Q, Y, X) work order
    assert lay.to_output_order(out, lead=1).shape == (7, 4, 8, 9)
    lay2 = plan_layout((8, 9, 5), "YXT", model_channels=1)
    assert lay2.to_output_order(np.zeros((5, 8, 9))).shape == (8, 9, 5)


def test_choose_axes_precedence_and_origin(recwarn):
    assert choose_axes((2, 37, 41), "zyx", recorded="CYX") == AxesChoice("ZYX", "given")
    assert choose_axes((2, 37, 41), " ", recorded="ZYX") == AxesChoice("ZYX", "recorded")
    assert choose_axes((37, 41, 3), rgb=True) == AxesChoice("YXS", "rgb")
    assert choose_axes((37, 41)) == AxesChoice("YX", "2D")
    assert choose_axes((2, 37, 41)) == AxesChoice("CYX", "guessed")
    assert choose_axes((2, 37, 41), guess=False) == AxesChoice(None, "unknown")
    assert not [w for w in recwarn if issubclass(w.category, AxesGuessWarning)], "the origin says it was guessed"
    ignored = choose_axes((2, 37, 41), recorded="YX")
    assert ignored.axes == "CYX" and ignored.origin == "guessed"
    assert ignored.note.startswith("metadata axes ignored: axes 'YX' name 2 dimensions")
    with pytest.raises(ValueError, match="name 2 dimensions but the image has 3"):
        choose_axes((2, 37, 41), "YX")


def test_parse_channels():
    assert parse_channels(" 0, 1 ") == [0, 1]
    assert parse_channels("DNA,membrane, -1") == ["DNA", "membrane", -1]
    assert parse_channels("") is None and parse_channels(None) is None
    assert parse_channels("0,,1") == [0, 1]
    with pytest.raises(ValueError, match="empty entry"):
        parse_channels("0,,1", strict=True)
