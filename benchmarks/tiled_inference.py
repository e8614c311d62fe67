"""Tiled inference speed: napari-unet vs MONAI's sliding window vs the bare network.

    python benchmarks/tiled_inference.py --device cpu  [--size 1024] [--tile 512] [--batch 4]
    python benchmarks/tiled_inference.py --device cuda [--size 8192] [--tile 512] [--batch 16]

Builds the seed U-Net once (base 64 features, depth 4, BatchNorm, bilinear up, 1 input channel,
2 classes; random weights, eval mode) and, on one random uint16 image, measures end to end
(host array in → labels out):

* ``napari-unet``: ``napari_unet.core.segment.iter_segment`` (global normalisation, tiles with halo
  and blending, softmax, connected components), its default halo;
* ``monai``: ``monai.inferers.sliding_window_inference`` (gaussian blending, overlap 0.25) on the
  normalised image, then argmax and the same connected components;
* ``untiled forward``: the network alone on a batch of tiles already on the device — the ceiling.

Prints Mpx/s for each, the ratios, peak host memory (and peak GPU memory on CUDA), the device,
torch version and settings. monai is a benchmark-only dependency (``pip install monai``).
"""

from __future__ import annotations

import argparse
import platform
import resource
import time

import numpy as np
import torch


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def timed(fn, repeat: int) -> float:
    fn()  # warm-up (cudnn autotuning, allocator)
    times = []
    for _ in range(repeat):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--size", type=int, default=None, help="image edge (default 1024 CPU, 8192 GPU)")
    parser.add_argument("--tile", type=int, default=512)
    parser.add_argument("--batch", type=int, default=None, help="tiles per batch (default 4 CPU, 16 GPU)")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--precision", default="auto")
    args = parser.parse_args()

    from napari_unet.core.inference import drain, resolve_device, resolve_precision
    from napari_unet.core.model import UNet
    from napari_unet.core.normalize import apply_range, percentile_range, strided_sample
    from napari_unet.core.postprocess import instance_labels
    from napari_unet.core.segment import iter_segment

    dev = resolve_device(args.device)
    gpu = dev.type == "cuda"
    size = args.size or (8192 if gpu else 1024)
    batch = args.batch or (16 if gpu else 4)
    autocast = resolve_precision(args.precision, dev)
    torch.manual_seed(0)
    net = UNet(1, 2, depth=4, base_features=64).eval().to(dev)
    image = np.random.default_rng(0).integers(0, 4000, (size, size)).astype(np.uint16)
    mpx = size * size / 1e6

    def ours() -> np.ndarray:
        return drain(iter_segment(image, net, axes="YX", tile_size=args.tile, batch_size=batch, device=dev,
                                  precision=args.precision))

    rows = [("napari-unet", timed(ours, args.repeat))]

    try:
        from monai.inferers import sliding_window_inference
    except ImportError:
        sliding_window_inference = None
    if sliding_window_inference is not None:
        def monai_run() -> np.ndarray:
            lo, hi = percentile_range(strided_sample(image[None], keep=(0,)), 1, 99.8)
            x = torch.from_numpy(apply_range(image[None], lo, hi))[None].to(dev)
            with torch.inference_mode(), torch.autocast(dev.type, dtype=autocast, enabled=autocast is not None):
                logits = sliding_window_inference(x, (args.tile, args.tile), batch, net, overlap=0.25,
                                                  mode="gaussian", sw_device=dev, device=dev)
            probs = torch.softmax(logits.float(), 1)[0].cpu().numpy()
            return instance_labels(probs)

        rows.append(("monai sliding window", timed(monai_run, args.repeat)))

    tiles = torch.randn(batch, 1, args.tile, args.tile, device=dev)

    def forward() -> None:
        with torch.inference_mode(), torch.autocast(dev.type, dtype=autocast, enabled=autocast is not None):
            net(tiles)

    t_fwd = timed(forward, max(args.repeat, 3))
    fwd_rate = batch * args.tile**2 / 1e6 / t_fwd

    print(f"device {dev} ({torch.cuda.get_device_name(dev) if gpu else platform.processor() or platform.machine()}),"
          f" torch {torch.__version__}, threads {torch.get_num_threads()}, precision {args.precision}")
    print(f"seed U-Net (64 features, depth 4), image {size}x{size} uint16, tile {args.tile}, batch {batch}")
    print(f"{'method':<24}{'seconds':>10}{'Mpx/s':>10}{'vs monai':>10}{'vs forward':>12}")
    monai_rate = None
    for name, t in rows:
        rate = mpx / t
        if name.startswith("monai"):
            monai_rate = rate
    for name, t in rows:
        rate = mpx / t
        vs_monai = f"{rate / monai_rate:.2f}x" if monai_rate else "-"
        print(f"{name:<24}{t:>10.2f}{rate:>10.2f}{vs_monai:>10}{rate / fwd_rate:>11.2f}x")
    print(f"{'untiled forward':<24}{'':>10}{fwd_rate:>10.2f}{'':>10}{1.0:>11.2f}x")
    print(f"peak host memory {peak_rss_gib():.2f} GiB"
          + (f", peak GPU memory {torch.cuda.max_memory_allocated(dev) / 2**30:.2f} GiB" if gpu else ""))


if __name__ == "__main__":
    main()
