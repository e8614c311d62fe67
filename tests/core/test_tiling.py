"""Tile grids: coverage, alignment, padding like the network, blending windows."""

import numpy as np
import pytest
import torch

from napari_unet.core.inference.tiling import TileGrid
from napari_unet.core.model.unet import pad_to_multiple


@pytest.mark.parametrize("shape, tile, halo", [((37, 41), 16, 4), ((129, 257), 64, 8), ((5, 300), 32, 0)])
def test_tiles_cover_and_align(shape, tile, halo):
    grid = TileGrid(shape, tile, halo, multiple=8)
    covered = np.zeros(shape, int)
    for t in grid:
        assert all(s % 8 == 0 for s in t.start)
        assert t.size == grid.tile_size
        img, _ = grid.valid(t)
        covered[img] += 1
    assert covered.min() >= 1
    assert (grid.weight_sum() > 0).all()


def test_regular_windows_sum_to_one():
    grid = TileGrid((256,), 64, 8, multiple=8)
    assert np.allclose(grid.weight_sum()[: 256 - 64], 1.0)


def test_window_is_zero_near_inner_edges_and_flat_at_borders():
    grid = TileGrid((200, 200), 64, 16, multiple=8)
    tiles = list(grid)
    first = grid.window(tiles[0])
    assert first[0, 0] == 1.0  # image corner: flat
    assert first[-1, 0] == 0.0 and first[0, -1] == 0.0  # inner edges: zero
    assert np.all(first[-8:, :] == 0)  # halo/2 from the inner edge


def test_tile_larger_than_image_becomes_one_tile():
    grid = TileGrid((37, 41), 512, 200, multiple=16)
    assert len(grid) == 1 and grid.tile_size == (48, 48)


def test_too_small_tile_for_halo_is_a_clear_error():
    with pytest.raises(ValueError, match="tile_size 64 is too small for halo 40"):
        TileGrid((500, 500), 64, 40, multiple=16)
    with pytest.raises(ValueError, match="halo"):
        TileGrid((500, 500), 64, -1, multiple=16)


@pytest.mark.parametrize("shape", [(37, 41), (3, 13), (50, 7)])
def test_read_pads_like_the_network(shape):
    img = np.random.default_rng(0).random(shape)
    grid = TileGrid(shape, 32, 4, multiple=16)
    padded = pad_to_multiple(torch.from_numpy(img)[None, None], 16)[0, 0].numpy()
    for t in grid:
        block = grid.read(img[None], t)[0]
        sl = tuple(slice(s, s + n) for s, n in zip(t.start, t.size))
        assert np.array_equal(block, padded[sl])
