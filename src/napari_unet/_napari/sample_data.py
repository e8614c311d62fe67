"""napari sample data (``File > Open Sample > Segment with U-Net``).

The layers are made by the reader's own conversion, so a sample opens exactly as the shipped
file would (same axes metadata, scale, units and channel names). Files, licences and citations:
:mod:`napari_unet.core.image.samples` and ``napari_unet/data/README.md``.
"""

from __future__ import annotations

import logging

from napari_unet._napari.reader import LayerData, image_file_to_layer_data, labels_layer_data
from napari_unet.core.image.io import read_image
from napari_unet.core.image.samples import SAMPLES, sample_path

__all__ = ["GROUND_TRUTH_NAME", "nuclei_golgi_sample", "nuclei_sample"]

logger = logging.getLogger(__name__)

#: Name of the ground-truth Labels layer of the nuclei sample.
GROUND_TRUTH_NAME = "nuclei ground truth"


def nuclei_sample() -> list[LayerData]:
    """Fluorescence nuclei from DSB2018 (CC0) and their ground-truth instance labels.

    Returns
    -------
    list of LayerData
        An Image layer (uint8, axes ``YX``, shape (520, 696)) and a Labels layer named
        ``"nuclei ground truth"`` (the expert masks, 0 = background, one id per nucleus).
    """
    layers = image_file_to_layer_data(read_image(sample_path("nuclei")))
    sample = SAMPLES["nuclei_masks"]
    labels, kwargs, kind = labels_layer_data(
        read_image(sample_path("nuclei_masks")),
        name=GROUND_TRUTH_NAME,
        metadata={"licence": sample.licence, "citation": sample.citation},
    )
    kwargs["opacity"] = 0.5
    logger.debug("nuclei sample: image %s, %d ground-truth nuclei", layers[0][0].shape, int(labels.max()))
    return [*layers, (labels, kwargs, kind)]


def nuclei_golgi_sample() -> list[LayerData]:
    """Nuclei and Golgi, two uint16 channels (NEUBIAS training resources, CC-BY 4.0).

    Returns
    -------
    list of LayerData
        One tuple with ``channel_axis=0``: napari adds two Image layers (channel 0 nuclei,
        channel 1 Golgi), axes ``YX``, 0.5158 micrometer pixels.
    """
    return image_file_to_layer_data(read_image(sample_path("nuclei_golgi")))
