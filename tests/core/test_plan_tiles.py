"""plan_tiles and smaller_plan: the tile plan from shapes and budgets alone (no torch)."""

from __future__ import annotations

import pytest

from napari_unet.core.inference.tiling import TilePlan, fits_one_tile, plan_tiles, smaller_plan


def plan(shape, **kw) -> TilePlan:
    options = dict(multiple=16, tile_size=None, halo=None, batch_size=None, auto_tile=256, auto_batch=4)
    options.update(kw)
    return plan_tiles(shape, **options)


def test_image_smaller_than_a_tile_is_one_tile_without_halo():
    p = plan((100, 70))
    assert len(p.grid) == 1 and p.n_tiles == 1
    assert p.tile_size == (112, 80)  # padded to the multiple, not the whole tile
    assert p.halo == (0, 0) and p.halo_pending
    assert p.batch == 1 and p.note is None


def test_more_than_one_tile_needs_the_measured_halo():
    assert not fits_one_tile((1000, 1000), 256, 16)
    with pytest.raises(ValueError, match="halo"):
        plan((1000, 1000))
    p = plan((1000, 1000), needed_halo=40)
    assert p.halo == (40, 40) and not p.halo_pending
    assert len(p.grid) > 1


def test_automatic_tiles_grow_to_hold_the_halo():
    p = plan((2000, 2000), auto_tile=64, needed_halo=40)
    assert p.tile == 2 * 40 + 4 * 16
    assert p.halo == (40, 40) and p.note is None


def test_explicit_tile_size_clips_the_halo_with_a_note():
    p = plan((1000, 1000), tile_size=96, needed_halo=60)
    assert p.tile == 96 and p.tile_size[0] <= 96
    assert p.halo == (40, 40)  # (96 - 16) // 2
    assert p.note is not None and "room for a halo of 40 px only" in p.note and "needs 60" in p.note


def test_explicit_tile_size_and_halo_are_kept():
    p = plan((1000, 1000), tile_size=(128, 192), halo=8)
    assert p.tile == (128, 192) and p.halo == (8, 8) and not p.halo_pending and p.note is None
    assert max(p.tile_size[0], 0) <= 128 and p.tile_size[1] <= 192


def test_batch_sizes_are_evened_out_over_all_planes():
    assert plan((1000, 1000), halo=0, tile_size=256, batch_size=8).n_tiles == 16
    assert plan((1000, 1000), halo=0, tile_size=256, batch_size=8).batch == 8
    assert plan((1000, 1000), halo=0, tile_size=256, batch_size=7).batch == 6  # 16 tiles: 6 + 5 + 5
    one = plan((100, 100), halo=0, batch_size=16, loops=9)
    assert one.n_tiles == 9 and one.batch == 9
    assert plan((100, 100), halo=0, batch_size=8, loops=9).batch == 5  # 5 + 4, not 8 + 1
    assert plan((100, 100), halo=0, auto_batch=3, loops=2).batch == 2


def test_plan_is_frozen():
    p = plan((100, 100), halo=0)
    with pytest.raises(AttributeError):
        p.batch = 3  # type: ignore[misc]


def test_smaller_plan_halves_the_tiles_one_per_batch():
    p = plan((1000, 1000), tile_size=512, halo=16, batch_size=4)
    q = smaller_plan(p, 16)
    assert p.tile_size == (368, 368)  # 1008 px in 3 even tiles of at most 512
    assert q.tile == (192, 192) and q.batch == 1 and q.halo == (16, 16)  # half the grid's tiles
    assert q.loops == p.loops


def test_smaller_plan_measures_a_pending_halo():
    p = plan((200, 200), auto_tile=256)
    assert p.halo_pending
    calls = []

    def measure() -> int:
        calls.append(1)
        return 40

    q = smaller_plan(p, 16, measure)
    assert calls == [1] and not q.halo_pending
    assert q.halo == (40, 40) and q.tile == (2 * 40 + 4 * 16,) * 2  # grown past half of 208


def test_smaller_plan_raises_the_clear_error_when_tiles_cannot_shrink():
    p = plan((1000, 1000), tile_size=64, halo=16)
    with pytest.raises(MemoryError, match="ran out of memory on a single tile"):
        smaller_plan(p, 16)
    tiny = plan((16, 16), multiple=16, auto_tile=16, halo=0)
    with pytest.raises(MemoryError, match="smaller halo"):
        smaller_plan(tiny, 16)
