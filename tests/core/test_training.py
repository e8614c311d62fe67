"""The training engine: data preparation, patches, augmentation, loss, the loop, evaluation.

Training runs use tiny networks (depth 2, 8 features) on synthetic images that always exist:
bright discs on a dim noisy background, with instance labels, made from a seeded generator.
One run with a checkpoint folder is shared by several tests (``trained`` fixture).
"""

from __future__ import annotations

import math
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import tifffile
import torch
from skimage.draw import disk

from napari_unet.core.inference.run import predict
from napari_unet.core.model.file import load_model, save_model
from napari_unet.core.model.spec import ModelSpec
from napari_unet.core.model.unet import UNet
from napari_unet.core.progress import drain
from napari_unet.core.segment import iter_segment
from napari_unet.core.training.augment import augment
from napari_unet.core.training.checkpoints import last_paths
from napari_unet.core.training.data import class_weights, pairs_from_folders, prepare, split
from napari_unet.core.training.evaluate import evaluate, iter_evaluate
from napari_unet.core.training.loop import TrainEvent, iter_train, train
from napari_unet.core.training.losses import ce_dice_loss
from napari_unet.core.training.patches import PatchSampler
from napari_unet.core.training.targets import INSTANCE_CLASSES

TINY: dict[str, Any] = dict(
    depth=2, base_features=8, patch_size=32, batch_size=4, device="cpu", lr=1e-2, warmup_steps=4, seed=0
)
AP_KEYS = [f"AP{p}" for p in range(50, 100, 5)] + ["mAP"]


