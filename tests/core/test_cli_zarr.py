"""``napari-unet segment`` writing OME-Zarr: ``--output OUT.zarr`` (a new OME-Zarr: the image and
its labels), ``--into-input`` (labels added to an input OME-Zarr), ``--labels-name``, ``--overwrite``.

The model is the threshold network of ``known_nets``: the objects in every output are known exactly.
Zarr inputs are read here with zarr directly (``read_image`` learns OME-Zarr in the reading work of
issue 14).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
from known_nets import threshold_net

from napari_unet.cli import main
from napari_unet.core.image import io
from napari_unet.core.image.ngff import ome_attrs
from napari_unet.core.image.zarr_copy import write_image
from napari_unet.core.image.zarr_write import labels_names, read_zarr_provenance
from napari_unet.core.model.file import save_model

zarr = pytest.importorskip("zarr")  # the zarr extra (Python >= 3.11)

SQUARE = (slice(5, 15), slice(6, 16))
SHAPE = (37, 41)


def plane() -> np.ndarray:
    rng = np.random.default_rng(0)
    img = rng.integers(0, 100, SHAPE).astype(np.uint16)
    img[SQUARE] = rng.integers(900, 1000, img[SQUARE].shape)
    return img


def expected() -> np.ndarray:
    out = np.zeros(SHAPE, np.uint16)
    out[SQUARE] = 1
    return out


@pytest.fixture
def model(tmp_path: Path) -> Path:
    path = tmp_path / "models" / "one.safetensors"
    path.parent.mkdir()
    save_model(threshold_net(1), path)
    return path


@pytest.fixture
def tif(tmp_path: Path) -> Path:
    path = tmp_path / "cells.tif"
    tifffile.imwrite(path, plane(), imagej=True, resolution=(2.0, 2.0), metadata={"axes": "YX", "unit": "um"})
    return path


def run(capsys: pytest.CaptureFixture, *argv: object) -> tuple[int, list[str], list[str]]:
    """``segment`` in memory (zarr inputs written as OME-Zarr run block-wise by default: test_blocks_ome.py)."""
    status = main(["segment", *(str(a) for a in argv), "--no-progress", "--scheduler", "none"])
    captured = capsys.readouterr()
    return status, captured.out.splitlines(), captured.err.splitlines()


def test_output_zarr_holds_the_image_and_its_labels(tmp_path: Path, capsys, model: Path, tif: Path) -> None:
    out = tmp_path / "res" / "cells.zarr"
    status, lines, err = run(capsys, tif, "-m", model, "-o", out)
    assert status == 0, err
    assert lines[0].startswith(f"{tif} -> {out / 'labels' / 'cells_labels'}: 1 objects")
    assert sorted(p.name for p in out.parent.iterdir()) == ["cells.zarr"]  # no temporary folder left
    root = zarr.open_group(str(out))
    assert root.metadata.zarr_format == 3 and root.attrs["ome"]["version"] == "0.5"
    np.testing.assert_array_equal(root["0"][:], plane())  # the image, copied
    assert ome_attrs(root)["multiscales"][0]["axes"][0] == {"name": "y", "type": "space", "unit": "micrometer"}
    assert labels_names(out) == ["cells_labels"]
    labels = zarr.open_group(str(out / "labels" / "cells_labels"))
    np.testing.assert_array_equal(labels["0"][:], expected())
    meta = ome_attrs(labels)
    assert meta["image-label"]["source"] == {"image": "../../"}
    assert meta["multiscales"][0]["datasets"][0]["coordinateTransformations"][0]["scale"] == [0.5, 0.5]
    prov = read_zarr_provenance(out / "labels" / "cells_labels")
    assert prov["command"] == "napari-unet segment" and prov["input"] == str(tif) and prov["mode"] == "instances"

    from ome_zarr.io import parse_url
    from ome_zarr.reader import Label, Reader

    nodes = list(Reader(parse_url(str(out)))())
    assert [n.zarr.path.rstrip("/").rsplit("/", 1)[-1] for n in nodes if n.load(Label)] == ["cells_labels"]


def test_an_existing_output_zarr_is_refused_unless_overwrite(tmp_path: Path, capsys, model: Path, tif: Path) -> None:
    out = tmp_path / "cells.zarr"
    assert run(capsys, tif, "-m", model, "-o", out)[0] == 0
    status, _, err = run(capsys, tif, "-m", model, "-o", out, "--labels-name", "again")
    assert status == 1 and err == [f"napari-unet: error: {tif}: {out} exists; use --overwrite to replace it"]
    status, _, err = run(capsys, tif, "-m", model, "-o", out, "--labels-name", "again", "--overwrite")
    assert status == 0, err
    assert labels_names(out) == ["again"]  # a new OME-Zarr replaced the old one
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cells.tif", "cells.zarr", "models"]


def test_output_zarr_takes_one_input_and_labels_name_needs_zarr(tmp_path: Path, capsys, model: Path, tif: Path):
    status, _, err = run(capsys, tif, tif, "-m", model, "-o", tmp_path / "x.zarr")
    assert status == 1 and "writes one OME-Zarr: give one input (got 2)" in err[0]
    status, _, err = run(capsys, tif, "-m", model, "-o", tmp_path / "dir", "--labels-name", "x")
    assert status == 1 and "--labels-name names labels in an OME-Zarr" in err[0]
    with pytest.raises(SystemExit) as exit_info:
        main(["segment", str(tif), "-m", str(model)])  # neither --output nor --into-input
    assert exit_info.value.code == 2
    assert "--output/-o (or --into-input)" in capsys.readouterr().err


@pytest.fixture
def zarr_input(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An OME-Zarr image (zarr v2, NGFF 0.4), read by ``read_image`` through zarr directly."""
    path = tmp_path / "cells.ome.zarr"
    write_image(path, plane(), axes="YX", scale=(0.5, 0.5), units=("micron", "micron"), zarr_format=2)
    real = io.read_image

    def read_image(p, *args, **kwargs):
        if not str(p).endswith(".zarr"):
            return real(p, *args, **kwargs)
        data = zarr.open_group(str(p))["0"][:]
        return io.ImageFile(
            data=data, axes="YX", scale=(0.5, 0.5), units=("micron", "micron"), channel_names=None, path=Path(p)
        )

    monkeypatch.setattr(io, "read_image", read_image)
    return path


