"""Engine speed probe: index tiles/s (cogeo.tif and a generated 10k x 10k raster), query latency, store bytes/tile.

Usage: python bench/engine_speed.py [--model DIR] [--image-size 224] [--out FILE.json]
Without --model it builds the synthetic test bundle (tests/bundles.py) at the given image size.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def make_10k(path: Path) -> Path:
    import rasterio
    from rasterio.transform import from_origin

    prof = {
        "driver": "GTiff",
        "width": 10_000,
        "height": 10_000,
        "count": 3,
        "dtype": "uint8",
        "crs": "EPSG:32633",
        "transform": from_origin(500_000, 5_000_000, 0.5, 0.5),
        "tiled": True,
        "blockxsize": 512,
        "blockysize": 512,
        "compress": "deflate",
    }
    rng = np.random.default_rng(0)
    with rasterio.open(path, "w", **prof) as dst:
        for y in range(0, 10_000, 1000):
            yy, xx = np.mgrid[y : y + 1000, 0:10_000]
            base = np.stack([(xx // 37) % 256, (yy // 53) % 256, ((xx + yy) // 91) % 256]).astype(np.int16)
            noise = rng.integers(-25, 25, size=base.shape, dtype=np.int16)
            dst.write(
                np.clip(base + noise, 0, 255).astype(np.uint8), window=rasterio.windows.Window(0, y, 10_000, 1000)
            )
    return path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model")
    ap.add_argument("--image-size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="rsitr-bench-"))
    os.environ["RSITR_CACHE"] = str(tmp / "cache")
    from engine.indexer import IndexParams
    from engine.service import Engine
    from engine.shared_data import rasters_dir

    if args.model:
        bundle = Path(args.model)
    else:
        from tests.bundles import build_synthetic_bundle

        bundle = build_synthetic_bundle(tmp / "bundle", image_size=args.image_size, hashes=True)
    eng = Engine(default_model=bundle, root=tmp / "cache" / "stores", threads=args.threads)
    enc = eng.encoder()
    report = {"model": enc.meta.name, "image_size": enc.meta.image_size, "provider": enc.provider}
    rasters = {"cogeo": rasters_dir() / "cogeo.tif"}
    t = time.perf_counter()
    rasters["gen10k"] = make_10k(tmp / "gen10k.tif")
    report["gen10k_write_s"] = round(time.perf_counter() - t, 1)
    for name, path in rasters.items():
        if not path.is_file():
            continue
        res = eng.index(path, IndexParams(tile=256))
        sbytes = sum(f.stat().st_size for f in res.path.iterdir() if f.is_file())
        report[name] = {
            "tiles": res.n_tiles,
            "seconds": round(res.seconds, 2),
            "tiles_per_s": round(res.tiles_per_s, 1),
            "store_bytes": sbytes,
            "bytes_per_tile": round(sbytes / max(res.n_tiles, 1), 1),
        }
    lat = []
    for i in range(30):
        t = time.perf_counter()
        eng.search(f"a dense residential area number {i}", rasters=[rasters["gen10k"]], k=20)
        lat.append((time.perf_counter() - t) * 1000)
    report["query_ms_uncached_median"] = round(float(np.median(lat)), 2)
    t = time.perf_counter()
    for _ in range(30):
        eng.search("a dense residential area number 0", rasters=[rasters["gen10k"]], k=20)
    report["query_ms_cached_mean"] = round((time.perf_counter() - t) * 1000 / 30, 2)
    from engine.search import exact_scores

    big = np.random.default_rng(0).standard_normal((1_000_000, enc.meta.embed_dim)).astype(np.float16)
    q = np.random.default_rng(1).standard_normal(enc.meta.embed_dim).astype(np.float32)
    t = time.perf_counter()
    for _ in range(5):
        s = exact_scores(big, q)
        np.argpartition(-s, 20)[:20]
    report["exact_topk_1M_fp16_scan_ms"] = round((time.perf_counter() - t) * 200, 1)
    big32 = big.astype(np.float32)
    t = time.perf_counter()
    for _ in range(5):
        s = exact_scores(big32, q)
        np.argpartition(-s, 20)[:20]
    report["exact_topk_1M_dense_fp32_ms"] = round((time.perf_counter() - t) * 200, 1)
    import faiss

    from engine.encoder import simhash

    codes = np.concatenate([simhash(big32[i : i + 100_000]) for i in range(0, len(big32), 100_000)])
    qc = simhash(q[None])[0]
    hamming = faiss.IndexBinaryFlat(codes.shape[1] * 8)
    hamming.add(codes)
    t = time.perf_counter()
    for _ in range(5):
        cand = np.sort(hamming.search(qc[None], 2000)[1][0])
        s = np.asarray(big[cand], np.float32) @ q
    report["prefilter_rerank_1M_ms"] = round((time.perf_counter() - t) * 200, 1)
    print(json.dumps(report, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
