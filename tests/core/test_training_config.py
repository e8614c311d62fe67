"""``TrainConfig`` (the checked options of a training run) and the global state ``iter_train`` leaves."""

from __future__ import annotations

import copy
import random
from typing import Any

import numpy as np
import pytest
import torch

from napari_unet.core.model.spec import ModelSpec
from napari_unet.core.model.unet import UNet
from napari_unet.core.progress import drain
from napari_unet.core.training.config import TrainConfig
from napari_unet.core.training.loop import iter_train, train
from napari_unet.core.training.targets import INSTANCE_CLASSES

QUICK: dict[str, Any] = dict(
    depth=2,
    base_features=8,
    patch_size=32,
    batch_size=4,
    device="cpu",
    lr=1e-2,
    warmup_steps=4,
    seed=0,
    epochs=1,
    steps_per_epoch=2,
    val_fraction=0,
    object_size=None,
)


def pairs(n: int = 2) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(0)
    out = []
    for _ in range(n):
        lab = np.zeros((48, 48), np.int32)
        lab[5:15, 5:15], lab[25:40, 20:35] = 1, 2
        out.append(((lab > 0) + rng.normal(0, 0.1, lab.shape).astype(np.float32), lab))
    return out


def test_defaults_are_valid_and_normalised() -> None:
    cfg = TrainConfig()
    assert cfg.epochs == 50 and cfg.mode == "instances" and cfg.object_size == "auto"
    assert TrainConfig(lr=1).lr == 1.0


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("epochs", 0),
        ("epochs", 1.5),
        ("steps_per_epoch", -1),
        ("patch_size", "big"),
        ("batch_size", 0),
        ("lr", -1.0),
        ("lr", float("nan")),
        ("weight_decay", -1),
        ("patience", 0),
        ("val_fraction", 1.0),
        ("seed", -1),
        ("mode", "blobs"),
        ("depth", 99),
        ("base_features", 0),
        ("precision", "float8"),
        ("augmentation", "yes"),
        ("object_size", -3),
        ("object_size", "big"),
        ("scale_jitter", 0.5),
        ("scale_jitter", "1.2"),
    ],
)
def test_train_config_rejects_bad_values_by_name(name: str, value: Any) -> None:
    with pytest.raises((ValueError, TypeError), match=name):
        TrainConfig(**{name: value})


def test_train_config_replace_checks_again() -> None:
    cfg = TrainConfig(epochs=3)
    assert cfg.replace(epochs=4).epochs == 4 and cfg.epochs == 3
    with pytest.raises(ValueError, match="epochs"):
        cfg.replace(epochs=0)


def test_patch_size_default_follows_the_network() -> None:
    assert TrainConfig().patch_size == 256 and TrainConfig(ndim=3).patch_size == 64
    # fine-tuning a 3D model replaces ndim: a default patch follows it, a chosen one stays
    assert TrainConfig().replace(ndim=3).patch_size == 64
    assert TrainConfig(patch_size=32).replace(ndim=3).patch_size == 32
    assert TrainConfig(ndim=3).replace(epochs=2).patch_size == 64


def test_iter_train_takes_a_config_or_keywords_not_both() -> None:
    by_keywords: list[Any] = []
    by_config: list[Any] = []
    drain(iter_train(pairs(), **QUICK), by_keywords.append)
    drain(iter_train(pairs(), config=TrainConfig(**QUICK)), by_config.append)
    assert [e.loss for e in by_keywords if e.kind == "step"] == [e.loss for e in by_config if e.kind == "step"]
    with pytest.raises(TypeError, match="not both"):
        drain(iter_train(pairs(), config=TrainConfig(**QUICK), epochs=2))
    with pytest.raises(TypeError):
        drain(iter_train(pairs(), not_an_option=1))


@pytest.mark.parametrize("benchmark", [False, True])
def test_training_leaves_global_state_as_it_was(benchmark: bool) -> None:
    before_flag = torch.backends.cudnn.benchmark
    try:
        torch.backends.cudnn.benchmark = benchmark
        torch.manual_seed(1234)
        torch.rand(3)  # a state that is not just the seed
        np.random.seed(5)
        random.seed(6)
        torch_state, seed = torch.random.get_rng_state(), torch.initial_seed()
        np_state, py_state = np.random.get_state(), random.getstate()
        train(pairs(), **dict(QUICK, seed=7))
        assert torch.initial_seed() == seed == 1234
        assert torch.equal(torch.random.get_rng_state(), torch_state)
        assert np.array_equal(np.random.get_state()[1], np_state[1])
        assert random.getstate() == py_state
        assert torch.backends.cudnn.benchmark is benchmark
    finally:
        torch.backends.cudnn.benchmark = before_flag


def test_fine_tuning_leaves_the_callers_model_unchanged() -> None:
    spec = ModelSpec(
        channel_names=["c"],
        class_names=list(INSTANCE_CLASSES),
        target="instances",
        boundary_class=2,
        description="mine",
    )
    torch.manual_seed(0)
    net = UNet(1, 3, depth=2, base_features=8, spec=spec)
    spec_before = copy.deepcopy(net.spec)
    weights_before = {k: v.clone() for k, v in net.state_dict().items()}
    trained = train(pairs(), model=net, **dict(QUICK, description="fine-tuned"))
    assert trained is not net
    assert net.spec == spec_before and net.spec.description == "mine"
    assert trained.spec.description == "fine-tuned"
    for k, v in net.state_dict().items():
        torch.testing.assert_close(v, weights_before[k], msg=k)
    assert any(not torch.equal(a, b) for a, b in zip(trained.state_dict().values(), weights_before.values()))