# ---------------------------------------------------------------------------- synthetic data
def disc_image(
    size: tuple[int, int], rng: np.random.Generator, n_discs: int = 6, classes: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """A float32 image of bright discs on noise and its labels.

    ``classes == 1``: instance labels 1..n (discs may touch, never overlap).
    ``classes > 1``: semantic labels; a disc of class k has brightness k.
    """
    img = rng.normal(0.1, 0.05, size).astype(np.float32)
    lab = np.zeros(size, np.int32)
    for i in range(n_discs):
        r = int(rng.integers(5, 9))
        centre = (int(rng.integers(r, size[0] - r)), int(rng.integers(r, size[1] - r)))
        rr, cc = disk(centre, r, shape=size)
        free = lab[rr, cc] == 0
        rr, cc = rr[free], cc[free]
        value = i + 1 if classes == 1 else 1 + i % classes
        lab[rr, cc] = value
        img[rr, cc] += 1.0 if classes == 1 else float(value)
    return img, lab


def disc_pairs(n: int = 4, size: int = 64, seed: int = 0, classes: int = 1) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [disc_image((size, size), rng, classes=classes) for _ in range(n)]


def run(gen: Any) -> tuple[list[TrainEvent], UNet]:
    """All events of a training generator and its returned model."""
    events: list[TrainEvent] = []
    model = drain(gen, events.append)
    return events, model


def kinds(events: list[TrainEvent], kind: str) -> list[TrainEvent]:
    return [e for e in events if e.kind == kind]


def patch_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "napari-unet-patches" and t.is_alive()]


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread() -> Any:
    """Tiny networks gain nothing from intra-op threads; on a busy machine they cost several-fold."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module", autouse=True)
def quick_size_fit() -> Any:
    """Rescaled runs end by fitting the object-size estimate on 1200 crops (~10 s for each run
    here); 64 crops exercise the same code in well under a second."""
    from napari_unet.core.training import loop

    fit = loop.fit_size_model_on
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(
            loop, "fit_size_model_on", lambda net, samples, seed=0, crops=64: fit(net, samples, seed=seed, crops=crops)
        )
        yield


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """4 epochs x 10 steps of instance training with checkpoints and a preview every epoch."""
    out_dir = tmp_path_factory.mktemp("trained")
    output = out_dir / "model.safetensors"
    preview = disc_image((37, 41), np.random.default_rng(5))[0]
    events, model = run(
        iter_train(
            disc_pairs(),
            output=output,
            epochs=4,
            steps_per_epoch=10,
            preview_every=1,
            preview_image=preview,
            preview_axes="YX",
            description="discs",
            **TINY,
        )
    )
    return SimpleNamespace(events=events, model=model, output=output, dir=out_dir, preview=preview)


# ---------------------------------------------------------------------------- prepare()
def test_prepare_instances() -> None:
    pairs = disc_pairs(n=2, size=48)
    data = prepare(pairs, mode="instances")
    assert data.mode == "instances"
    assert data.class_names == INSTANCE_CLASSES and data.class_values == [0, 1, 2]
    assert data.channel_names == ["channel 0"] and data.n_channels == 1 and data.ndim == 2
    assert len(data.samples) == 2
    s = data.samples[0]
    assert s.image.shape == (1, 48, 48) and s.image.dtype == np.float32
    assert s.target.shape == (48, 48) and set(np.unique(s.target)) == {0, 1, 2}
    np.testing.assert_array_equal(s.labels, pairs[0][1])
    assert s.name == "image 0"
    # percentiles 1 / 99.8 map to 0 / 1
    assert np.percentile(s.image, 1) == pytest.approx(0, abs=1e-3)
    assert np.percentile(s.image, 99.8) == pytest.approx(1, abs=1e-3)
    # discs of radius 5..8: diameters 10..16
    assert 10 <= data.object_size <= 17
    # foreground coordinates point at target > 0
    assert (s.target[tuple(s.fg_coords.T)] > 0).all() and len(s.fg_coords) == (s.target > 0).sum()
    # background is the commonest class, so it weighs least
    assert data.class_weights.shape == (3,) and data.class_weights[0] == data.class_weights.min()


def test_prepare_labels_shape_mismatch_names_both_shapes() -> None:
    img = np.zeros((32, 40), np.float32)
    lab = np.ones((32, 41), np.int32)
    with pytest.raises(ValueError, match=r"labels of image 0 have shape \(32, 41\).*gives \(32, 40\)"):
        prepare([(img, lab)])


def test_prepare_empty_labels() -> None:
    img = np.random.default_rng(0).random((16, 16)).astype(np.float32)
    with pytest.raises(ValueError, match="empty"):
        prepare([(img, np.zeros((16, 16), np.uint16))])


def test_prepare_single_class_in_semantic_mode() -> None:
    img = np.random.default_rng(0).random((16, 16)).astype(np.float32)
    with pytest.raises(ValueError, match=r"single class \(\[1\]\)"):
        prepare([(img, np.ones((16, 16), np.uint8))], mode="semantic")


def test_prepare_bad_mode_and_no_pairs() -> None:
    img, lab = disc_pairs(n=1, size=32)[0]
    with pytest.raises(ValueError, match=r"mode must be one of.*'boundaries'"):
        prepare([(img, lab)], mode="boundaries")
    with pytest.raises(ValueError, match="no training pairs"):
        prepare([])


def test_prepare_non_integer_labels() -> None:
    img, lab = disc_pairs(n=1, size=32)[0]
    prepare([(img, lab.astype(np.float32))])  # whole-number floats are fine
    with pytest.raises(ValueError, match="must be integers"):
        prepare([(img, lab + 0.5)])


def test_prepare_zstack_for_a_2d_model_gives_planes_normalised_together() -> None:
    rng = np.random.default_rng(1)
    planes = [disc_image((32, 40), rng) for _ in range(3)]
    img = np.stack([p[0] * (k + 1) for k, p in enumerate(planes)])  # plane k is k+1 times brighter
    lab = np.stack([p[1] for p in planes])
    data = prepare([(img, lab)], axes="ZYX", ndim=2)
    assert len(data.samples) == 3
    assert [s.image.shape for s in data.samples] == [(1, 32, 40)] * 3
    assert [s.name for s in data.samples] == ["image 0 [Z=0]", "image 0 [Z=1]", "image 0 [Z=2]"]
    for k, s in enumerate(data.samples):
        np.testing.assert_array_equal(s.labels, lab[k])
    # one normalisation for the whole stack: the planes keep their brightness order
    means = [float(s.image.mean()) for s in data.samples]
    assert means[0] < means[1] < means[2]


def test_prepare_3d_volume() -> None:
    rng = np.random.default_rng(2)
    img = rng.normal(0, 0.1, (8, 24, 24)).astype(np.float32)
    lab = np.zeros((8, 24, 24), np.int32)
    lab[2:6, 4:12, 4:12] = 1
    img[lab > 0] += 1
    data = prepare([(img, lab)], axes="ZYX", ndim=3)
    assert len(data.samples) == 1
    assert data.samples[0].image.shape == (1, 8, 24, 24) and data.samples[0].target.shape == (8, 24, 24)


def test_prepare_selects_channels() -> None:
    img1, lab = disc_pairs(n=1, size=32)[0]
    noise = np.random.default_rng(3).random((32, 32)).astype(np.float32)
    img = np.stack([noise, img1])  # CYX, the discs are in channel 1
    data = prepare([(img, lab)], axes="CYX", channels=[1])
    assert data.n_channels == 1
    x = data.samples[0].image
    assert x.shape == (1, 32, 32)
    # the selected channel is the discs: bright exactly on the labels
    assert x[0][lab > 0].mean() > 0.8 and x[0][lab == 0].mean() < 0.2
    both = prepare([(img, lab)], axes="CYX")
    assert both.n_channels == 2 and both.channel_names == ["channel 0", "channel 1"]


def test_prepare_from_layers_and_files(tmp_path: Path) -> None:
    img, lab = disc_pairs(n=1, size=32)[0]
    layer = SimpleNamespace(data=img, name="cells", metadata={"axes": "YX"})
    labels_layer = SimpleNamespace(data=lab, name="cells labels", metadata={})
    data = prepare([(layer, labels_layer)])
    assert data.samples[0].name == "layer 'cells'"

    tifffile.imwrite(tmp_path / "a.tif", img)
    tifffile.imwrite(tmp_path / "a_mask.tif", lab.astype(np.uint16))
    from_files = prepare([(tmp_path / "a.tif", str(tmp_path / "a_mask.tif"))])
    assert from_files.samples[0].name == "a.tif"
    np.testing.assert_allclose(from_files.samples[0].image, data.samples[0].image)

    with pytest.raises(TypeError, match="image 0 must be an array, a napari layer or a file path"):
        prepare([(42, lab)])


def test_prepare_channel_names_from_a_layer() -> None:
    img, lab = disc_pairs(n=1, size=32)[0]
    noise = np.random.default_rng(3).random((32, 32)).astype(np.float32)
    layer = SimpleNamespace(
        data=np.stack([noise, img]), name="cells", metadata={"axes": "CYX", "channel_names": ["DAPI", "GFP"]}
    )
    assert prepare([(layer, lab)]).channel_names == ["DAPI", "GFP"]
    by_name = prepare([(layer, lab)], channels=["GFP"])
    assert by_name.channel_names == ["GFP"]
    np.testing.assert_array_equal(by_name.samples[0].image, prepare([(layer, lab)], channels=[1]).samples[0].image)


def test_class_weights() -> None:
    w = class_weights(np.array([90.0, 9.0, 1.0, 0.0]))
    assert w[3] == 0  # absent class
    assert w[0] < w[1] < w[2]
    assert w[:3].mean() == pytest.approx(1.0)
    assert w[2] / w[0] == pytest.approx(math.sqrt(90), rel=1e-5)  # inverse square-root frequency


# ---------------------------------------------------------------------------- folders
def test_pairs_from_folders(tmp_path: Path) -> None:
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    tiny = np.zeros((4, 4), np.uint8)
    for name in ("a.tif", "b.tif", "c.ome.tif"):
        tifffile.imwrite(images / name, tiny)
    for name in ("a_mask.tif", "b.tif", "c_labels.tiff", "unrelated.tif"):
        tifffile.imwrite(masks / name, tiny)
    (images / "notes.txt").write_text("not an image")
    pairs = pairs_from_folders(images, masks)
    assert [(p.name, m.name) for p, m in pairs] == [
        ("a.tif", "a_mask.tif"),
        ("b.tif", "b.tif"),
        ("c.ome.tif", "c_labels.tiff"),
    ]


def test_pairs_from_folders_errors(tmp_path: Path) -> None:
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    with pytest.raises(ValueError, match="no .tif/.tiff images"):
        pairs_from_folders(images, masks)
    with pytest.raises(ValueError, match="masks folder .*nowhere.* does not exist"):
        pairs_from_folders(images, tmp_path / "nowhere")
    tiny = np.zeros((4, 4), np.uint8)
    for name in ("a.tif", "lonely.tif"):
        tifffile.imwrite(images / name, tiny)
    tifffile.imwrite(masks / "a_mask.tif", tiny)
    with pytest.raises(ValueError, match=r"1 image\(s\) .* have no mask .*\['lonely.tif'\]"):
        pairs_from_folders(images, masks)


# ---------------------------------------------------------------------------- split
def test_split_is_deterministic_and_keeps_one_of_each() -> None:
    data = prepare(disc_pairs(n=5, size=32))
    names = lambda ss: [s.name for s in ss]  # noqa: E731
    train_a, val_a = split(data.samples, 0.15, seed=3)
    train_b, val_b = split(data.samples, 0.15, seed=3)
    assert names(train_a) == names(train_b) and names(val_a) == names(val_b)
    assert len(val_a) == 1 and len(train_a) == 4  # round(0.75) = 1
    assert sorted(names(train_a) + names(val_a)) == sorted(names(data.samples))
    assert {tuple(names(split(data.samples, 0.4, seed=s)[1])) for s in range(10)} != {tuple(names(val_a))}
    # never all in one set
    tr, va = split(data.samples[:2], 0.9, seed=0)
    assert len(tr) == 1 and len(va) == 1
    tr, va = split(data.samples[:2], 0.01, seed=0)
    assert len(tr) == 1 and len(va) == 1
    tr, va = split(data.samples, 0.0, seed=0)
    assert len(tr) == 5 and va == []
    with pytest.raises(ValueError, match=r"val_fraction must be in \[0, 1\), got 1"):
        split(data.samples, 1.0, seed=0)


# ---------------------------------------------------------------------------- patches
def test_patch_sampler_shapes_and_padding() -> None:
    rng = np.random.default_rng(0)
    big = prepare([disc_image((40, 50), rng)]).samples
    small = prepare([disc_image((20, 25), rng, n_discs=2)]).samples
    sampler = PatchSampler(big + small, patch_size=32)
    for _ in range(5):
        x, y = sampler.batch(6, rng)
        assert x.shape == (6, 1, 32, 32) and x.dtype == np.float32
        assert y.shape == (6, 32, 32) and y.dtype == np.uint8
    # the small image is mirror-padded to the patch size
    assert sampler.samples[1].target.shape == (32, 32)
    only_small = PatchSampler(small, patch_size=32)
    x, y = only_small.batch(2, rng)
    assert x.shape == (2, 1, 32, 32)
    np.testing.assert_array_equal(y[0][:20, :25], small[0].target)
    with pytest.raises(ValueError, match="no training samples"):
        PatchSampler([], 32)


def test_patch_sampler_foreground_bias() -> None:
    img = np.random.default_rng(0).normal(0, 0.1, (200, 200)).astype(np.float32)
    lab = np.zeros((200, 200), np.int32)
    lab[disk((160, 30), 4)] = 1  # one small object in a large image
    img[lab > 0] += 1
    samples = prepare([(img, lab)]).samples
    rng = np.random.default_rng(1)
    _, y = PatchSampler(samples, 32, fg_fraction=1.0).batch(40, rng)
    assert all(patch.any() for patch in y)
    _, y = PatchSampler(samples, 32, fg_fraction=0.0).batch(40, rng)
    assert sum(patch.any() for patch in y) < 20  # uniform patches mostly miss it


def test_3d_patches() -> None:
    rng = np.random.default_rng(0)
    img = rng.normal(0, 0.1, (12, 40, 40)).astype(np.float32)
    lab = np.zeros((12, 40, 40), np.int32)
    lab[3:9, 10:20, 10:20] = 1
    data = prepare([(img + (lab > 0), lab)], axes="ZYX", ndim=3)
    x, y = PatchSampler(data.samples, 16).batch(3, rng)
    assert x.shape == (3, 1, 16, 16, 16) and y.shape == (3, 16, 16, 16)


# ---------------------------------------------------------------------------- augmentation
def label_batch(shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    """int64 class maps with structure (blocks of classes 0..3), so flips are visible."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.randint(0, 4, (shape[0], *[max(1, s // 4) for s in shape[1:]]), generator=g)
    for axis in range(1, len(shape)):
        coarse = coarse.repeat_interleave(4, dim=axis)
    return coarse[(slice(None), *[slice(0, s) for s in shape[1:]])].contiguous()


