"""Where a training run keeps its checkpoints: file names only (no torch), for the loop and the GUI.

A run writing its best model to ``output`` (``<stem>.safetensors``) keeps its last epoch beside
it in ``<stem>.last.safetensors`` and that epoch's optimiser state in
``<stem>.last.state.safetensors``; see :mod:`napari_unet.core.training.loop`.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["last_paths"]


def last_paths(output: str | os.PathLike) -> tuple[Path, Path]:
    """(last model file, its optimiser state file) for a run writing its best model to ``output``.

    Parameters
    ----------
    output : str or os.PathLike
        The best model's file, e.g. ``"/x/m.safetensors"``.

    Returns
    -------
    tuple of Path
        ``(/x/m.last.safetensors, /x/m.last.state.safetensors)``.
    """
    output = Path(output)
    stem = output.name[: -len(".safetensors")] if output.name.endswith(".safetensors") else output.stem
    return output.with_name(stem + ".last.safetensors"), output.with_name(stem + ".last.state.safetensors")
