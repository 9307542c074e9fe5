"""`make demo` (scripts/demo.py): clear message without a raster; real run writes GeoJSON and a non-blank map."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from tests.bundles import build_synthetic_bundle
from tests.conftest import PROJECT_ROOT

DEMO = PROJECT_ROOT / "scripts" / "demo.py"


def run_demo(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(DEMO), *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
        cwd=PROJECT_ROOT,
    )


def test_demo_without_raster_says_how_to_pass_one(tmp_path: Path) -> None:
    proc = run_demo(env={"RSITR_SHARED": str(tmp_path / "nowhere")})
    assert proc.returncode == 2
    assert "RASTER=" in proc.stderr and "Traceback" not in proc.stderr


def test_demo_indexes_queries_and_renders_map(tmp_path: Path, shared: Path) -> None:
    bundle = build_synthetic_bundle(tmp_path / "bundle", embed_dim=32, image_size=32)
    out = tmp_path / "out"
    proc = run_demo(
        "--model",
        str(bundle),
        "--out",
        str(out),
        "--query",
        "a dense forest",
        "--query",
        "a road",
        env={"RSITR_CACHE": str(tmp_path / "cache")},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.count("score") == 10  # 5 hits for each of the two queries
    hits = json.loads((out / "a_dense_forest.geojson").read_text())["features"]
    assert len(hits) == 5 and all(-1 <= h["properties"]["score"] <= 1 for h in hits)
    from PIL import Image

    pixels = np.asarray(Image.open(out / "demo_map.png").convert("RGB"), dtype=np.float32)
    assert pixels.shape[0] > 500 and pixels.std() > 20, "the rendered map looks blank"