@pytest.mark.parametrize("shape", [(8, 32, 32), (8, 24, 40), (4, 8, 16, 16)])
def test_augment_keeps_image_and_labels_aligned(shape: tuple[int, ...]) -> None:
    y = label_batch(shape)
    x = y.float().unsqueeze(1)
    xa, ya = augment(x, y, torch.Generator().manual_seed(7), intensity=False)
    assert xa.shape == x.shape and ya.shape == y.shape and ya.dtype == torch.int64
    assert torch.equal(xa[:, 0], ya.float())
    assert not torch.equal(ya, y)  # something was flipped or rotated
    # same seed, same result
    xb, yb = augment(x, y, torch.Generator().manual_seed(7), intensity=False)
    assert torch.equal(xa, xb) and torch.equal(ya, yb)
    # each patch is its original up to flips/rotations: same class histogram
    for i in range(shape[0]):
        assert torch.equal(torch.bincount(ya[i].ravel(), minlength=4), torch.bincount(y[i].ravel(), minlength=4))


def test_augment_intensity_changes_only_the_image() -> None:
    y = label_batch((6, 32, 32))
    x = torch.rand(6, 2, 32, 32, generator=torch.Generator().manual_seed(0))
    xa, ya = augment(x, y, torch.Generator().manual_seed(1), flips=False, rotations=False)
    assert torch.equal(ya, y)
    assert xa.shape == x.shape and not torch.allclose(xa, x)
    # scale 0.75..1.25 and shift ±0.1 of the original range
    assert xa.min() > -0.2 and xa.max() < 1.5


def test_augment_elastic_keeps_label_values() -> None:
    y = torch.zeros(4, 48, 48, dtype=torch.int64)
    y[:, 10:30, 12:34] = 3
    y[:, 32:44, 5:20] = 7
    x = y.float().unsqueeze(1)
    xa, ya = augment(
        x,
        y,
        torch.Generator().manual_seed(2),
        flips=False,
        rotations=False,
        intensity=False,
        elastic=True,
        elastic_strength=6.0,
    )
    assert xa.shape == x.shape and ya.shape == y.shape and ya.dtype == torch.int64
    assert set(ya.unique().tolist()) <= {0, 3, 7}
    assert not torch.equal(ya, y)  # the shapes moved
    # the image moved with the labels: it is near its label value almost everywhere
    assert ((xa[:, 0] - ya.float()).abs() < 0.5).float().mean() > 0.9
    y3 = torch.zeros(2, 16, 16, 16, dtype=torch.int64)
    y3[:, 4:12, 4:12, 4:12] = 2
    xa3, ya3 = augment(y3.float().unsqueeze(1), y3, torch.Generator().manual_seed(0), elastic=True)
    assert xa3.shape == (2, 1, 16, 16, 16) and set(ya3.unique().tolist()) <= {0, 2}


