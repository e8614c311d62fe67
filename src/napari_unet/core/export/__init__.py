"""Exporting a model for other programs: a bioimage.io package, TorchScript, ONNX (see docs/export.md).

:func:`~napari_unet.core.export.run.export_model` is the entry point. The top layer of the core: it
may use every other layer (it runs the model to make a package's test tensors and cover).
"""
