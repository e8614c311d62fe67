"""The napari-unet engine: a plain library that never imports napari, Qt or magicgui.

Submodules are imported on demand; importing :mod:`napari_unet.core` does not import torch.
"""