# ---------------------------------------------------------------------------- loss
def test_ce_dice_loss_prefers_the_right_answer_and_has_gradients() -> None:
    target = label_batch((2, 16, 16)) % 3
    right = torch.nn.functional.one_hot(target, 3).movedim(-1, 1).float() * 10
    wrong = torch.nn.functional.one_hot((target + 1) % 3, 3).movedim(-1, 1).float() * 10
    weights = torch.tensor([0.5, 1.0, 1.5])
    for w in (None, weights):
        good = ce_dice_loss(right, target, w)
        bad = ce_dice_loss(wrong, target, w)
        assert good < 0.01 < 1.0 < bad
    assert ce_dice_loss(wrong, target, dice_weight=0) < ce_dice_loss(wrong, target, dice_weight=1)

    logits = torch.zeros(2, 3, 16, 16, requires_grad=True)
    loss = ce_dice_loss(logits, target, weights)
    loss.backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0
    # descending the gradient lowers the loss
    with torch.no_grad():
        stepped = logits - 50 * logits.grad
    assert ce_dice_loss(stepped, target, weights) < loss


# ---------------------------------------------------------------------------- the loop
def test_events_in_order(trained: SimpleNamespace) -> None:
    ev = trained.events
    assert ev[0].kind == "start" and ev[-1].kind == "done"
    steps = kinds(ev, "step")
    assert [e.step for e in steps] == list(range(1, 41))
    assert all(e.total_steps == 40 and e.epochs == 4 for e in steps)
    assert [e.epoch for e in kinds(ev, "epoch")] == [1, 2, 3, 4]
    assert [e.kind for e in ev[1:12]] == ["step"] * 10 + ["epoch"]
    for e in kinds(ev, "epoch"):
        assert e.val_loss is not None and e.val_loss > 0
        assert set(AP_KEYS) | {"steps_per_s", "data_wait_share"} <= set(e.metrics)
        assert 0 <= e.metrics["AP50"] <= 1
        assert e.message.startswith(f"epoch {e.epoch}/4, loss ")
    assert ev[-1].checkpoint == trained.output


def test_loss_goes_down(trained: SimpleNamespace) -> None:
    epoch_losses = [e.loss for e in kinds(trained.events, "epoch")]
    assert epoch_losses[-1] < 0.75 * epoch_losses[0]


def test_learning_rate_warms_up_then_decays(trained: SimpleNamespace) -> None:
    lrs = [e.lr for e in kinds(trained.events, "step")]
    lr = TINY["lr"]
    assert lrs[0] == pytest.approx(lr / 2)  # step 1 of a 4-step warm-up (40 steps // 10)
    assert max(lrs) == pytest.approx(lr)
    assert lrs[-1] == pytest.approx(0.01 * lr)  # cosine to 1 %
    peak = lrs.index(max(lrs))
    assert all(a >= b for a, b in zip(lrs[peak:], lrs[peak + 1 :]))


def test_checkpoint_files(trained: SimpleNamespace) -> None:
    last, state = last_paths(trained.output)
    assert last == trained.dir / "model.last.safetensors"
    assert state == trained.dir / "model.last.state.safetensors"
    assert sorted(p.name for p in trained.dir.iterdir()) == sorted(
        ["model.safetensors", "model.last.safetensors", "model.last.state.safetensors"]
    )
    assert load_model(last).spec.training["epochs_done"] == 4
    improved = [e for e in kinds(trained.events, "epoch") if e.improved]
    assert improved[0].epoch == 1  # the first epoch is always the best so far
    for e in kinds(trained.events, "epoch"):
        assert e.checkpoint == (trained.output if e.improved else last)
    best = improved[-1]
    assert load_model(trained.output).spec.training["epochs_done"] == best.epoch


def test_best_model_reloads_and_predicts_the_same(trained: SimpleNamespace) -> None:
    reloaded = load_model(trained.output)
    image = disc_image((45, 52), np.random.default_rng(9))[0]
    a = predict(image, trained.model, axes="YX", device="cpu")
    b = predict(image, reloaded, axes="YX", device="cpu")
    assert a.shape == (3, 45, 52)
    np.testing.assert_allclose(a, b, atol=1e-5)
    assert not trained.model.training


def test_model_file_spec_and_training_record(trained: SimpleNamespace) -> None:
    spec = load_model(trained.output).spec
    assert spec.target == "instances" and spec.boundary_class == 2
    assert spec.class_names == ["background", "interior", "boundary"]
    assert spec.channel_names == ["channel 0"] and spec.axes == "YX"
    assert spec.percentiles == (1.0, 99.8)
    assert 10 <= spec.object_size <= 17
    assert spec.description == "discs"
    rec = spec.training
    assert rec["mode"] == "instances" and rec["seed"] == 0 and rec["steps_per_epoch"] == 10
    assert rec["patch_size"] == 32 and rec["batch_size"] == 4
    assert len(rec["train_images"]) == 3 and len(rec["val_images"]) == 1
    assert rec["software"].startswith("napari-unet ")
    history = rec["history"]
    assert [h["epoch"] for h in history] == list(range(1, rec["epochs_done"] + 1))
    assert [h["step"] for h in history] == [10 * h["epoch"] for h in history]
    assert all({"loss", "val_loss", "AP50", "mAP"} <= set(h) for h in history)
    assert "best_AP50" in rec
    # the defaults of a new instance model: a distance head, images zoomed to their median object size
    from napari_unet.core.training.targets import DISTANCE_POSTPROCESS

    assert rec["heads"] == ["distance"] and spec.postprocess == DISTANCE_POSTPROCESS
    assert rec["rescaled"] is True and rec["scale_jitter"] == 1.25 and rec["noise"] is True
    assert rec["precision"] in ("float32", "torch.bfloat16")


