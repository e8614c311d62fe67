"""Make docs/images/zstack-3d.png: a real z-stack's labels in napari's 3D view, per plane and as 3D objects.

Run from the repository root, headless::

    xvfb-run -a -s "-screen 0 1600x1000x24" python docs/make_zstack_screenshot.py

(without a display the script restarts itself that way, as ``make_screenshots.py`` does). It segments
``xyz_8bit__nuclei_autothresh.tif`` (ZYX, 37 planes, Z spacing 4.8 x the pixel size; from the real data
folder ``../shared/data/stacks`` or ``$NAPARI_UNET_DATA/stacks``) with the bundled nuclei model twice,
``z_mode="planes"`` and ``z_mode="3d"``, shows each in napari's 3D view with the file's scale, and puts the
two views side by side (left: one label per plane, right: 3D objects). Exits with status 0 and a
message when the data is absent.
"""

from __future__ import annotations

import logging
import os
import pathlib
import sys

import numpy as np
from make_screenshots import OUT, _restart_under_xvfb, save_png, settle

REPO = pathlib.Path(__file__).resolve().parents[1]
STACK = "xyz_8bit__nuclei_autothresh.tif"


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    data = pathlib.Path(os.environ.get("NAPARI_UNET_DATA") or REPO.parent / "shared" / "data")
    path = data / "stacks" / STACK
    if not path.exists():
        print(f"no data: {path} not found; nothing to draw")
        return 0
    _restart_under_xvfb()
    import napari

    from napari_unet import read_image, segment

    image = read_image(path)
    labels = {mode: segment(image, z_mode=mode, device="cpu") for mode in ("planes", "3d")}
    views = []
    for mode, result in labels.items():
        viewer = napari.Viewer(show=True)
        viewer.window.resize(900, 760)
        viewer.add_image(image.data, scale=image.scale, name="nuclei", colormap="gray", opacity=0.4)
        viewer.add_labels(result, scale=image.scale, name=f"{mode}: {int(result.max())} objects")
        viewer.dims.ndisplay = 3
        viewer.camera.angles = (-20, 35, 140)
        viewer.camera.zoom *= 0.8
        viewer.text_overlay.visible = True
        viewer.text_overlay.text = f'z_mode="{mode}": {int(result.max())} labels'
        viewer.text_overlay.font_size = 14
        viewer.text_overlay.color = "white"
        settle(1.0)
        views.append(np.asarray(viewer.screenshot(canvas_only=True, flash=False)))
        viewer.close()
    height = min(v.shape[0] for v in views)
    gap = np.full((height, 8, views[0].shape[2]), 255, np.uint8)
    picture = np.concatenate([views[0][:height], gap, views[1][:height]], axis=1)
    save_png(picture, OUT / "zstack-3d.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