def test_into_input_adds_labels_to_the_input(capsys, model: Path, zarr_input: Path) -> None:
    status, lines, err = run(capsys, zarr_input, "-m", model, "--into-input")
    assert status == 0, err
    assert labels_names(zarr_input) == ["cells_labels"]
    group = zarr.open_group(str(zarr_input / "labels" / "cells_labels"))
    assert group.metadata.zarr_format == 2 and ome_attrs(group)["image-label"]["version"] == "0.4"
    np.testing.assert_array_equal(group["0"][:], expected())

    status, _, err = run(capsys, zarr_input, "-m", model, "--into-input")  # the same name again
    assert status == 1
    assert err == [
        f"napari-unet: error: {zarr_input}: labels 'cells_labels' already exist in {zarr_input} (labels: "
        "cells_labels); use --overwrite to replace them or --labels-name to choose another name"
    ]
    assert run(capsys, zarr_input, "-m", model, "--into-input", "--labels-name", "second")[0] == 0
    assert run(capsys, zarr_input, "-m", model, "--into-input", "--overwrite")[0] == 0
    assert labels_names(zarr_input) == ["cells_labels", "second"]


def test_into_input_needs_an_ome_zarr_input(tmp_path: Path, capsys, model: Path, tif: Path) -> None:
    status, _, err = run(capsys, tif, "-m", model, "--into-input")
    assert status == 1 and "--into-input needs an OME-Zarr input" in err[0]
    with pytest.raises(SystemExit):
        main(["segment", str(tif), "-m", str(model), "--into-input", "-o", str(tmp_path / "o")])
