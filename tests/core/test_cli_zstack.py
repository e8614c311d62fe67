"""``napari-unet segment --z-mode/--anisotropy``: z-stacks with a 2D model, through ``napari_unet.cli.main``.

The model is the hand-set threshold network of ``known_nets``; the stack is ``test_cli``'s ZCYX
hyperstack (Z spacing 2.5 micron, XY pixel 0.5 micron: anisotropy 5), channel 0 one square per plane.
"""

from __future__ import annotations

import numpy as np
import pytest
from test_cli import (  # noqa: F401 - model2 is a fixture
    ONE,  # noqa: I001
    mask,
    model2,
    run_cli,
    write_zcyx,
)

from napari_unet.core.image.io import read_image, read_provenance


@pytest.mark.parametrize(("z_mode", "objects"), [("3d", 1), ("stitch", 1), ("planes", 4), ("3d-ortho", 1)])
def test_z_mode_option(tmp_path, capsys, model2, z_mode, objects):  # noqa: F811
    write_zcyx(tmp_path / "stack.tif", n_z=4)
    out = tmp_path / "out"
    status, lines, err = run_cli(
        capsys, "segment", tmp_path / "stack.tif", "-m", model2, "-o", out, "--z-mode", z_mode, "--no-progress"
    )
    assert status == 0 and err == []
    data = np.asarray(read_image(out / "stack_labels.tif").data)
    assert data.shape == (4, 37, 41) and data.max() == objects
    for z in range(4):
        np.testing.assert_array_equal(data[z] > 0, mask(ONE))
    assert f"{objects} objects (z-mode {z_mode})" in lines[0]
    prov = read_provenance(out / "stack_labels.tif")
    assert prov["options"]["z_mode"] == z_mode and prov["options"]["anisotropy"] == pytest.approx(5.0)


def test_anisotropy_given_wins_and_is_recorded(tmp_path, capsys, model2):  # noqa: F811
    write_zcyx(tmp_path / "stack.tif")
    out = tmp_path / "out"
    status, _, err = run_cli(
        capsys, "segment", tmp_path / "stack.tif", "-m", model2, "-o", out, "--anisotropy", "3", "--no-progress"
    )
    assert status == 0, err
    assert read_provenance(out / "stack_labels.tif")["anisotropy"] == 3.0


def test_bad_z_options_are_one_line(tmp_path, capsys, model2):  # noqa: F811
    write_zcyx(tmp_path / "stack.tif")
    out = tmp_path / "out"
    status, _, err = run_cli(capsys, "segment", tmp_path / "stack.tif", "-m", model2, "-o", out, "--anisotropy", "-1")
    assert status == 1 and len(err) == 1
    assert "anisotropy must be a positive number (Z spacing / XY spacing), got -1.0" in err[0]
    assert not out.exists() or not list(out.iterdir())
    with pytest.raises(SystemExit) as exit_info:
        run_cli(capsys, "segment", tmp_path / "stack.tif", "-m", model2, "-o", out, "--z-mode", "4d")
    assert exit_info.value.code == 2
    assert "invalid choice: '4d'" in capsys.readouterr().err


def test_help_names_the_z_modes(capsys):
    with pytest.raises(SystemExit):
        run_cli(capsys, "segment", "--help")
    text = " ".join(capsys.readouterr().out.split())
    assert "--z-mode {3d,stitch,planes,3d-ortho}" in text and "--anisotropy" in text
