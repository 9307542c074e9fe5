"""Every real raster in ../shared/rasters indexes (tiny bundle) and answers a search."""

from __future__ import annotations

import pytest

from engine.indexer import IndexParams
from engine.shared_data import rasters_dir

NAMES = sorted(p.name for p in rasters_dir().glob("*.tif")) if rasters_dir().is_dir() else ["(missing)"]


@pytest.mark.parametrize("name", NAMES)
def test_shared_raster_indexes(shared, engine, name):
    path = shared / "rasters" / name
    res = engine.index(path, IndexParams(tile=256))
    assert res.n_windows >= 1 and res.n_tiles + res.n_skipped == res.n_windows
    if res.n_tiles == 0:  # shade.tif: 88 % nodata, every 256 px tile is over the default 50 % invalid share
        assert engine.search("a river", rasters=[path], k=3)["results"] == []
        res = engine.index(path, IndexParams(tile=256, max_invalid=0.95))
    assert res.n_tiles >= 1, f"{name}: every tile skipped"
    out = engine.search("a river crossing farmland", rasters=[path], k=3)
    r = out["results"][0]
    assert r["raster"] == str(path.resolve()) and r["geometry"]["type"] == "Polygon"
    if r["authid"]:
        w, s, e, n = r["bbox_lonlat"]
        assert -180 <= w <= e <= 180 and -90 <= s <= n <= 90