def test_preview_events(trained: SimpleNamespace) -> None:
    previews = kinds(trained.events, "preview")
    assert [e.epoch for e in previews] == [1, 2, 3, 4]
    for e in previews:
        assert e.preview.shape == trained.preview.shape == (37, 41)
        assert np.issubdtype(e.preview.dtype, np.integer)
    # each preview follows its epoch event
    idx = [i for i, e in enumerate(trained.events) if e.kind == "preview"]
    assert all(trained.events[i - 1].kind == "epoch" for i in idx)
    assert previews[-1].preview.max() >= 1  # after 40 steps, it finds discs


def test_resume_continues_epochs_and_steps(tmp_path: Path) -> None:
    output = tmp_path / "run.safetensors"
    opts = dict(TINY, steps_per_epoch=5, output=output)
    first, _ = run(iter_train(disc_pairs(), epochs=2, **opts))
    assert first[-1].step == 10
    resumed, model = run(iter_train(disc_pairs(), epochs=3, resume=True, **opts))
    assert resumed[0].kind == "start"
    assert (resumed[1].kind, resumed[1].epoch, resumed[1].step) == ("step", 3, 11)
    assert [e.epoch for e in kinds(resumed, "epoch")] == [3]
    assert resumed[-1].kind == "done" and resumed[-1].step == 15
    rec = load_model(last_paths(output)[0]).spec.training
    assert rec["epochs_done"] == 3 and [h["epoch"] for h in rec["history"]] == [1, 2, 3]
    # nothing left to do
    again, _ = run(iter_train(disc_pairs(), epochs=3, resume=True, **opts))
    assert [e.kind for e in again] == ["start", "done"]
    assert "already finished" in again[-1].message


def test_resume_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="resume=True needs output="):
        train(disc_pairs(), resume=True, **TINY)
    with pytest.raises(ValueError, match="nothing to resume: x.last.safetensors"):
        train(disc_pairs(), resume=True, output=tmp_path / "x.safetensors", **TINY)


def test_cancel_keeps_epoch_one_and_resume_matches_an_uninterrupted_run(tmp_path: Path) -> None:
    output = tmp_path / "m.safetensors"
    opts = dict(TINY, steps_per_epoch=6, epochs=3)
    gen = iter_train(disc_pairs(), output=output, **opts)
    seen: list[TrainEvent] = []
    for event in gen:
        seen.append(event)
        if event.kind == "step" and event.step == 9:  # the middle of epoch 2
            gen.close()
            break
    assert seen[-1].epoch == 2
    assert not patch_threads()  # the patch thread stopped
    last, state = last_paths(output)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([output.name, last.name, state.name])
    assert load_model(output).spec.training["epochs_done"] == 1
    assert load_model(last).spec.training["epochs_done"] == 1

    resumed, _ = run(iter_train(disc_pairs(), output=output, resume=True, **opts))
    assert (resumed[1].epoch, resumed[1].step) == (2, 7)
    # the resumed run continues exactly where the interrupted one was
    seen_loss = {e.step: e.loss for e in seen if e.kind == "step"}
    assert resumed[1].loss == pytest.approx(seen_loss[7], rel=1e-5)
    full, _ = run(iter_train(disc_pairs(), **opts))
    full_epochs = [e.loss for e in kinds(full, "epoch")]
    resumed_epochs = [e.loss for e in kinds(resumed, "epoch")]
    np.testing.assert_allclose(resumed_epochs, full_epochs[1:], rtol=1e-4)


def test_fine_tune_keeps_architecture_and_channel_names(trained: SimpleNamespace, tmp_path: Path) -> None:
    base = tmp_path / "dapi.safetensors"
    save_model(load_model(trained.output), base, channel_names=["DAPI"])
    opts = dict(TINY, depth=3, base_features=16, lr=1e-3)  # architecture options are ignored
    events, model = run(
        iter_train(
            disc_pairs(seed=4), model=base, epochs=1, steps_per_epoch=3, output=tmp_path / "ft.safetensors", **opts
        )
    )
    assert model.config["depth"] == 2 and model.config["base_features"] == 8
    assert model.spec.channel_names == ["DAPI"]
    assert load_model(tmp_path / "ft.safetensors").spec.channel_names == ["DAPI"]
    # it starts from the trained weights: the very first loss is already low
    scratch, _ = run(iter_train(disc_pairs(seed=4), epochs=1, steps_per_epoch=1, val_fraction=0, **opts))
    assert kinds(events, "step")[0].loss < 0.8 * kinds(scratch, "step")[0].loss


def test_fine_tune_mismatches(trained: SimpleNamespace) -> None:
    with pytest.raises(ValueError, match="trained for 'instances'.*mode 'semantic'"):
        train(disc_pairs(classes=2), model=trained.output, mode="semantic", **TINY)
    two_channels = [(np.stack([img, img]), lab) for img, lab in disc_pairs(n=2)]
    with pytest.raises(ValueError, match="model expects 1 channel"):
        train(two_channels, model=trained.output, axes="CYX", **TINY)


def test_semantic_three_classes_reports_miou(tmp_path: Path) -> None:
    output = tmp_path / "sem.safetensors"
    preview = disc_pairs(n=1, seed=3, classes=2)[0][0][:40, :44]
    events, model = run(
        iter_train(
            disc_pairs(classes=2),
            mode="semantic",
            epochs=2,
            steps_per_epoch=5,
            output=output,
            preview_every=2,
            preview_image=preview,
            preview_axes="YX",
            **TINY,
        )
    )
    for e in kinds(events, "epoch"):
        assert 0 <= e.metrics["mIoU"] <= 1 and "AP50" not in e.metrics
        assert "mIoU" in e.message
    # the preview of a semantic model shows classes (uint8 class indices), not objects
    (shown,) = [e.preview for e in kinds(events, "preview")]
    assert shown.shape == (40, 44) and shown.dtype == np.uint8 and shown.max() <= 2
    spec = load_model(output).spec
    assert spec.target == "semantic" and spec.boundary_class is None
    assert spec.class_names == ["background", "class 1", "class 2"] and model.n_classes == 3
    assert spec.object_size is None
    assert "best_mIoU" in spec.training
    # a 3-class model cannot learn 2-class labels
    with pytest.raises(ValueError, match="outputs 3 classes but the labels give 2"):
        train([(img, (lab > 0).astype(np.uint8)) for img, lab in disc_pairs()], model=output, mode="semantic", **TINY)


