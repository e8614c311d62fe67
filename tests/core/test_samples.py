"""The shipped sample files: present, readable without napari, with their licences written down."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from napari_unet.core.image.io import read_image
from napari_unet.core.image.samples import SAMPLES, sample_path


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_sample_files_exist_and_read(name: str) -> None:
    path = sample_path(name)
    assert path.is_file() and path.name == SAMPLES[name].file
    image = read_image(path)
    assert image.data.size > 0
    assert SAMPLES[name].licence in ("CC0-1.0", "CC-BY-4.0")
    assert SAMPLES[name].citation and SAMPLES[name].source


def test_nuclei_sample_and_its_ground_truth() -> None:
    image = read_image(sample_path("nuclei"))
    truth = read_image(sample_path("nuclei_masks"))
    assert image.axes == truth.axes == "YX"
    assert image.data.shape == truth.data.shape == (520, 696)
    assert image.data.dtype == np.uint8
    ids = np.unique(np.asarray(truth.data))
    assert ids[0] == 0 and len(ids) - 1 == ids[-1] == 135


def test_nuclei_golgi_sample_is_calibrated() -> None:
    image = read_image(sample_path("nuclei_golgi"))
    assert image.axes == "CYX" and image.data.shape == (2, 220, 204)
    assert image.scale[1:] == pytest.approx((0.51575, 0.51575), rel=1e-4)


def test_licences_are_shipped_with_the_data() -> None:
    folder = sample_path("nuclei").parent
    readme = (folder / "README.md").read_text(encoding="utf-8")
    assert "CC0" in readme and "CC-BY 4.0" in readme
    assert "Caicedo" in readme and "BBBC038" in readme and "NEUBIAS" in readme
    for sample in SAMPLES.values():
        assert sample.file in readme
    assert (folder / "LICENSE-CC-BY-4.0.md").is_file()


def test_unknown_sample_names_the_known_ones() -> None:
    with pytest.raises(KeyError, match="nuclei_golgi"):
        sample_path("cats")


def test_samples_work_without_napari() -> None:
    code = (
        "import sys\nfrom napari_unet.core.image.samples import sample_path\n"
        "print(sample_path('nuclei').is_file(), 'napari' in sys.modules, 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["True", "False", "False"]
