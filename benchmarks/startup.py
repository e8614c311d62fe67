"""Start-up targets of the napari plugin, measured on this machine.

    xvfb-run -a python benchmarks/startup.py

Each measurement runs in its own fresh Python process (``python startup.py --child NAME``), so
every import is cold; the parent only collects their results and prints one table:

* ``open``: ``napari.Viewer(show=False)``, then the Segment panel opened through its npe2
  contribution, ``viewer.window.add_plugin_dock_widget("napari-unet", "Segment with U-Net")``,
  timed around that call (it includes importing the plugin's modules); then whether ``torch`` is
  in ``sys.modules`` (target: it is not).
* ``import``: with a viewer already open (as when napari is running), the time of
  ``import napari_unet`` plus ``import napari_unet._napari.segment_widget`` (part of the above).
* ``run``: a viewer, a 512×512 crop of the bundled nuclei sample as an Image layer, selected; the
  panel opened as above and set to the bundled model, device ``cpu``, output ``instances``. The
  timer starts before a click on **Run** (``QPushButton.click()``, what a user's click does) and
  stops when the Labels layer is added to the viewer (the layer list's ``inserted`` event, after
  napari's own handlers), with Qt events processed in between. Twice: the first run imports torch
  and loads the model, the second (warm) runs after the first result layer was removed (so that it
  adds a new layer instead of replacing the old one's data).

napari-unet's settings go to a temporary folder (``NAPARI_UNET_CONFIG_DIR``), never the user's.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

PLUGIN = "napari-unet"
WIDGET = "Segment with U-Net"  # display_name of the widget in src/napari_unet/napari.yaml
CROP = 512
TIMEOUT_S = 300.0

OPEN_TARGET_S = 1.0
RUN_TARGET_S = 1.5


# ---------------------------------------------------------------------------- children
def _process_events_until(condition, timeout_s: float = TIMEOUT_S) -> None:
    """Run Qt's event loop in short slices until ``condition()`` is true."""
    from qtpy.QtTest import QTest

    deadline = time.perf_counter() + timeout_s
    while not condition():
        if time.perf_counter() > deadline:
            raise TimeoutError(f"gave up after {timeout_s:.0f} s")
        QTest.qWait(2)  # processes events while waiting; does not spin on the CPU


def child_open() -> dict:
    import napari

    viewer = napari.Viewer(show=False)
    torch_before = "torch" in sys.modules
    start = time.perf_counter()
    _dock, widget = viewer.window.add_plugin_dock_widget(PLUGIN, WIDGET)
    seconds = time.perf_counter() - start
    result = {
        "dock_s": seconds,
        "widget": type(widget).__name__,
        "torch_before": torch_before,
        "torch_after": "torch" in sys.modules,
    }
    viewer.close()
    return result


def child_import() -> dict:
    import napari

    viewer = napari.Viewer(show=False)
    already = sorted(name for name in sys.modules if name.startswith("napari_unet"))
    start = time.perf_counter()
    importlib.import_module("napari_unet")
    importlib.import_module("napari_unet._napari.segment_widget")
    seconds = time.perf_counter() - start
    result = {"import_s": seconds, "already_imported": already, "torch_after": "torch" in sys.modules}
    viewer.close()
    return result


def child_run(wait_s: float = 0.0) -> dict:
    import napari
    from napari.layers import Labels

    from napari_unet._napari.model_choice import builtin_models
    from napari_unet.core.image.io import read_image
    from napari_unet.core.image.samples import sample_path

    image = read_image(sample_path("nuclei"))
    assert image.axes == "YX", image.axes
    data = image.data[:CROP, :CROP].copy()
    assert data.shape == (CROP, CROP), data.shape

    viewer = napari.Viewer(show=False)
    layer = viewer.add_image(data, name="nuclei")
    viewer.layers.selection.active = layer
    _dock, widget = viewer.window.add_plugin_dock_widget(PLUGIN, WIDGET)
    models = dict(builtin_models())
    widget._model.value = models["nuclei (built-in)"]
    widget._device.value = "cpu"
    widget._output.value = "instances"
    assert widget.image_layer is layer

    added: dict = {}

    def on_inserted(event) -> None:
        if isinstance(event.value, Labels) and "t" not in added:
            added["t"] = time.perf_counter()
            added["layer"] = event.value

    viewer.layers.events.inserted.connect(on_inserted, position="last")

    def one_run() -> dict:
        added.clear()
        torch_before = "torch" in sys.modules
        start = time.perf_counter()
        widget._run_button.native.click()  # as a user's click: clicked -> magicgui changed -> run()
        clicked = widget.running
        _process_events_until(lambda: "t" in added or (clicked and not widget.running))
        if "t" not in added:
            raise RuntimeError(f"no Labels layer was added; status: {' '.join(str(widget._status.value).split())}")
        seconds = added["t"] - start
        _process_events_until(lambda: not widget.running)  # let the worker finish before the next run
        labels = added["layer"]
        return {
            "s": seconds,
            "torch_before": torch_before,
            "layer": labels.name,
            "shape": list(labels.data.shape),
            "objects": int(labels.data.max()),
        }

    if wait_s:  # a user's reaction time: the panel warms torch and the model up meanwhile
        deadline = time.perf_counter() + wait_s
        _process_events_until(lambda: time.perf_counter() >= deadline, timeout_s=wait_s + 5)
    first = one_run()
    viewer.layers.remove(first["layer"])
    second = one_run()
    import torch

    result = {"first": first, "second": second, "torch_threads": torch.get_num_threads()}
    viewer.close()
    return result


