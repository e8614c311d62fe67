"""The one provenance schema (core/image/provenance.py): built once, read back, old records too."""

from __future__ import annotations

import numpy as np

from napari_unet import __version__
from napari_unet.core.image.io import read_provenance, write_labels
from napari_unet.core.image.provenance import PROVENANCE_KEYS, build_provenance, complete_provenance


def test_build_provenance_has_every_key_of_the_schema() -> None:
    record = build_provenance(
        command="napari-unet segment",
        model="nuclei",
        model_description="d",
        input="a.tif",
        axes="YX",
        device="cpu",
        options={"mode": "instances"},
    )
    assert tuple(record) == PROVENANCE_KEYS
    assert record["software"] == f"napari-unet {__version__}" and record["napari_unet_version"] == __version__
    assert record["options"] == {"mode": "instances"} and record["date"].endswith("+00:00")
    flat = build_provenance(command="c", model=None, axes="YX", options={"mode": "semantic", "axes": "ZYX"}, flat=True)
    assert flat["mode"] == "semantic" and flat["axes"] == "YX"  # flat options never overwrite the schema's keys
    assert set(complete_provenance({"model": "m"}, layer_name="x")) == {*PROVENANCE_KEYS, "layer_name"}


def test_records_written_before_the_one_schema_still_read(tmp_path) -> None:
    labels = np.zeros((8, 9), np.uint16)
    # the panel's old record: image / image_axes instead of input / axes
    old_panel = {
        "software": "napari-unet 0.9",
        "napari_unet_version": "0.9",
        "model": "nuclei",
        "image": "cells",
        "image_axes": "YX",
        "options": {"output": "instances"},
        "layer_name": "cells",
    }
    path = write_labels(tmp_path / "old_panel.tif", labels, axes="YX", provenance=old_panel)
    prov = read_provenance(path)
    assert prov["input"] == "cells" and prov["axes"] == "YX" and prov["image"] == "cells"
    assert prov["options"] == {"output": "instances"} and prov["model"] == "nuclei"
    # the CLI's old record (flat options, no options mapping) reads as it was written
    old_cli = {
        "software": "napari-unet 0.9",
        "command": "napari-unet segment",
        "input": "a.tif",
        "model": "nuclei",
        "mode": "instances",
        "axes": "YX",
        "device": "cpu",
    }
    path = write_labels(tmp_path / "old_cli.tif", labels, axes="YX", provenance=old_cli)
    assert read_provenance(path) == old_cli