def test_same_seed_same_losses() -> None:
    opts = dict(TINY, epochs=1, steps_per_epoch=5, val_fraction=0)
    losses = [
        [e.loss for e in kinds(run(iter_train(disc_pairs(), **dict(opts, seed=s)))[0], "step")] for s in (0, 0, 1)
    ]
    assert losses[0] == losses[1]
    assert losses[0] != losses[2]


def test_early_stopping() -> None:
    spec = ModelSpec(channel_names=["c"], class_names=list(INSTANCE_CLASSES), target="instances", boundary_class=2)
    torch.manual_seed(0)
    frozen = UNet(1, 3, depth=2, base_features=4, norm=False, spec=spec)
    # lr = 0 and no BatchNorm: the validation score never changes, so it stops after `patience` epochs
    events, _ = run(
        iter_train(disc_pairs(), model=frozen, epochs=6, steps_per_epoch=2, patience=2, **dict(TINY, lr=0.0))
    )
    assert [e.improved for e in kinds(events, "epoch")] == [True, False, False]
    assert events[-1].message.startswith("stopped early")


def test_best_weights_returned_without_output(tmp_path: Path) -> None:
    # with a validation set the returned model is the best epoch's, with or without output=
    # (in this set-up the best epoch is not the last one, so the last weights would differ)
    opts = dict(TINY, epochs=4, steps_per_epoch=6)
    _, model = run(iter_train(disc_pairs(), **opts))
    events, with_file = run(iter_train(disc_pairs(), output=tmp_path / "b.safetensors", **opts))
    best_epoch = max(e.epoch for e in kinds(events, "epoch") if e.improved)
    assert load_model(tmp_path / "b.safetensors").spec.training["epochs_done"] == best_epoch
    for (k, a), b in zip(model.state_dict().items(), with_file.state_dict().values()):
        torch.testing.assert_close(a.cpu(), b.cpu(), msg=k)


def test_option_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="patch_size 34 must be a multiple of 4"):
        train(disc_pairs(), **dict(TINY, patch_size=34))
    with pytest.raises(ValueError, match="epochs must be an integer >= 1, got 0"):
        train(disc_pairs(), **dict(TINY, epochs=0))
    with pytest.raises(ValueError, match="steps_per_epoch must be an integer >= 1, got 0"):
        train(disc_pairs(), steps_per_epoch=0, **TINY)
    with pytest.raises(ValueError, match="is a folder"):
        train(disc_pairs(), output=tmp_path, **TINY)
    with pytest.raises(ValueError, match="output folder .* does not exist"):
        train(disc_pairs(), output=tmp_path / "no" / "m.safetensors", **TINY)


def test_3d_training_with_elastic_augmentation() -> None:
    rng = np.random.default_rng(0)
    volumes = []
    for _ in range(3):
        lab = np.zeros((16, 32, 32), np.int32)
        lab[4:12, 5:15, 5:15] = 1
        lab[3:10, 18:28, 16:30] = 2
        volumes.append((rng.normal(0, 0.1, lab.shape).astype(np.float32) + (lab > 0), lab))
    events, model = run(
        iter_train(
            volumes,
            ndim=3,
            axes="ZYX",
            epochs=2,
            steps_per_epoch=3,
            elastic=True,
            **dict(TINY, patch_size=16, batch_size=2),
        )
    )
    assert model.ndim == 3 and model.spec.axes == "ZYX"
    assert [e.epoch for e in kinds(events, "epoch")] == [1, 2]
    assert "AP50" in kinds(events, "epoch")[-1].metrics


def test_explicit_validation_pairs() -> None:
    events, _ = run(iter_train(disc_pairs(n=3), val_pairs=disc_pairs(n=1, seed=8), epochs=1, steps_per_epoch=2, **TINY))
    assert "AP50" in kinds(events, "epoch")[0].metrics


# ---------------------------------------------------------------------------- evaluation
def test_evaluate_against_own_predictions(trained: SimpleNamespace) -> None:
    images = [disc_image((48, 56), np.random.default_rng(s))[0] for s in (11, 12)]
    truths = [drain(iter_segment(img, trained.model, axes="YX", device="cpu")) for img in images]
    assert all(t.max() >= 1 for t in truths)
    progress: list[Any] = []
    result = evaluate(trained.model, list(zip(images, truths)), axes="YX", device="cpu", progress=progress.append)
    assert set(result) == set(AP_KEYS) | {"per_image", "mIoU", "n_images"}
    assert result["n_images"] == 2 and len(progress) == 2
    assert result["AP50"] == 1.0 and result["mAP"] == 1.0 and result["mIoU"] == 1.0
    assert result["per_image"]["AP50"] == 1.0
    # against the disc labels the model is imperfect but sensible
    gen = iter_evaluate(trained.model, disc_pairs(n=2, seed=13), axes="YX", device="cpu")
    truth_result = drain(gen)
    assert 0 <= truth_result["AP50"] <= 1 and 0 < truth_result["mIoU"] <= 1
    with pytest.raises(ValueError, match=r"ground truth of image 0 has shape \(48, 50\)"):
        evaluate(trained.model, [(images[0], truths[0][:, :50])], axes="YX", device="cpu")


