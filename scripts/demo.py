"""The README's main job: index a real GeoTIFF with the shipped model, run text queries, show where they match.

Default scene: ``../shared/rasters/swellendam_2010_rgb.tif`` (2.5 m aerial photograph, about 2.5 x 11 km:
mountains, pine plantations, a river, farmland, farm dams). The engine's default grid is used: the model
works at 2 m and the engine never upsamples, so the scene is tiled at its native 2.5 m into 256 px tiles
(about 650 m across, the size of an AID training scene) without overlap: 5 x 16 = 80 distinct tiles, so the
top-5 of a query are five different places. ``--tile``, ``--stride`` and ``--gsd`` override the grid.

Prints the top tiles of each query with scores and grid positions, whether the queries light up different
parts of the scene, writes one GeoJSON per query and a PNG map (rendered headless by QGIS,
``scripts/render_matches.py``) under ``runs/demo/``.
"""

from __future__ import annotations

import argparse
import itertools
import math
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.errors import EngineError  # noqa: E402
from engine.shared_data import rasters_dir  # noqa: E402

DEFAULT_RASTER = "swellendam_2010_rgb.tif"
# Chosen for what the default scene holds (checked on its tiles): fynbos mountains in the north, pine
# plantations below them, a river crossing farmland in the middle, cultivated fields and farm dams in the south-east.
DEFAULT_QUERIES = (
    "mountains covered with shrubs",
    "a pine plantation",
    "a river flowing through farmland",
    "farmland with many fields",
    "a small lake",
)
MIN_SEPARATION_TILES = 3.0  # "different places": disjoint top-k and centres at least this many tiles apart


@dataclass(frozen=True)
class GridLayout:
    """Row/column of every tile from the store's pixel windows, and the tile size in source pixels."""

    cols: tuple[int, ...]  # sorted distinct x offsets
    rows: tuple[int, ...]  # sorted distinct y offsets
    tile_px: int

    @classmethod
    def from_windows(cls, windows) -> GridLayout:
        xs = sorted({int(w[0]) for w in windows})
        ys = sorted({int(w[1]) for w in windows})
        return cls(tuple(xs), tuple(ys), max(int(max(w[2], w[3])) for w in windows))

    def position(self, window) -> tuple[int, int]:
        """(row, column) of a window, 0-based."""
        return self.rows.index(int(window[1])), self.cols.index(int(window[0]))


def slug(text: str) -> str:
    """A file-name-safe version of a query."""
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")[:60] or "query"


def centre_in_tiles(windows: list, tile_px: int) -> tuple[float, float]:
    """Mean (x, y) of the window centres, in tile units."""
    xs = [(w[0] + w[2] / 2) / tile_px for w in windows]
    ys = [(w[1] + w[3] / 2) / tile_px for w in windows]
    return sum(xs) / len(xs), sum(ys) / len(ys)


def separated_group(tops: dict[str, list], tile_px: int, min_tiles: float) -> tuple[list[str], float]:
    """The largest set of queries whose top windows are pairwise disjoint with centres >= ``min_tiles`` apart.

    ``tops`` maps a query to its top windows ``[x, y, w, h]``; returns the queries and their smallest centre
    distance in tiles (``([], 0.0)`` when no two queries qualify).
    """
    centre = {q: centre_in_tiles(ws, tile_px) for q, ws in tops.items() if ws}
    keys = {q: {tuple(w) for w in ws} for q, ws in tops.items() if ws}

    def apart(a: str, b: str) -> bool:
        return not keys[a] & keys[b] and math.dist(centre[a], centre[b]) >= min_tiles

    queries = list(centre)
    for size in range(len(queries), 1, -1):
        for group in itertools.combinations(queries, size):
            if all(apart(a, b) for a, b in itertools.combinations(group, 2)):
                return list(group), min(math.dist(centre[a], centre[b]) for a, b in itertools.combinations(group, 2))
    return [], 0.0


def tile_size_m(bbox_lonlat: list[float]) -> tuple[float, float]:
    """Approximate ground width and height (metres) of a lon/lat bounding box."""
    west, south, east, north = bbox_lonlat
    lat = math.radians((south + north) / 2)
    return (east - west) * 111_320 * math.cos(lat), (north - south) * 110_574


