"""One provenance schema from every writer: the CLI, the Segment panel and the napari writer.

The console API returns arrays and writes no labels file, so it has no record of its own.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import tifffile

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from napari_unet._napari.reader import read_tiff  # noqa: E402
from napari_unet._napari.segment_widget import SegmentWidget  # noqa: E402
from napari_unet._napari.writer import write_labels_layer  # noqa: E402
from napari_unet.cli import main  # noqa: E402
from napari_unet.core.image.io import read_image, read_provenance, write_labels  # noqa: E402
from napari_unet.core.image.provenance import PROVENANCE_KEYS  # noqa: E402
from napari_unet.core.image.samples import sample_path  # noqa: E402


def _schema_keys(record: dict[str, Any]) -> set[str]:
    """The record's keys less the options the CLI also keeps at the top level."""
    return set(record) - (set(record.get("options") or {}) - set(PROVENANCE_KEYS))


def test_cli_panel_and_writer_record_the_same_keys(make_napari_viewer, tmp_path, capsys) -> None:
    image = np.asarray(read_image(sample_path("nuclei")).data)[:64, :64]
    tifffile.imwrite(tmp_path / "a.tif", image)
    out = tmp_path / "out"
    assert (
        main(
            [
                "segment",
                str(tmp_path / "a.tif"),
                "--model",
                "nuclei",
                "-o",
                str(out),
                "--no-progress",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    capsys.readouterr()
    cli = read_provenance(out / "a_labels.tif")

    viewer = make_napari_viewer()
    viewer.add_image(image, name="cells")
    widget = SegmentWidget(viewer)  # the built-in nuclei model
    widget.configure(device="cpu")
    panel = widget._make_job().provenance()

    assert _schema_keys(cli) == _schema_keys(panel) == set(PROVENANCE_KEYS)
    assert cli["model"] == panel["model"] == "nuclei"
    assert cli["model_description"] == panel["model_description"] and cli["model_description"]
    assert cli["input"] == str(tmp_path / "a.tif") and panel["input"] == "cells"

    # the napari writer keeps the panel's record and adds the layer's name
    (written,) = write_labels_layer(
        str(tmp_path / "saved.tif"),
        np.zeros((64, 64), np.uint16),
        {"name": "cells labels", "metadata": {"axes": "YX", "provenance": panel}},
    )
    saved = read_provenance(written)
    assert _schema_keys(saved) == set(PROVENANCE_KEYS) | {"layer_name"}
    assert {k: v for k, v in saved.items() if k != "layer_name"} == panel


def test_the_reader_opens_labels_with_an_old_style_record(tmp_path) -> None:
    old = {
        "software": "napari-unet 0.9",
        "napari_unet_version": "0.9",
        "model": "nuclei",
        "image": "cells",
        "image_axes": "YX",
        "options": {"output": "instances"},
        "layer_name": "cells",
    }
    path = write_labels(tmp_path / "old.tif", np.ones((8, 9), np.uint16), axes="YX", provenance=old)
    ((_, kwargs, layer_type),) = read_tiff([str(path)])
    assert layer_type == "labels"
    prov = kwargs["metadata"]["provenance"]
    assert prov["input"] == "cells" and prov["axes"] == "YX" and prov["model"] == "nuclei"