def test_evaluate_semantic(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = UNet(1, 3, depth=2, base_features=4).eval()
    img = disc_pairs(n=1, classes=2)[0][0]
    truth = drain(iter_segment(img, net, axes="YX", device="cpu", mode="semantic"))
    result = evaluate(net, [(img, truth)], axes="YX", device="cpu")
    assert result == {"n_images": 1, "mIoU": 1.0}


# ---------------------------------------------------------------------------- real data
def test_real_dsb2018_images(data_dir: Path, tmp_path: Path) -> None:
    folder = data_dir / "dsb2018_fluo"
    pairs = pairs_from_folders(folder / "images", folder / "masks")[:4]
    assert len(pairs) == 4
    events, model = run(
        iter_train(
            pairs, epochs=2, steps_per_epoch=10, output=tmp_path / "dsb.safetensors", **dict(TINY, patch_size=64)
        )
    )
    epoch_losses = [e.loss for e in kinds(events, "epoch")]
    assert epoch_losses[1] < epoch_losses[0]
    assert load_model(tmp_path / "dsb.safetensors").spec.training["train_images"][0].endswith(".tif")
    result = evaluate(model, pairs, device="cpu")
    assert result["n_images"] == 4
    assert 0 <= result["AP50"] <= 1 and 0 <= result["per_image"]["AP50"] <= 1


# ---------------------------------------------------------------------------- distance head targets
def test_distance_targets_exact_values_on_touching_rectangles() -> None:
    from napari_unet.core.training.targets import distance_targets

    labels = np.zeros((9, 14), np.int32)
    labels[1:6, 1:6] = 3  # 5x5: rim, then a 3x3 core whose centre is 2 px from the rim
    labels[1:8, 6:13] = 7  # 7x7, touching the first: rim, then 5x5 core, centre 3 px from the rim
    expected = np.zeros((9, 14), np.float32)
    expected[2:5, 2:5] = 0.5
    expected[3, 3] = 1.0
    expected[2:7, 7:12] = 1 / 3
    expected[3:6, 8:11] = 2 / 3
    expected[4, 9] = 1.0
    got = distance_targets(labels)
    assert got.dtype == np.float32 and got.shape == labels.shape
    np.testing.assert_allclose(got, expected, atol=1e-6)
    # 0 on every rim (the boundary class) and outside: the touching objects are kept apart
    from napari_unet.core.training.targets import instance_targets

    assert (got[instance_targets(labels) != 1] == 0).all()
    assert got[:, 5].max() == 0 and got[:, 6].max() == 0  # the two rims where they touch


def test_distance_targets_3d_and_degenerate_inputs() -> None:
    from napari_unet.core.training.targets import distance_targets

    labels = np.zeros((7, 7, 7), np.uint16)
    labels[1:6, 1:6, 1:6] = 1
    got = distance_targets(labels)
    expected = np.zeros((7, 7, 7), np.float32)
    expected[2:5, 2:5, 2:5] = 0.5
    expected[3, 3, 3] = 1.0
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=1e-6)
    assert not distance_targets(np.zeros((5, 6), np.int32)).any()
    tiny = np.zeros((5, 6), np.int32)
    tiny[2, 2:4] = 1  # all rim: no interior, distance 0 everywhere
    assert not distance_targets(tiny).any()


