"""Networks with hand-set weights whose output is known, and a wrapper that simulates running out
of GPU memory, shared by the core tests."""

from __future__ import annotations

import torch

from napari_unet.core.model.unet import UNet


def threshold_net(in_channels: int = 1, use_channel: int = 0) -> UNet:
    """A 2-class U-Net that predicts foreground exactly where input channel ``use_channel``,
    normalised, is above 0.5.

    With ``depth=1, base_features=1, norm=False`` the network is
    ``inc`` (conv, ReLU, conv, ReLU; 1 feature) -> skip ``s``; ``downs[0]`` (pool, two convs,
    2 features) -> ``d``; ``ups[0]`` concatenates ``[s, upsample(d)]`` (3 features), conv, ReLU,
    conv, ReLU -> ``f``; ``outc`` (1x1) -> logits.

    Every weight and bias is set to zero, then:

    * the two ``inc`` convs get a centre tap of 1 from channel ``use_channel`` (resp. the single
      feature), so ``s = relu(relu(x)) = relu(x)``;
    * the down path stays all-zero, so ``d = 0``;
    * the two up convs get a centre tap of 1 from feature 0 (the skip), so ``f = relu(x)``;
    * ``outc`` has weights ``[-1, +1]`` and biases ``[+0.5, -0.5]``: logits ``(0.5 - f, f - 0.5)``.

    Class 1 wins iff ``f > 0.5`` iff ``x > 0.5``. Centre taps make zero padding, reflection
    padding, tiling and blending irrelevant: every output pixel depends on its own input pixel.
    """
    net = UNet(in_channels, 2, depth=1, base_features=1, norm=False)
    with torch.no_grad():
        for p in net.parameters():
            p.zero_()
        net.inc[0].weight[0, use_channel, 1, 1] = 1.0
        net.inc[2].weight[0, 0, 1, 1] = 1.0
        net.ups[0].conv[0].weight[0, 0, 1, 1] = 1.0
        net.ups[0].conv[2].weight[0, 0, 1, 1] = 1.0
        net.outc.weight[:, 0, 0, 0] = torch.tensor([-1.0, 1.0])
        net.outc.bias[:] = torch.tensor([0.5, -0.5])
    return net.eval()


class SharedList(list):
    """Survives the deepcopy the engine makes of a network (BatchNorm folding)."""

    def __deepcopy__(self, memo):
        return self


class OOMOnBigBatches(torch.nn.Module):
    """Wraps a UNet; raises CUDA's OOM error for batches above a pixel budget."""

    def __init__(self, net, max_pixels):
        super().__init__()
        self.net, self.max_pixels, self.calls = net, max_pixels, SharedList()

    def forward(self, x):
        pixels = x.shape[0] * x[0, 0].numel()
        self.calls.append(tuple(x.shape))
        if pixels > self.max_pixels:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return self.net(x)

    def __getattr__(self, name):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.net, name)
