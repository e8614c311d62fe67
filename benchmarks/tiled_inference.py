"""Tiled inference speed: napari-unet vs MONAI's sliding window vs the bare network.

    python benchmarks/tiled_inference.py --device cpu  [--size 2048] [--tile 512] [--batch 4]
    python benchmarks/tiled_inference.py --device cuda [--size 8192] [--tile 512] [--batch 16]

Builds the seed U-Net once (base 64 features, depth 4, BatchNorm, bilinear up, 1 input channel,
2 classes; random weights, eval mode) and, on one random uint16 image, measures end to end
(host array in → labels out):

* ``napari-unet``: ``napari_unet.core.segment.iter_segment`` with its defaults (tile, halo and
  batch chosen by the engine; ``--ours-tile`` forces a tile size); on CUDA also with
  ``compile=True``, timed after the warm-up run that compiles;
* ``monai``: ``monai.inferers.sliding_window_inference`` (roi ``--tile``, batch ``--batch``,
  gaussian blending, overlap 0.25, autocast at the same precision) on the normalised image,
  then softmax and the same label making;
* ceilings: the bare network on a batch of ``--batch`` tiles of ``--tile`` px already on the
  device, as given (``plain``), channels-last (``channels-last``), and the copy napari-unet
  runs (BatchNorm folded, channels-last, compiled on CUDA).

Prints Mpx/s, the ratios, peak host memory and peak GPU memory per method, the device, torch
version and settings. monai is a benchmark-only dependency (``pip install monai``).
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


def timed(fn, repeat: int, gpu: bool) -> float:
    fn()  # warm-up (cudnn autotuning, compilation, allocator)
    times = []
    for _ in range(repeat):
        if gpu:
            torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        if gpu:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:  # noqa: C901
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--size", type=int, default=None, help="image edge (default 2048 CPU, 8192 GPU)")
    parser.add_argument("--tile", type=int, default=512, help="MONAI's roi and the ceiling's tile")
    parser.add_argument("--batch", type=int, default=None, help="MONAI's / the ceiling's batch (4 CPU, 16 GPU)")
    parser.add_argument("--ours-tile", type=int, default=None, help="force napari-unet's tile size")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--features", type=int, default=64, help="base features of the network")
    parser.add_argument("--skip-monai", action="store_true")
    args = parser.parse_args()

    from napari_unet.core.image.normalize import apply_range, percentile_range, strided_sample
    from napari_unet.core.inference.fastnet import inference_network, memory_format
    from napari_unet.core.inference.planning import resolve_precision
    from napari_unet.core.labels.probabilities import instance_labels
    from napari_unet.core.model.unet import UNet
    from napari_unet.core.options import resolve_device
    from napari_unet.core.progress import Progress
    from napari_unet.core.segment import iter_segment

    dev = resolve_device(args.device)
    gpu = dev.type == "cuda"
    size = args.size or (8192 if gpu else 2048)
    batch = args.batch or (16 if gpu else 4)
    autocast = resolve_precision(args.precision, dev)
    if gpu:
        torch.backends.cudnn.benchmark = True
    torch.manual_seed(0)
    net = UNet(1, 2, depth=4, base_features=args.features).eval().to(dev)
    image = np.random.default_rng(0).integers(0, 4000, (size, size)).astype(np.uint16)
    mpx = size * size / 1e6
    plan: list[str] = []
    rows: list[tuple[str, float, float, float]] = []  # name, seconds, peak host GiB, peak GPU GiB

    def measure(name: str, fn) -> None:
        if gpu:
            torch.cuda.reset_peak_memory_stats(dev)
        t = timed(fn, args.repeat, gpu)
        gpu_peak = torch.cuda.max_memory_allocated(dev) / 2**30 if gpu else 0.0
        rows.append((name, t, peak_rss_gib(), gpu_peak))

    def ours(compile: bool | str = "auto") -> np.ndarray:
        gen = iter_segment(
            image, net, axes="YX", device=dev, precision=args.precision, tile_size=args.ours_tile, compile=compile
        )
        while True:
            try:
                event: Progress = next(gen)
            except StopIteration as stop:
                return stop.value
            if event.stage == "tiles" and event.step == 0 and not plan:
                plan.append(event.message)

    measure("napari-unet", ours)
    if gpu:  # steady state after a one-time compilation (the warm-up run compiles)
        measure("napari-unet, compiled", lambda: ours(compile=True))

    try:
        from monai.inferers import sliding_window_inference
    except ImportError:
        sliding_window_inference = None
    if sliding_window_inference is not None and not args.skip_monai:

        def monai_run() -> np.ndarray:
            lo, hi = percentile_range(strided_sample(image[None], keep=(0,)), 1, 99.8)
            x = torch.from_numpy(apply_range(image[None], lo, hi))[None].to(dev)
            with torch.inference_mode(), torch.autocast(dev.type, dtype=autocast, enabled=autocast is not None):
                logits = sliding_window_inference(
                    x, (args.tile, args.tile), batch, net, overlap=0.25, mode="gaussian", sw_device=dev, device=dev
                )
            probs = torch.softmax(logits.float(), 1)[0].cpu().numpy()
            return instance_labels(probs)

        measure("monai sliding window", monai_run)

    tiles = torch.randn(batch, 1, args.tile, args.tile, device=dev)
    fmt = memory_format(net, dev)
    fast = inference_network(net, dev, compile=gpu)
    ceilings = []
    for name, model, x in [
        ("forward, plain", net, tiles),
        ("forward, channels-last", net.to(memory_format=fmt), tiles.contiguous(memory_format=fmt)),
        ("forward, napari-unet's net", fast, tiles.contiguous(memory_format=fmt)),
    ]:

        def forward(model=model, x=x) -> None:
            with torch.inference_mode(), torch.autocast(dev.type, dtype=autocast, enabled=autocast is not None):
                model(x)

        t_fwd = timed(forward, max(args.repeat, 2), gpu)
        ceilings.append((name, batch * args.tile**2 / 1e6 / t_fwd))
    net.to(memory_format=torch.contiguous_format)

    print(
        f"device {dev} ({torch.cuda.get_device_name(dev) if gpu else platform.processor() or platform.machine()}),"
        f" torch {torch.__version__}, threads {torch.get_num_threads()}, precision {args.precision}"
        f" (autocast {autocast})"
    )
    print(
        f"seed U-Net ({args.features} features, depth 4), image {size}x{size} uint16; MONAI roi {args.tile}, "
        f"batch {batch}, overlap 0.25; napari-unet: {plan[0] if plan else '?'}"
    )
    best = max(rate for _, rate in ceilings)
    monai_rate = next((mpx / t for name, t, _, _ in rows if name.startswith("monai")), None)
    print(f"{'method':<30}{'seconds':>9}{'Mpx/s':>9}{'vs monai':>10}{'vs best fwd':>13}{'host GiB':>10}{'GPU GiB':>9}")
    for name, t, host, gmem in rows:
        rate = mpx / t
        vs_monai = f"{rate / monai_rate:.2f}x" if monai_rate else "-"
        print(f"{name:<30}{t:>9.2f}{rate:>9.3f}{vs_monai:>10}{rate / best:>12.2f}x{host:>10.2f}{gmem:>9.2f}")
    for name, rate in ceilings:
        print(f"{name:<30}{'':>9}{rate:>9.3f}{'':>10}{rate / best:>12.2f}x")
    print("host GiB: peak resident memory of the process so far (includes the input, model and torch)")


if __name__ == "__main__":
    main()
