"""Training: targets, patch sampling and augmentation, losses, metrics and the training loop.

``iter_train`` (in :mod:`.loop`) is the generator the CLI and the napari widget drive.
Importing this package does not import torch.
"""
