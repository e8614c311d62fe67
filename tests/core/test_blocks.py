"""Block-wise segmentation on dask.distributed equals the in-memory ``segment``/``predict``.

One ``LocalCluster`` of two worker processes (one thread each) serves the whole module
(the ``dask_client`` fixture of tests/core/conftest.py).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("dask")
pytest.importorskip("zarr")
pytest.importorskip("distributed")

from napari_unet.core.blocks.run import segment_blocks  # noqa: E402
from napari_unet.core.blocks.worker import worker_info  # noqa: E402
from napari_unet.core.inference.run import predict  # noqa: E402
from napari_unet.core.model.bundled import resolve_model_file  # noqa: E402
from napari_unet.core.model.file import load_model  # noqa: E402
from napari_unet.core.model.unet import UNet  # noqa: E402
from napari_unet.core.progress import drain  # noqa: E402
from napari_unet.core.segment import iter_segment  # noqa: E402

SRC = str(Path(__file__).resolve().parents[2] / "src")
SAMPLE = Path(SRC) / "napari_unet" / "data" / "nuclei_dsb2018.tif"


def random_net(n_classes: int = 3) -> UNet:
    torch.manual_seed(0)
    return UNet(1, n_classes, depth=2, base_features=4, norm=False).double().eval()


def smooth_image(shape: tuple[int, int], seed: int = 0) -> np.ndarray:
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    img = ndimage.gaussian_filter(rng.random(shape), 3)
    return (img * 60000 / img.max()).astype(np.uint16)


def nuclei(shape: tuple[int, int] = (256, 320)) -> np.ndarray:
    import tifffile

    return tifffile.imread(SAMPLE)[: shape[0], : shape[1]]


def same_up_to_relabelling(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two label images have the same objects (a one-to-one map of ids, 0 to 0)."""
    if a.shape != b.shape or not np.array_equal(a > 0, b > 0):
        return False
    pairs = np.unique(np.stack([a.ravel(), b.ravel()], 1), axis=0)
    return len(np.unique(pairs[:, 0])) == len(pairs) == len(np.unique(pairs[:, 1]))


def test_probabilities_and_semantic_labels_equal_the_in_memory_result(dask_client, tmp_path: Path) -> None:
    net = random_net()
    image = smooth_image((200, 232))  # not a multiple of the blocks
    halo = 48  # >= the network's receptive radius (29 px)
    whole = predict(image, net, axes="YX", device="cpu", tile_size=512)
    result = segment_blocks(
        image, net, axes="YX", out=tmp_path / "p.zarr", mode="probabilities", block=64, halo=halo, client=dask_client
    )
    probs = result.out[:]
    assert probs.shape == (3, 200, 232) and result.n_blocks == 16 == len(result.run)
    assert np.abs(probs - whole).max() < 1e-4
    expected = drain(iter_segment(image, net, axes="YX", mode="semantic", device="cpu", tile_size=512))
    sem = segment_blocks(
        image, net, axes="YX", out=tmp_path / "s.zarr", mode="semantic", block=(64, 96), halo=halo, client=dask_client
    )
    assert sem.out.dtype == np.uint8 and sem.out.chunks == (64, 96)
    np.testing.assert_array_equal(sem.out[:], expected)


def test_instances_equal_the_in_memory_result_and_border_nuclei_are_one_object(dask_client, tmp_path: Path) -> None:
    model = load_model(resolve_model_file(None)).double()
    image = nuclei()
    options = {"axes": "YX", "estimate_size": False, "halo": 144}  # 144 >= receptive radius 137: exact
    expected = drain(iter_segment(image, model, device="cpu", tile_size=1024, **options))
    events = []
    result = segment_blocks(
        image, model, out=tmp_path / "i.zarr", block=128, client=dask_client, progress=events.append, **options
    )
    labels = result.out[:]
    assert same_up_to_relabelling(labels, expected)
    assert result.n_objects == len(np.unique(expected)) - 1
    # nuclei cut by a block border (x = 128, 256; y = 128) are one object each
    cut = set()
    for a, b in [(labels[:, 127], labels[:, 128]), (labels[:, 255], labels[:, 256]), (labels[127], labels[128])]:
        cut |= set(np.unique(a[(a == b) & (a > 0)]).tolist())
    assert len(cut) >= 4
    stages = [e.stage for e in events]
    assert stages.count("blocks") == 1 + 6 and "stitch" in stages and stages[-1] == "done"
    assert any("dashboard" in e.message for e in events)
    assert set(result.devices.values()) == {"cpu"}


def test_the_model_is_loaded_once_per_worker(dask_client, tmp_path: Path) -> None:
    net = random_net(2)
    image = smooth_image((96, 128), seed=1)
    for k in range(2):
        segment_blocks(
            image, net, axes="YX", out=tmp_path / f"{k}.zarr", mode="semantic", block=32, halo=32, client=dask_client
        )
    info = dask_client.run(worker_info)
    assert len(info) == 2
    loads = [n for worker in info.values() for n in worker["loads"].values()]
    assert loads and max(loads) == 1  # every model, once per worker process, however many runs and blocks
    assert {d for worker in info.values() for d in worker["devices"].values()} == {"cpu"}