# ---------------------------------------------------------------------------- zoomed patches with distances
def separated_discs(size: int = 64, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Discs of radius 5..7 on a 20-px grid: at least 6 px of background between any two."""
    rng = np.random.default_rng(seed)
    img = rng.normal(0.1, 0.05, (size, size)).astype(np.float32)
    lab = np.zeros((size, size), np.int32)
    for k, (cy, cx) in enumerate([(y, x) for y in range(10, size - 9, 20) for x in range(10, size - 9, 20)]):
        rr, cc = disk((cy, cx), int(rng.integers(5, 8)), shape=lab.shape)
        lab[rr, cc] = k + 1
        img[rr, cc] += 1.0
    return img, lab


def test_patch_sampler_with_distances_and_scale_jitter(monkeypatch: pytest.MonkeyPatch) -> None:
    from skimage.measure import label as connected

    from napari_unet.core.training import patches as data_module
    from napari_unet.core.training.targets import instance_targets

    regions: list[int] = []
    zoom_patch = data_module._zoom_patch

    def spy(image: np.ndarray, labels: np.ndarray, *args: Any) -> Any:
        regions.append(labels.shape[0])
        return zoom_patch(image, labels, *args)

    monkeypatch.setattr(data_module, "_zoom_patch", spy)

    samples = prepare([separated_discs(seed=s) for s in range(3)]).samples
    sampler = PatchSampler(samples, 32, distance=True, scale_jitter=1.4)
    assert sampler.margin == math.ceil(32 * 1.4)
    for _ in range(4):
        x, y, d = sampler.batch(6, np.random.default_rng(3))
        assert x.shape == (6, 1, 32, 32) and x.dtype == np.float32
        assert y.shape == (6, 32, 32) and y.dtype == np.uint8
        assert d.shape == (6, 32, 32) and d.dtype == np.float32
        assert (d[y == 0] == 0).all() and d.min() >= 0 and d.max() <= 1
        assert (d[y == 1] > 0).mean() > 0.9  # interiors carry distances
        for patch in y:
            # objects that do not touch: the targets are exactly those of their (zoomed) labels,
            # boundaries one pixel wide whatever the zoom
            np.testing.assert_array_equal(patch, instance_targets(connected(patch > 0, connectivity=1)))
    # patches are cut from regions of 32/1.4..32*1.4 pixels and zoomed to 32
    assert min(regions) < 32 < max(regions) and 23 <= min(regions) and max(regions) <= sampler.margin
    x, y, d = sampler.batch(40, np.random.default_rng(4))
    regions.clear()
    plain = PatchSampler(samples, 32, distance=True).batch(40, np.random.default_rng(4))
    assert len(plain) == 3 and not regions  # no jitter, no zoom
    # the same generator state gives the same patches
    again = PatchSampler(samples, 32, distance=True, scale_jitter=1.4).batch(40, np.random.default_rng(4))
    for a, b in zip((x, y, d), again):
        np.testing.assert_array_equal(a, b)


def test_patch_sampler_distance_needs_instance_samples_and_jitter_at_least_one() -> None:
    semantic = prepare(disc_pairs(n=1, size=32, classes=2), mode="semantic").samples
    with pytest.raises(ValueError, match="distance targets need instance samples"):
        PatchSampler(semantic, 32, distance=True)
    with pytest.raises(ValueError, match="scale_jitter must be >= 1, got 0.5"):
        PatchSampler(prepare(disc_pairs(n=1, size=32)).samples, 32, scale_jitter=0.5)
    # without distance the sampler still returns two arrays
    assert len(PatchSampler(semantic, 16).batch(2, np.random.default_rng(0))) == 2


# ---------------------------------------------------------------------------- rescaling to one object size
def test_prepare_rescales_instances_to_the_requested_object_size() -> None:
    from napari_unet.core.training.targets import distance_targets, instance_targets, object_diameter

    pairs = disc_pairs(n=3, size=64)
    own = [object_diameter(lab) for _, lab in pairs]
    data = prepare(pairs, object_size=20.0)
    assert data.object_size == 20.0
    for s, d, (img, _) in zip(data.samples, own, pairs):
        assert s.zoom == pytest.approx(20.0 / d)
        assert s.image.shape[1:] == s.target.shape == s.labels.shape == s.distance.shape
        assert s.target.shape == tuple(round(n * s.zoom) for n in img.shape)
        assert abs(object_diameter(s.labels) - 20.0) <= 2.0  # within 10 %
        np.testing.assert_array_equal(s.target, instance_targets(s.labels))  # targets of the zoomed labels
        np.testing.assert_array_equal(s.distance, distance_targets(s.labels))
    auto = prepare(pairs, object_size="auto")
    median = float(np.median(own))
    assert auto.object_size == pytest.approx(median)
    for s, d in zip(auto.samples, own):
        expected_zoom = median / d
        assert s.zoom == (1.0 if abs(expected_zoom - 1) < 0.02 else pytest.approx(expected_zoom))
        assert abs(object_diameter(s.labels) - median) <= 0.1 * median
    unchanged = prepare(pairs)
    assert all(s.zoom == 1.0 and s.target.shape == (64, 64) for s in unchanged.samples)
    assert unchanged.samples[0].distance is not None


@pytest.mark.parametrize("bad", [0, -3.0, float("nan"), float("inf"), "big", True])
def test_prepare_bad_object_size(bad: Any) -> None:
    with pytest.raises(ValueError, match="object_size must be a positive number of pixels"):
        prepare(disc_pairs(n=1, size=32), object_size=bad)


def test_prepare_negative_labels_are_refused() -> None:
    img, lab = disc_pairs(n=1, size=32)[0]
    lab = lab.copy()
    lab[0, 0] = -1
    with pytest.raises(ValueError, match="labels of image 0 hold negative values"):
        prepare([(img, lab)])
    with pytest.raises(ValueError, match="negative values"):
        prepare([(img, lab)], mode="semantic")


# ------------------------------------------------------------------------- distance head, rescaling, bf16 in iter_train
QUICK: dict[str, Any] = dict(TINY, epochs=1, steps_per_epoch=2, val_fraction=0)


def test_new_instance_models_get_a_distance_head_and_its_postprocess(tmp_path: Path) -> None:
    from napari_unet.core.training.targets import DISTANCE_POSTPROCESS

    output = tmp_path / "d.safetensors"
    events, model = run(iter_train(disc_pairs(n=2), object_size=None, output=output, **QUICK))
    assert model.heads == ["distance"] and model.head_channel("distance") == 3 and model.n_outputs == 4
    assert model.spec.postprocess == DISTANCE_POSTPROCESS
    saved = load_model(output)
    assert saved.heads == ["distance"] and saved.spec.postprocess == DISTANCE_POSTPROCESS
    rec = saved.spec.training
    assert rec["heads"] == ["distance"] and rec["rescaled"] is False and rec["scale_jitter"] == 1.0
    assert rec["noise"] is True and "precision" in rec
    assert all(math.isfinite(e.loss) for e in kinds(events, "step"))


def test_rescaled_training_records_the_object_size(tmp_path: Path) -> None:
    output = tmp_path / "r.safetensors"
    _, model = run(iter_train(disc_pairs(n=2), object_size=20.0, scale_jitter=1.3, output=output, **QUICK))
    assert model.spec.object_size == 20.0
    saved = load_model(output).spec
    assert saved.object_size == 20.0
    rec = saved.training
    assert rec["rescaled"] is True and rec["scale_jitter"] == 1.3


def test_no_distance_head_keeps_the_classes_only_recipe(tmp_path: Path) -> None:
    from napari_unet.core.model.file import read_model_info
    from napari_unet.core.training.targets import INSTANCE_POSTPROCESS

    output = tmp_path / "plain.safetensors"
    _, model = run(
        iter_train(disc_pairs(n=2), distance_head=False, object_size=None, noise=False, output=output, **QUICK)
    )
    assert model.heads == [] and model.n_outputs == 3
    assert model.spec.postprocess == INSTANCE_POSTPROCESS
    assert "heads" not in read_model_info(output)["architecture"]
    rec = load_model(output).spec.training
    assert rec["heads"] == [] and rec["noise"] is False
    # semantic models never get a head, nor are their images zoomed
    output = tmp_path / "semantic.safetensors"
    _, semantic = run(iter_train(disc_pairs(n=2, classes=2), mode="semantic", output=output, **QUICK))
    assert semantic.heads == [] and load_model(output).spec.training["rescaled"] is False


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"object_size": -3}, "object_size must be a positive number of pixels, 'auto' or None, got -3"),
        ({"object_size": "big"}, "object_size must be .* got 'big'"),
        ({"object_size": float("nan")}, "object_size must be"),
        ({"scale_jitter": 0.5}, r"scale_jitter must be a number in 1\.\.4, got 0.5"),
        ({"scale_jitter": 10}, r"scale_jitter must be a number in 1\.\.4, got 10"),
        ({"scale_jitter": "1.2"}, "scale_jitter must be a number"),
    ],
)
def test_object_size_and_scale_jitter_errors(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        train(disc_pairs(n=2), **dict(QUICK, **kwargs))


def test_training_precision_auto_is_float32_on_cpus_without_native_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    from napari_unet.core.inference import planning as inference

    cpu = torch.device("cpu")
    monkeypatch.setattr(inference, "cpu_has_native_bf16", lambda: False)
    assert inference.resolve_precision("auto", cpu) is None
    assert inference.resolve_precision("float32", cpu) is None
    assert inference.resolve_precision("bfloat16", cpu) is torch.bfloat16
    monkeypatch.setattr(inference, "cpu_has_native_bf16", lambda: True)
    assert inference.resolve_precision("auto", cpu) is torch.bfloat16
    assert inference.resolve_precision("float32", cpu) is None  # an explicit choice wins
    with pytest.raises(ValueError, match="precision must be one of"):
        inference.resolve_precision("half", cpu)


def _has_native_bf16() -> bool:
    from napari_unet.core.inference.planning import cpu_has_native_bf16

    return cpu_has_native_bf16()


@pytest.mark.skipif(not _has_native_bf16(), reason="this CPU has no native bfloat16 (AVX-512 BF16 / AMX)")
def test_auto_precision_trains_in_bfloat16_on_a_cpu_with_native_bf16(tmp_path: Path) -> None:
    output = tmp_path / "bf16.safetensors"
    events, model = run(iter_train(disc_pairs(n=2), precision="auto", object_size=None, output=output, **QUICK))
    assert load_model(output).spec.training["precision"] == "torch.bfloat16"
    assert all(math.isfinite(e.loss) for e in kinds(events, "step"))
    assert next(model.parameters()).dtype == torch.float32  # autocast: the weights stay float32
    output = tmp_path / "fp32.safetensors"
    run(iter_train(disc_pairs(n=2), precision="float32", object_size=None, output=output, **QUICK))
    assert load_model(output).spec.training["precision"] == "float32"