CHILDREN = {"open": child_open, "import": child_import, "run": child_run, "run_after_3s": lambda: child_run(wait_s=3.0)}


# ---------------------------------------------------------------------------- parent
def version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def cpu_info() -> str:
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{model}, {usable} usable of {os.cpu_count()} logical CPUs"


def run_child(name: str, config_dir: str) -> dict:
    env = {**os.environ, "NAPARI_UNET_CONFIG_DIR": config_dir}
    proc = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--child", name],
        capture_output=True,
        text=True,
        env=env,
        timeout=TIMEOUT_S + 120,
    )
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"child {name!r} failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(lines[-1])


def yes_no(ok: bool) -> str:
    return "yes" if ok else "NO"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(CHILDREN[args.child]()), flush=True)
        return

    with tempfile.TemporaryDirectory(prefix="napari-unet-startup-") as config_dir:
        opened = run_child("open", config_dir)
        imported = run_child("import", config_dir)
        ran = run_child("run", config_dir)
        waited = run_child("run_after_3s", config_dir)

    first, second = ran["first"], ran["second"]
    rows = [
        (
            "torch imported after opening napari + Segment panel",
            "yes" if opened["torch_after"] else "no",
            "no",
            yes_no(not opened["torch_after"]),
        ),
        (
            "Segment panel opens (add_plugin_dock_widget)",
            f"{opened['dock_s']:.3f} s",
            f"< {OPEN_TARGET_S:g} s",
            yes_no(opened["dock_s"] < OPEN_TARGET_S),
        ),
        (
            "  of which: import napari_unet + segment_widget",
            f"{imported['import_s']:.3f} s",
            "(part of the above)",
            "-",
        ),
        (
            f"Run -> Labels layer, {CROP}x{CROP}, bundled model, CPU: first run, clicked at once",
            f"{first['s']:.3f} s",
            f"< {RUN_TARGET_S:g} s",
            yes_no(first["s"] < RUN_TARGET_S),
        ),
        (
            f"Run -> Labels layer, {CROP}x{CROP}, bundled model, CPU: first run, 3 s after opening",
            f"{waited['first']['s']:.3f} s",
            f"< {RUN_TARGET_S:g} s",
            yes_no(waited["first"]["s"] < RUN_TARGET_S),
        ),
        (
            f"Run -> Labels layer, {CROP}x{CROP}, bundled model, CPU: second run",
            f"{second['s']:.3f} s",
            f"< {RUN_TARGET_S:g} s",
            yes_no(second["s"] < RUN_TARGET_S),
        ),
    ]
    header = ("measurement", "value", "target", "met")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(4)]
    line = "  ".join("-" * w for w in widths)
    print(line)
    for row in [header, None, *rows]:
        print(line if row is None else "  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    print(line)
    print(
        f"python {platform.python_version()}, torch {version('torch')} ({ran['torch_threads']} threads), "
        f"napari {version('napari')}, napari-unet {version('napari-unet')}, "
        f"Qt binding {os.environ.get('QT_API') or _qt_binding()}"
    )
    print(f"CPU: {cpu_info()}; {platform.system()} {platform.release()}")
    print(
        f"torch imported before Run: first run {'yes' if first['torch_before'] else 'no'}, "
        f"second run {'yes' if second['torch_before'] else 'no'}; results: {first['layer']!r} "
        f"{first['objects']} objects, {second['objects']} objects (shape {tuple(second['shape'])})"
    )


def _qt_binding() -> str:
    for package in ("PyQt5", "PyQt6", "PySide2", "PySide6"):
        found = version(package)
        if found != "not installed":
            return f"{package} {found}"
    return "none found"


if __name__ == "__main__":
    main()
