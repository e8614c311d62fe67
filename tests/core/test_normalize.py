"""Global per-channel percentile normalisation."""

import numpy as np
import pytest

from napari_unet.core.image.normalize import apply_range, percentile_range, strided_sample


def test_percentiles_per_channel():
    img = np.stack([np.arange(1000.0), np.arange(1000.0) * 10]).reshape(2, 10, 100)
    lo, hi = percentile_range(img, 0, 100)
    assert lo.tolist() == [0, 0] and hi.tolist() == [999, 9990]
    out = apply_range(img, lo, hi)
    assert out.dtype == np.float32
    assert out[:, 0, 0].tolist() == [0, 0] and np.allclose(out[:, -1, -1], 1)


def test_flat_channel_does_not_divide_by_zero():
    lo, hi = percentile_range(np.full((1, 5, 5), 7.0))
    assert hi[0] == lo[0] + 1
    assert np.all(apply_range(np.full((1, 5, 5), 7.0), lo, hi) == 0)


def test_bad_percentiles():
    with pytest.raises(ValueError, match="low=50, high=10"):
        percentile_range(np.zeros((1, 4)), 50, 10)


def test_strided_sample_covers_every_plane_and_is_bounded():
    img = np.zeros((40, 3, 300, 300), np.uint16)
    img[:, :, ::7, ::7] = np.arange(40)[:, None, None, None]
    sample = strided_sample(img, max_samples=10_000, keep=(1,))
    assert sample.shape[1] == 3
    assert sample.size / 3 <= 10_000
    small = strided_sample(np.ones((3, 4)), max_samples=100)
    assert small.shape == (3, 4)


def test_sample_from_memmap_reads_only_the_sample(tmp_path):
    path = tmp_path / "big.raw"
    mm = np.memmap(path, dtype=np.uint16, mode="w+", shape=(4, 1000, 1000))
    mm[:] = 5
    mm.flush()
    ro = np.memmap(path, dtype=np.uint16, mode="r", shape=(4, 1000, 1000))
    s = strided_sample(ro, max_samples=50_000)
    assert s.size <= 50_000 and (s == 5).all()
