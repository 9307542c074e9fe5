"""Integration: a real (tiny) bundle exported by training/ works in the engine unchanged."""

from __future__ import annotations

import pytest

from engine.indexer import IndexParams
from engine.service import Engine


def test_engine_with_training_smoke_bundle(request, shared, cache):
    pytest.importorskip("training.train", reason="training.train not available yet")
    bundle = request.getfixturevalue("smoke_bundle")
    eng = Engine(default_model=bundle, root=cache, threads=1)
    raster = shared / "rasters" / "cogeo.tif"
    res = eng.index(raster, IndexParams(tile=256))
    assert res.n_tiles == 16
    out = eng.search("snow on a mountain road", rasters=[raster], k=5)
    assert len(out["results"]) == 5
    d = eng.describe(raster=raster, x=res.n_tiles and 14_322_000, y=4_532_700, top=3)
    assert len(d["classes"]) == 3 and d["descriptions"]
