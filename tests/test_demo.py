"""`make demo` (scripts/demo.py): the default scene shows the product; any raster and bundle work; bad input: one line.

"Different places" is measured on the demo's own GeoJSON output: at least three queries whose top-5 tile sets are
pairwise disjoint and whose mean tile centres are pairwise at least ``MIN_APART`` tile widths apart (about 1.8 km
on the default scene, a sixth of its length). A model that returns the same tiles for every query fails, and so
does one that scatters them at random most of the time (about 7 % of random 5-query draws on the 5 x 16 grid
pass).
"""

from __future__ import annotations

import itertools
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from tests.bundles import build_synthetic_bundle
from tests.conftest import PROJECT_ROOT

DEMO = PROJECT_ROOT / "scripts" / "demo.py"
MIN_APART = 3.0  # tile widths between the centres of two queries' top-5 tiles
MIN_TILES = 24  # "dozens of distinct tiles"
COLOURS = ["#ff3b30", "#ffd60a", "#00e5ff", "#ff4dff", "#7cff3a"]  # scripts/render_matches.py, in query order


def run_demo(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the demo script; ``env`` values of None unset a variable."""
    merged = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, str(DEMO), *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={k: v for k, v in merged.items() if v is not None},
        cwd=PROJECT_ROOT,
    )


def read_hits(path: Path) -> list[dict]:
    return [f["properties"] for f in json.loads(path.read_text())["features"]]


def windows(hits: list[dict]) -> list[tuple[int, ...]]:
    return [tuple(int(v) for v in h["window"].split(",")) for h in hits]


def separated_queries(tops: dict[str, list[tuple[int, ...]]], tile: int, min_apart: float) -> list[str]:
    """The largest group of queries with pairwise disjoint top tiles whose centres are >= min_apart tiles apart."""

    def centre(ws):
        return np.mean([((x + w / 2) / tile, (y + h / 2) / tile) for x, y, w, h in ws], axis=0)

    def apart(a, b):
        return not set(tops[a]) & set(tops[b]) and math.dist(centre(tops[a]), centre(tops[b])) >= min_apart

    for size in range(len(tops), 1, -1):
        for group in itertools.combinations(tops, size):
            if all(apart(a, b) for a, b in itertools.combinations(group, 2)):
                return list(group)
    return []


def colour_pixels(rgb: np.ndarray, hex_colour: str, tol: int = 40) -> int:
    target = np.array([int(hex_colour[i : i + 2], 16) for i in (1, 3, 5)])
    return int((np.abs(rgb.astype(int) - target).max(axis=-1) <= tol).sum())


def test_separation_criterion_can_fail() -> None:
    same = [(0, 0, 256, 256), (256, 0, 256, 256)]
    assert separated_queries({"a": same, "b": same, "c": same}, 256, MIN_APART) == []
    neighbours = {"a": [(0, 0, 256, 256)], "b": [(256, 0, 256, 256)], "c": [(512, 0, 256, 256)]}
    assert separated_queries(neighbours, 256, MIN_APART) == []  # disjoint but adjacent: not different places
    far = {"a": [(0, 0, 256, 256)], "b": [(0, 1024, 256, 256)], "c": [(0, 2048, 256, 256)]}
    assert separated_queries(far, 256, MIN_APART) == ["a", "b", "c"]


def test_demo_without_raster_says_how_to_pass_one(tmp_path: Path) -> None:
    proc = run_demo(env={"RSITR_SHARED": str(tmp_path / "nowhere")})
    assert proc.returncode == 2
    assert "RASTER=" in proc.stderr and "Traceback" not in proc.stderr


def test_default_demo_lights_up_different_places(tmp_path: Path, shared: Path) -> None:
    """The default scene with the shipped model (found the way `make demo` finds it): >= 3 queries apart, a map."""
    out = tmp_path / "out"
    models = str(PROJECT_ROOT / "resources" / "models")
    env = {"RSITR_CACHE": str(tmp_path / "cache"), "RSITR_MODELS_DIR": models, "RSITR_MODEL": None}
    proc = run_demo("--out", str(out), env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "swellendam_2010_rgb.tif" in proc.stdout

    from engine.store import list_stores

    stores = list_stores(tmp_path / "cache" / "stores", sizes=False)
    assert len(stores) == 1 and stores[0]["n_tiles"] >= MIN_TILES, stores

    results = sorted(out.glob("*.geojson"), key=lambda p: p.stat().st_mtime_ns)
    assert len(results) >= 3
    tops, tile = {}, 0
    for path in results:
        hits = read_hits(path)
        assert [h["rank"] for h in hits] == [1, 2, 3, 4, 5], path.name
        assert all(-1 <= h["score"] <= 1 for h in hits)
        assert hits == sorted(hits, key=lambda h: -h["score"])
        tops[hits[0]["query"]] = windows(hits)
        tile = max(tile, *(max(w[2], w[3]) for w in tops[hits[0]["query"]]))
        for h in hits:  # every hit is printed with its score
            assert f"score {h['score']:.3f}  tile {h['tile_id']}" in proc.stdout
    group = separated_queries(tops, tile, MIN_APART)
    assert len(group) >= 3, f"fewer than 3 queries light up different places: {group} ({proc.stdout[-1500:]})"

    png = out / "demo_map.png"
    rgb = np.asarray(Image.open(png).convert("RGB"))
    assert rgb.shape[0] > 800 and rgb.std() > 20, "the rendered map looks blank"
    map_part = rgb[:, : int(rgb.shape[1] * 0.4)]  # the map is left of the legend panel
    for colour in COLOURS[: len(results)]:
        assert colour_pixels(map_part, colour) > 150, f"no tile outlines in {colour} on the map"
    assert png.stat().st_size < 1_000_000


def test_demo_any_raster_and_bundle(tmp_path: Path, shared: Path) -> None:
    """`make demo RASTER=... MODEL=...`: another CRS (EPSG:3857) and an explicit bundle, own queries."""
    bundle = build_synthetic_bundle(tmp_path / "bundle", embed_dim=32, image_size=32)
    out = tmp_path / "out"
    raster = shared / "rasters" / "cogeo.tif"
    args = ["--raster", str(raster), "--model", str(bundle), "--out", str(out), "-k", "3"]
    proc = run_demo(*args, "--query", "a dense forest", "--query", "a road", env={"RSITR_CACHE": str(tmp_path / "c")})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.count("score ") == 6  # 3 hits for each of the two queries
    hits = read_hits(out / "a_dense_forest.geojson")
    assert len(hits) == 3 and all(-1 <= h["score"] <= 1 for h in hits)
    rgb = np.asarray(Image.open(out / "demo_map.png").convert("RGB"))
    assert rgb.shape[0] > 300 and rgb.std() > 20, "the rendered map looks blank"
