"""Block-wise segmentation on dask.distributed against the in-memory ``segment``: time and peak memory.

A large uint16 zarr image is made by tiling the bundled real DSB2018 image (520 x 696, mirrored
copies, scaled to 16 bits); the bundled nuclei model segments it (instances, object size estimated
once) in memory and block-wise with 1 and 2 local worker processes (the machine's cores split
between them). Block-wise runs write a new OME-Zarr (``out=labels.zarr``: NGFF 0.5, nearest-neighbour
pyramid, metadata); "finish s" is the time after the last block (stitching across faces, the
relabelling pass, the pyramid and the metadata). Each configuration runs in its own process, so peak
RSS is its own; for block-wise runs the peak RSS of every worker and of the driver is shown.

    python benchmarks/big_data.py --size 8192 --block 1024
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SAMPLE = Path(__file__).resolve().parents[1] / "src" / "napari_unet" / "data" / "nuclei_dsb2018.tif"


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make_image(path: Path, size: int, chunk: int) -> None:
    import tifffile
    import zarr

    tile = tifffile.imread(SAMPLE).astype(np.uint16) * 257
    reps = (-(-size // tile.shape[0]), -(-size // tile.shape[1]))
    out = zarr.create_array(str(path), shape=(size, size), chunks=(chunk, chunk), dtype=np.uint16)
    row = np.concatenate([tile if j % 2 == 0 else tile[:, ::-1] for j in range(reps[1])], axis=1)
    flipped = row[::-1]
    for i in range(reps[0]):
        y0 = i * tile.shape[0]
        if y0 >= size:
            break
        band = (row if i % 2 == 0 else flipped)[: size - y0, :size]
        out[y0 : y0 + band.shape[0]] = band


def run_one(args: argparse.Namespace) -> dict:
    import zarr

    t0 = time.perf_counter()
    if args.one == "memory":
        import napari_unet

        image = zarr.open_array(str(args.image), mode="r")[:]
        labels = napari_unet.segment(image, "nuclei", axes="YX")
        return {
            "seconds": time.perf_counter() - t0,
            "finish": float("nan"),
            "levels": 1,
            "driver": peak_rss_mib(),
            "workers": [],
            "objects": int(labels.max()),
        }
    import distributed

    import napari_unet

    cores = os.cpu_count() or 1
    cluster = distributed.LocalCluster(
        n_workers=args.workers, threads_per_worker=max(1, cores // args.workers), processes=True, dashboard_address=":0"
    )
    client = distributed.Client(cluster, set_as_default=False)
    last_block = []

    def note(event) -> None:
        if event.stage == "blocks" and event.step == event.total:
            last_block.append(time.perf_counter())

    try:
        result = napari_unet.segment_blocks(
            str(args.image), "nuclei", axes="YX", out=args.out, client=client, block=args.block, progress=note
        )
        seconds = time.perf_counter() - t0
        ome = zarr.open_group(str(result.path), mode="r").attrs["ome"]
        levels = len(ome["multiscales"][0]["datasets"])
        workers = sorted(client.run(peak_rss_mib).values())
    finally:
        client.close()
        cluster.close()
    return {
        "seconds": seconds,
        "finish": seconds - (last_block[-1] - t0) if last_block else float("nan"),
        "levels": levels,
        "driver": peak_rss_mib(),
        "workers": workers,
        "objects": result.n_objects,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=8192, help="image edge (pixels)")
    parser.add_argument("--block", type=int, default=1024, help="block = output chunk edge (pixels)")
    parser.add_argument("--workers", default="1,2", help="worker counts to measure, comma-separated")
    parser.add_argument("--skip-memory", action="store_true", help="skip the in-memory run")
    parser.add_argument("--one", choices=("memory", "blocks"), help=argparse.SUPPRESS)
    parser.add_argument("--image", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        args.workers = int(args.workers)
        print(json.dumps(run_one(args)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        image = Path(tmp) / "image.zarr"
        make_image(image, args.size, args.block)
        mpx = args.size * args.size / 1e6
        print(
            f"image {args.size}x{args.size} uint16 ({mpx:.0f} Mpx, {2 * mpx:.0f} MB), zarr chunks {args.block}, "
            f"tiled from the bundled DSB2018 image; model nuclei (instances); {os.cpu_count()} CPU cores"
        )
        configs = ([] if args.skip_memory else [("in memory", "memory", 1)]) + [
            (f"blocks, {n} worker{'s' if n > 1 else ''}", "blocks", n) for n in map(int, args.workers.split(","))
        ]
        print(
            f"{'run':<18}{'seconds':>9}{'finish s':>9}{'levels':>7}{'Mpx/s':>8}{'objects':>9}{'driver MiB':>12}"
            "  worker peak RSS MiB"
        )
        for name, kind, n in configs:
            out = Path(tmp) / f"labels_{kind}_{n}.zarr"
            cmd = [sys.executable, __file__, "--one", kind, "--workers", str(n), "--image", str(image),
                   "--out", str(out), "--block", str(args.block)]  # fmt: skip
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode:
                print(f"{name:<18} failed: {proc.stderr.strip().splitlines()[-1:]}")
                continue
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            workers = ", ".join(f"{w:.0f}" for w in r["workers"]) or "-"
            print(
                f"{name:<18}{r['seconds']:9.1f}{r['finish']:9.1f}{r['levels']:7d}{mpx / r['seconds']:8.2f}"
                f"{r['objects']:9d}{r['driver']:12.0f}  {workers}"
            )


if __name__ == "__main__":
    main()
