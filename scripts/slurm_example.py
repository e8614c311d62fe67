"""Run docs/big-data.md's SLURM example for real and check its result.

    python scripts/slurm_example.py [--queue cpu] [--jobs 2] [--size 4096] [--work /scratch/me/napari-unet-slurm]

Needs a SLURM cluster reachable with ``sbatch`` (a one-node test cluster is enough) and
``pip install dask-jobqueue``. Steps, each printed with its time:

1. an OME-Zarr image (``--size`` square, uint16, chunks of ``--block``) is written in ``--work``,
   tiled from the bundled real DSB2018 image;
2. ``SLURMCluster`` starts ``--jobs`` SLURM jobs, one dask worker each, as in the docs (the GPU lines
   replaced by ``--queue``/``--gres`` options);
3. ``napari_unet.segment_blocks(..., into=image, client=client)`` writes ``labels/<name>``;
4. the shell form: ``napari-unet segment IMAGE --into-input --labels-name cli --scheduler tcp://...``
   on the same cluster;
5. a walltime kill: the CLI run is started again under a new name, all SLURM jobs are cancelled
   (``scancel``) once some blocks are recorded, new jobs are started, and ``--resume`` finishes it;
6. every result is compared with the in-memory ``segment`` of the same image (identical up to
   relabelling, or else the agreement as AP at IoU 0.5 / 0.9: with the default halo both tile the
   image, so a few pixels where nuclei touch may differ) and read back by ome-zarr-py's reader.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SAMPLE = HERE.parent / "src" / "napari_unet" / "data" / "nuclei_dsb2018.tif"


def make_image(path: Path, size: int, block: int) -> np.ndarray:
    import tifffile
    import zarr

    tile = tifffile.imread(SAMPLE).astype(np.uint16) * 257
    reps = (-(-size // tile.shape[0]), -(-size // tile.shape[1]))
    image = np.tile(tile, reps)[:size, :size].copy()
    root = zarr.open_group(str(path), mode="w")
    root.create_array("0", data=image, chunks=(block, block))
    axes = [{"name": "y", "type": "space"}, {"name": "x", "type": "space"}]
    datasets = [{"path": "0", "coordinateTransformations": [{"type": "scale", "scale": [1.0, 1.0]}]}]
    root.attrs["ome"] = {"version": "0.5", "multiscales": [{"axes": axes, "datasets": datasets}]}
    return image


def same_up_to_relabelling(a: np.ndarray, b: np.ndarray) -> bool:
    if a.shape != b.shape or not np.array_equal(a > 0, b > 0):
        return False
    pairs = np.unique(np.stack([a.ravel(), b.ravel()], 1), axis=0)
    return len(np.unique(pairs[:, 0])) == len(pairs) == len(np.unique(pairs[:, 1]))


def check(image_path: Path, name: str, expected: np.ndarray) -> str:
    import zarr
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Label, Reader

    from napari_unet.core.training.metrics import average_precision

    labels = np.asarray(zarr.open_array(str(image_path / "labels" / name / "0"), mode="r")[:])
    readable = any(node.load(Label) for node in Reader(parse_url(str(image_path / "labels" / name)))())
    if same_up_to_relabelling(labels, expected):
        agreement = "identical to in memory up to relabelling"
    else:
        ap = average_precision(expected, labels, (0.5, 0.9))
        agreement = f"against in memory AP50 {ap[0.5]:.4f}, AP90 {ap[0.9]:.4f}"
    return f"{name}: {labels.max()} objects, {agreement}; a Label node for ome-zarr's reader: {readable}"


def start_cluster(args: argparse.Namespace):
    from dask_jobqueue import SLURMCluster
    from distributed import Client

    cluster = SLURMCluster(
        queue=args.queue,
        cores=args.cores,
        processes=1,
        memory=args.memory,
        walltime="00:30:00",
        job_extra_directives=[f"--gres={args.gres}"] if args.gres else [],
        log_directory=str(args.work / "logs"),
    )
    cluster.scale(jobs=args.jobs)
    client = Client(cluster)
    client.wait_for_workers(args.jobs, timeout=600)
    return cluster, client


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--queue", default="cpu")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--cores", type=int, default=1)
    parser.add_argument("--memory", default="4GB")
    parser.add_argument("--gres", default=None, help="e.g. gpu:1")
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--block", type=int, default=512)
    parser.add_argument("--work", type=Path, default=Path.cwd() / "slurm-example")
    args = parser.parse_args()
    import napari_unet

    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    image_path = args.work / "plate.ome.zarr"
    t0 = time.perf_counter()
    image = make_image(image_path, args.size, args.block)
    print(f"[{time.perf_counter() - t0:6.1f} s] image {image_path} {image.shape} {image.dtype}", flush=True)
    cluster, client = start_cluster(args)
    print(f"[{time.perf_counter() - t0:6.1f} s] {args.jobs} SLURM jobs up, dashboard {client.dashboard_link}")
    print(cluster.job_script(), flush=True)
    result = napari_unet.segment_blocks(str(image_path), "nuclei", into=str(image_path), client=client)
    print(f"[{time.perf_counter() - t0:6.1f} s] API: {result.n_objects} objects, devices {result.devices}", flush=True)
    expected = napari_unet.segment(image, "nuclei", axes="YX")
    print(f"[{time.perf_counter() - t0:6.1f} s] in memory: {expected.max()} objects", flush=True)
    cli = [sys.executable, "-m", "napari_unet.cli", "segment", str(image_path), "--into-input", "--no-progress",
           "--scheduler", cluster.scheduler_address]  # fmt: skip
    run = subprocess.run([*cli, "--labels-name", "cli"], capture_output=True, text=True)
    print(f"[{time.perf_counter() - t0:6.1f} s] CLI: {run.stdout.strip()} {run.stderr.strip()}", flush=True)
    # a walltime kill: every job cancelled while the CLI runs, new jobs, then --resume
    proc = subprocess.Popen([*cli, "--labels-name", "killed"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    records = image_path / "labels" / ".killed.partial.blocks"
    while proc.poll() is None and len(list(records.glob("**/done/*.npz"))) < 5:
        time.sleep(0.2)
    done = len(list(records.glob("**/done/*.npz")))
    subprocess.run(["scancel", "--user", os.environ.get("USER", "root"), "--name", "dask-worker"], check=False)
    proc.kill()
    proc.wait()
    print(f"[{time.perf_counter() - t0:6.1f} s] all SLURM jobs cancelled and the CLI killed after {done} blocks")
    cluster.scale(0)
    while client.scheduler_info()["workers"]:
        time.sleep(0.5)
    cluster.scale(jobs=args.jobs)
    client.wait_for_workers(args.jobs, timeout=600)
    run = subprocess.run([*cli, "--labels-name", "killed", "--resume"], capture_output=True, text=True)
    print(f"[{time.perf_counter() - t0:6.1f} s] resumed on new jobs: {run.stdout.strip()} {run.stderr.strip()}")
    for name in ("plate_labels", "cli", "killed"):
        print(check(image_path, name, expected), flush=True)
    client.close()
    cluster.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