def lonlat(lon: float, lat: float) -> str:
    return f"{abs(lon):.5f}{'E' if lon >= 0 else 'W'} {abs(lat):.5f}{'N' if lat >= 0 else 'S'}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--raster", help=f"GeoTIFF to index (default: ../shared/rasters/{DEFAULT_RASTER})")
    p.add_argument("--model", help="model bundle directory (default: the engine's default model)")
    p.add_argument("--query", action="append", help="text query (repeatable; default: five demo queries)")
    p.add_argument("-k", type=int, default=5, help="tiles per query (default 5)")
    p.add_argument("--tile", type=int, default=256, help="tile size in output pixels (default 256)")
    p.add_argument("--stride", type=int, default=None, help="step between tiles in output pixels (default: --tile)")
    p.add_argument("--gsd", type=float, default=None, help="resample to this ground resolution in metres")
    p.add_argument("--out", type=Path, default=ROOT / "runs" / "demo", help="output folder (default runs/demo)")
    p.add_argument("--map", type=Path, help="PNG map path (default: OUT/demo_map.png)")
    p.add_argument("--no-map", action="store_true", help="skip the QGIS-rendered PNG")
    a = p.parse_args(argv)

    raster = Path(a.raster) if a.raster else rasters_dir() / DEFAULT_RASTER
    if not raster.is_file():
        print(
            f"demo: raster not found: {raster}\n"
            "      pass one with `make demo RASTER=/path/to/image.tif` (or set RSITR_SHARED to the shared data)",
            file=sys.stderr,
        )
        return 2
    if not 1 <= a.k <= 50:
        print(f"demo: -k must be between 1 and 50, got {a.k}", file=sys.stderr)
        return 2
    from engine.config import require_model_dir
    from engine.indexer import IndexParams
    from engine.search import write_results
    from engine.service import Engine

    queries = a.query or list(DEFAULT_QUERIES)
    tops: dict[str, list] = {}
    written: list[Path] = []
    bbox = None  # lon/lat box of one tile, for its ground size
    try:
        model = require_model_dir(a.model)
        engine = Engine(default_model=model)
        meta = engine.encoder().meta
        print(f"model   {meta.name} {meta.version} ({model})")
        print(f"raster  {raster}")
        t0 = time.perf_counter()
        params = IndexParams(tile=a.tile, stride=a.stride, gsd=a.gsd)
        res = engine.index(raster, params, progress=_progress_bar())
        how = "reused the existing store" if res.reused else f"{res.tiles_per_s:.1f} tiles/s on {res.provider}"
        print(f"index   {res.n_tiles} tiles in {time.perf_counter() - t0:.1f} s ({how}); store {res.store_id}")
        store = engine.store(res.store_id)
        grid = GridLayout.from_windows(store.windows)
        a.out.mkdir(parents=True, exist_ok=True)
        for query in queries:
            t1 = time.perf_counter()
            found = engine.search(query, store_ids=[res.store_id], k=a.k)
            ms = (time.perf_counter() - t1) * 1000
            hits = found["results"]
            print(f'\n"{query}"  ({ms:.0f} ms)')
            for r in hits:
                row, col = grid.position(r["window"])
                west, south, east, north = r["bbox_lonlat"]
                centre = lonlat((west + east) / 2, (south + north) / 2)
                print(
                    f"  #{r['rank']:<2} score {r['score']:.3f}  tile {r['tile_id']:<4} "
                    f"row {row + 1:>2}/{len(grid.rows)} col {col + 1:>2}/{len(grid.cols)}  centre {centre}"
                )
            tops[query] = [r["window"] for r in hits]
            bbox = bbox or (hits[0]["bbox_lonlat"] if hits else None)
            if hits:
                w_m, h_m = tile_size_m(bbox)
                cx, cy = centre_in_tiles(tops[query], grid.tile_px)
                print(
                    f"  top-{len(hits)} centre: {cy * h_m / 1000:.1f} km south, "
                    f"{cx * w_m / 1000:.1f} km east of the north-west corner"
                )
            path = a.out / f"{slug(query)}.geojson"
            write_results(found, str(path))
            written.append(path)
    except EngineError as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 2
    out_px = store.manifest["grid"]["tile"]
    size = f" of {out_px} px" + (f" ({grid.tile_px} raster px)" if grid.tile_px != out_px else "")
    if bbox:
        size += ", about {:.0f} x {:.0f} m".format(*tile_size_m(bbox))
    print(f"\ngrid    {len(grid.rows)} rows x {len(grid.cols)} columns = {len(store.windows)} tiles{size}")
    print(spread_line(tops, grid.tile_px))
    for p in written:
        print(f"  -> {_rel(p)}")
    if not a.no_map:
        png = a.map or a.out / "demo_map.png"
        title = f"RSITR demo: {raster.name}"
        subtitle = f"model {meta.name} {meta.version}; {len(store.windows)} tiles{size}; top {a.k} per query"
        cmd = [sys.executable, str(ROOT / "scripts" / "render_matches.py"), str(raster), str(png), *map(str, written)]
        proc = subprocess.run([*cmd, "--title", title, "--subtitle", subtitle], capture_output=True, text=True)
        if proc.returncode:
            last = (proc.stderr.strip().splitlines() or [f"exit code {proc.returncode}"])[-1]
            print(f"demo: map rendering failed: {last}", file=sys.stderr)
            return 1
        print(f"\nmap     {_rel(png)}")
    return 0


def spread_line(tops: dict[str, list], tile_px: int) -> str:
    """One line saying whether (and which) queries light up different parts of the scene."""
    group, dist = separated_group(tops, tile_px, MIN_SEPARATION_TILES)
    if len(group) < 2:
        return f"spread  no two queries have disjoint top tiles with centres >= {MIN_SEPARATION_TILES:g} tiles apart"
    names = ", ".join(f'"{q}"' for q in group)
    return (
        f"spread  {len(group)} of {len(tops)} queries light up different places: {names} "
        f"(disjoint top tiles, centres >= {dist:.1f} tiles apart)"
    )


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)


def _progress_bar():
    """A tqdm progress callback for indexing, created on the first call."""
    bar = None

    def progress(done: int, total: int) -> None:
        nonlocal bar
        if bar is None and done < total:  # nothing to show when the store is reused
            from tqdm import tqdm

            bar = tqdm(total=total, unit="tile", desc="index", dynamic_ncols=True, file=sys.stderr, leave=False)
        if bar is not None:
            bar.n = done
            bar.refresh()
            if done >= total:
                bar.close()

    return progress


if __name__ == "__main__":
    sys.exit(main())
