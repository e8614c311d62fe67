"""The Segment panel's block-wise controls: "Block-wise (dask)", "Large results to", "Resume", "Block edge".

:class:`BlockControls` builds them (the form puts them in its Advanced options) and follows the
Image box: when another image is chosen, "Block-wise (dask)" is ticked by the rule of
:func:`~napari_unet._napari.block_job.wants_blocks` (a lazy layer with large labels; the user may
tick or untick it), "Large results to" gets :func:`~napari_unet._napari.block_job.default_output`
and "Resume" is unticked. :meth:`BlockControls.settings` turns them into the
:class:`~napari_unet._napari.block_job.BlockSettings` of a run, or refuses with the reason.
"""

from __future__ import annotations

import logging
from typing import Any

from magicgui.widgets import CheckBox, FileEdit, SpinBox

from .block_job import BlockSettings, check_output, default_output, wants_blocks

__all__ = ["BlockControls"]

log = logging.getLogger(__name__)


class BlockControls:
    """The block-wise controls, following ``image_box`` (the panel's Image ComboBox).

    Attributes
    ----------
    workers : int or None
        Worker processes of the local dask cluster a block-wise run starts (None: one per GPU, else one).
    client : distributed.Client or None
        A running cluster to use instead (e.g. ``distributed.Client("tcp://head-node:8786")``); the
        panel does not close it.
    """

    def __init__(self, image_box: Any) -> None:
        self.block_wise = CheckBox(
            name="block_wise",
            text="Block-wise (dask)",
            value=False,
            tooltip="Segment block by block on a local dask cluster into OME-Zarr labels on disk, shown as a "
            "Labels layer read from their pyramid: for results too large for memory. Ticked by itself when "
            "the image is read lazily (dask / zarr) and its labels would exceed 2^28 pixels; tick or untick "
            "it to choose.",
        )
        self.path = FileEdit(
            name="large_results_to",
            label="Large results to",
            mode="w",
            filter="*.zarr",
            tooltip="The new OME-Zarr (a .zarr folder) block-wise labels are written to: beside the image's "
            "file, else in ~/napari-unet-results. An existing one is never overwritten.",
        )
        self.resume = CheckBox(
            name="resume",
            text="Resume",
            value=False,
            tooltip="Continue a cancelled or killed block-wise run into 'Large results to': only the blocks "
            "not done yet run (same image and options).",
        )
        self.block = SpinBox(
            name="block_size",
            label="Block edge (px, 0 = 1024)",
            min=0,
            max=16384,
            step=64,
            value=0,
            tooltip="Edge of the blocks (and of the label chunks on disk) of a block-wise run.",
        )
        self.workers: int | None = None
        self.client: Any = None
        self._last: BlockSettings | None = None
        self.block_wise.changed.connect(self._enable)
        image_box.changed.connect(self.follow)
        self._enable()

    @property
    def widgets(self) -> list[Any]:
        """The controls, in display order."""
        return [self.block_wise, self.path, self.resume, self.block]

    def controls(self) -> dict[str, Any]:
        """The controls by option name (``block_wise``, ``large_results_to``, ``resume``, ``block_size``)."""
        return {w.name: w for w in self.widgets}

    def _enable(self, *_: Any) -> None:
        for widget in (self.path, self.resume, self.block):
            widget.enabled = bool(self.block_wise.value)

    def follow(self, layer: Any) -> None:
        """Set the controls for a newly chosen image ``layer`` (None: none)."""
        try:
            self.block_wise.value = wants_blocks(layer)
        except Exception:  # noqa: BLE001 - a layer we cannot judge: in memory, as before
            log.debug("cannot tell whether layer %r is large; in memory", getattr(layer, "name", layer), exc_info=True)
            self.block_wise.value = False
        if layer is not None:
            self.path.value = default_output(layer)
        self.resume.value = False

    def settings(self, output: str) -> BlockSettings | None:
        """The block-wise settings of a run with ``output``, or None (in memory).

        Raises
        ------
        ValueError
            Probabilities asked block-wise, or an output path that :func:`check_output` refuses.
        """
        self._last = None
        if not self.block_wise.value:
            return None
        if output == "probabilities":
            raise ValueError(
                "block-wise runs write labels (instances or semantic); probabilities are made in memory: "
                "untick 'Block-wise (dask)' or choose another Output"
            )
        resume = bool(self.resume.value)
        path = check_output(self.path.value, resume)
        block = int(self.block.value) or None
        self._last = BlockSettings(path, resume, block, self.workers, self.client)
        return self._last

    def cancelled_text(self) -> str:
        """What the status line says after Cancel."""
        last = self._last
        if last is None:
            return "cancelled"
        if last.path.exists():  # the run ended while the cancel was on its way
            return f"cancelled as it finished: the labels are complete in '{last.path}' (not shown; open them)"
        return f"cancelled: the blocks done are kept; tick Resume and press Run to continue into '{last.path}'"
