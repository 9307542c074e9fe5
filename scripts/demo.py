"""The README's main job: index a real GeoTIFF with the shipped model, run text queries, show the matches.

Prints the top tiles of each query with their scores, writes one GeoJSON per query and a PNG map (rendered
headless by QGIS) with the matches outlined over the imagery, all under ``runs/demo/``.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.errors import EngineError  # noqa: E402
from engine.shared_data import rasters_dir  # noqa: E402

DEFAULT_QUERIES = (
    "a road running through a dense green forest",
    "snow covered mountains with bare rock",
    "a river with a bridge",
)


def slug(text: str) -> str:
    """A file-name-safe version of a query."""
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")[:60] or "query"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--raster", help="GeoTIFF to index (default: ../shared/rasters/cogeo.tif)")
    p.add_argument("--model", help="model bundle directory (default: the shipped model in resources/models)")
    p.add_argument("--query", action="append", help="text query (repeatable; default: three demo queries)")
    p.add_argument("-k", type=int, default=5)
    p.add_argument("--out", type=Path, default=ROOT / "runs" / "demo")
    p.add_argument("--no-map", action="store_true", help="skip the QGIS-rendered PNG")
    a = p.parse_args(argv)

    raster = Path(a.raster) if a.raster else rasters_dir() / "cogeo.tif"
    if not raster.is_file():
        print(
            f"demo: raster not found: {raster}\n"
            "      pass one with `make demo RASTER=/path/to/image.tif` (or set RSITR_SHARED to the shared data)",
            file=sys.stderr,
        )
        return 2
    from engine.cli import main as engine_cli
    from engine.config import require_model_dir
    from engine.search import write_results
    from engine.service import Engine

    try:
        model = require_model_dir(a.model)
        engine = Engine(default_model=model)
        print(f"model   {engine.default} ({model})")
        print(f"raster  {raster}")
        rc = engine_cli(["index", str(raster), "--model", str(model)])
        if rc:
            return rc
        a.out.mkdir(parents=True, exist_ok=True)
        written = []
        for query in a.query or DEFAULT_QUERIES:
            t0 = time.perf_counter()
            res = engine.search(query, rasters=[raster], k=a.k)
            ms = (time.perf_counter() - t0) * 1000
            print(f'\n"{query}"  ({ms:.0f} ms)')
            for r in res["results"]:
                west, south, east, north = r["bbox_lonlat"]
                print(
                    f"  #{r['rank']:<2} score {r['score']:.3f}  tile {r['tile_id']:<4} "
                    f"pixels x={r['window'][0]} y={r['window'][1]}  lon/lat {west:.5f},{south:.5f}"
                )
            path = a.out / f"{slug(query)}.geojson"
            write_results(res, str(path))
            written.append(path)
            print(f"  -> {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    except EngineError as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 2
    if not a.no_map:
        png = a.out / "demo_map.png"
        proc = subprocess.run(
            [sys.executable, str(ROOT / "scripts" / "render_matches.py"), str(raster), str(png), *map(str, written)],
            capture_output=True,
            text=True,
        )
        if proc.returncode:
            last = (proc.stderr.strip().splitlines() or [f"exit code {proc.returncode}"])[-1]
            print(f"demo: map rendering failed: {last}", file=sys.stderr)
            return 1
        print(f"\nmap     {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
