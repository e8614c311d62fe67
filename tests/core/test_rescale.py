"""Zooming images to the model's object size (object_size=)."""

import numpy as np
import pytest
from known_nets import threshold_net

from napari_unet import segment
from napari_unet.core.image.rescale import zoom_back, zoom_factor
from napari_unet.core.inference.run import predict


def _threshold_net(object_size):
    net = threshold_net()
    net.spec.object_size = object_size
    return net


def test_zoom_factor_rules():
    assert zoom_factor(20, None) == 1.0
    assert zoom_factor(20, 10) == 2.0
    with pytest.raises(ValueError, match="does not record the object size"):
        zoom_factor(None, 10)
    with pytest.raises(ValueError, match="positive number"):
        zoom_factor(20, -3)
    with pytest.raises(ValueError, match="supported zoom"):
        zoom_factor(20, 1000)


def test_zoom_back_restores_shape():
    p = np.random.rand(3, 2, 25, 31).astype(np.float32)
    assert zoom_back(p, 2, (50, 61)).shape == (3, 2, 50, 61)


@pytest.mark.parametrize("object_size", [10.0, 40.0])
def test_rescaled_segmentation_keeps_shape_and_objects(object_size):
    image = np.zeros((90, 110), np.float32)
    image[10:30, 10:30] = 1.0
    image[50:80, 60:100] = 1.0
    net = _threshold_net(object_size=20.0)
    labels = segment(image, net, axes="YX", object_size=object_size)
    assert labels.shape == image.shape
    assert labels.max() == 2
    # objects land where they were, within a pixel or two of zoom blur
    assert labels[20, 20] > 0 and labels[65, 80] > 0 and labels[40, 40] == 0
    plain = segment(image, net, axes="YX")
    overlap = ((labels > 0) & (plain > 0)).sum() / (plain > 0).sum()
    assert overlap > 0.9


def test_rescale_on_stack_and_probabilities():
    net = _threshold_net(object_size=12.0)
    stack = np.random.rand(3, 40, 50).astype(np.float32)
    probs = predict(stack, net, axes="ZYX", object_size=6.0)
    assert probs.shape == (2, 3, 40, 50)
    np.testing.assert_allclose(probs.sum(0), 1.0, atol=1e-5)
