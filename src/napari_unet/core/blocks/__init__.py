"""Block-wise segmentation of images larger than memory on dask.distributed, stitched and resumable.

:func:`~napari_unet.core.blocks.run.segment_blocks` (``iter_segment_blocks``) is the entry point;
see docs/big-data.md ("Distributed"). Importing this package needs neither dask nor zarr; running
it does (``pip install "napari-unet[zarr]"``).
"""
