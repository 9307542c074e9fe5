"""Pure grid: offsets, edge shift, small rasters, coverage (hypothesis)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.errors import BadInput
from engine.grid import Grid, GridParams, axis_offsets, window_corners


def test_axis_offsets_edge_shift():
    assert axis_offsets(1000, 256, 256) == [0, 256, 512, 744]
    assert axis_offsets(1024, 256, 256) == [0, 256, 512, 768]
    assert axis_offsets(100, 256, 256) == [0]
    assert axis_offsets(300, 256, 128) == [0, 44]


def test_small_raster_single_padded_window():
    g = Grid(100, 60, GridParams(256))
    assert len(g) == 1
    w = g.window(0)
    assert (w.x_off, w.y_off, w.width, w.height) == (0, 0, 100, 60)
    assert g.output_shape(w) == (60, 100)


def test_scale_changes_source_tile():
    g = Grid(2000, 1000, GridParams(256, scale=2.0))
    assert g.params.source_tile == 512
    assert g.output_shape(g.window(0)) == (256, 256)


@pytest.mark.parametrize("kw", [{"tile": 0}, {"tile": 10_000}, {"stride": 0}, {"scale": float("nan")}])
def test_bad_params(kw):
    with pytest.raises(BadInput):
        GridParams(**kw)


def test_corners_north_up():
    ring = window_corners((2.0, 0, 100.0, 0, -2.0, 50.0), 10, 5, 4, 3)
    assert ring[0] == (120.0, 40.0) and ring[2] == (128.0, 34.0)


@settings(max_examples=150, deadline=None)
@given(
    w=st.integers(1, 3000),
    h=st.integers(1, 3000),
    tile=st.integers(1, 600),
    frac=st.floats(0.1, 1.0),
    scale=st.sampled_from([0.5, 1.0, 1.5, 4.0]),
)
def test_grid_properties(w, h, tile, frac, scale):
    params = GridParams(tile, max(1, int(tile * frac)), scale)
    g = Grid(w, h, params)
    t = params.source_tile
    cov_x = np.zeros(w, bool)
    cov_y = np.zeros(h, bool)
    for i in range(g.n_cols):  # first row: x coverage
        win = g.window(i)
        assert 0 <= win.x_off and win.x_off + win.width <= w
        assert win.width == min(t, w)
        cov_x[win.x_off : win.x_off + win.width] = True
    for r in range(g.n_rows):
        win = g.window(r * g.n_cols)
        assert 0 <= win.y_off and win.y_off + win.height <= h
        cov_y[win.y_off : win.y_off + win.height] = True
    assert cov_x.all() and cov_y.all()
    last = g.window(len(g) - 1)
    assert last.x_off + last.width == w and last.y_off + last.height == h
    oh, ow = g.output_shape(last)
    assert 1 <= oh <= tile and 1 <= ow <= tile
    assert len(g) == g.n_cols * g.n_rows
    assert [x.index for x in g.windows(0, 3)] == list(range(min(3, len(g))))
