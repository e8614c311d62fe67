"""Peak memory of segmenting one huge 2D image with the bundled nuclei model.

    python benchmarks/large_image_memory.py [--size 20000] [--device cpu]

Builds a ``size`` × ``size`` uint16 image by tiling the bundled DSB2018 nuclei sample (scaled
to 16 bit, with a little noise so no two copies are identical), segments it into instance
labels with ``napari_unet.segment`` and the engine's defaults, and prints the wall time, the
tile plan, the number of objects, the input and output sizes, and the process's peak
resident memory against the target *input + output + 2 GiB* (peak GPU memory too on CUDA,
which must not depend on the image size).
"""

from __future__ import annotations

import argparse
import platform
import resource
import time

import numpy as np


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=20000)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    import torch

    from napari_unet.core.image.io import read_image
    from napari_unet.core.image.samples import sample_path
    from napari_unet.core.model.bundled import load_default_model
    from napari_unet.core.options import resolve_device
    from napari_unet.core.progress import Progress, drain
    from napari_unet.core.segment import iter_segment

    dev = resolve_device(args.device)
    model = load_default_model()
    sample = np.asarray(read_image(sample_path("nuclei")).data, dtype=np.uint16)
    rng = np.random.default_rng(0)
    image = np.empty((args.size, args.size), dtype=np.uint16)
    h, w = sample.shape
    for y in range(0, args.size, h):
        for x in range(0, args.size, w):
            block = image[y : y + h, x : x + w]
            noise = rng.integers(0, 512, block.shape, dtype=np.uint16)
            block[...] = sample[: block.shape[0], : block.shape[1]] * 256 + noise
    base = peak_rss_gib()
    plan: list[str] = []

    def on_progress(event: Progress) -> None:
        if event.stage == "tiles" and event.step == 0:
            plan.append(event.message)

    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    start = time.perf_counter()
    labels = drain(iter_segment(image, model, axes="YX", device=dev), on_progress)
    seconds = time.perf_counter() - start
    peak = peak_rss_gib()
    in_gib = image.nbytes / 2**30
    out_gib = labels.nbytes / 2**30
    target = in_gib + out_gib + 2
    print(
        f"device {dev} ({torch.cuda.get_device_name(dev) if dev.type == 'cuda' else platform.machine()}), "
        f"torch {torch.__version__}, threads {torch.get_num_threads()}"
    )
    print(f"image {args.size}x{args.size} uint16 ({in_gib:.2f} GiB); plan: {plan[-1] if plan else '?'}")
    print(
        f"{int(labels.max())} objects, labels {labels.dtype} ({out_gib:.2f} GiB); {seconds:.0f} s "
        f"({image.size / 1e6 / seconds:.2f} Mpx/s)"
    )
    print(
        f"peak host memory {peak:.2f} GiB (before segmenting: {base:.2f} GiB, which includes the input); "
        f"target input + output + 2 GiB = {target:.2f} GiB -> {'met' if peak <= target else 'NOT met'}"
    )
    if dev.type == "cuda":
        print(f"peak GPU memory {torch.cuda.max_memory_allocated(dev) / 2**30:.2f} GiB")


if __name__ == "__main__":
    main()
