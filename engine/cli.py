"""``python -m engine``: a thin argparse shell over the library. Errors are one line with a non-zero exit."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path

from engine.errors import BadInput, EngineError, one_line

EXIT_ERROR = 2
EXIT_INTERNAL = 1


def _engine(args, need_model: bool = True):
    from engine.config import require_model_dir
    from engine.service import Engine

    given = getattr(args, "model", None)  # commands without --model (stores, catalogs) use the models folder
    model = require_model_dir(given) if need_model else (Path(given) if given else None)
    return Engine(default_model=model, caption_bank=getattr(args, "captions", None))


def _emit(args, data, text: str) -> None:
    print(json.dumps(data, default=str) if args.json else text)


def _bands(value: str | None) -> list[int] | None:
    if not value:
        return None
    try:
        return [int(v) for v in value.split(",")]
    except ValueError:
        raise BadInput(f"--bands must be comma-separated band numbers like 1,2,3, got {value!r}") from None


def _index_params(args, **extra):
    """The grid and batching options shared by ``index`` and ``index-many``."""
    from engine.indexer import IndexParams

    return IndexParams(
        tile=args.tile,
        stride=args.stride,
        bands=_bands(args.bands),
        gsd=args.gsd,
        max_invalid=args.max_invalid,
        batch_size=args.batch_size,
        **extra,
    )


def cmd_index(args) -> int:
    eng = _engine(args)
    params = _index_params(args)
    bar = None
    t0 = time.perf_counter()
    show = not args.json and not args.quiet

    def progress(done: int, total: int) -> None:
        nonlocal bar
        if not show:
            return
        if bar is None:  # created only once the raster opened fine (errors stay one line)
            from tqdm import tqdm

            bar = tqdm(total=total, unit="tile", desc="index", dynamic_ncols=True, file=sys.stderr)
        bar.n = done
        bar.refresh()

    try:
        res = eng.index(args.raster, params, progress=progress)
    except BaseException:
        if bar is not None:
            bar.leave = False
            bar.close()
        raise
    if bar is not None:
        bar.close()
    data = {
        "store_id": res.store_id,
        "path": str(res.path),
        "n_tiles": res.n_tiles,
        "n_skipped": res.n_skipped,
        "n_windows": res.n_windows,
        "seconds": round(time.perf_counter() - t0, 3),
        "tiles_per_s": round(res.tiles_per_s, 2),
        "provider": res.provider,
        "reused": res.reused,
        "resumed_chunks": res.resumed_chunks,
        "index": res.index,
    }
    if res.n_tiles == 0 and res.n_windows:
        print(
            f"warning: every tile has more than {params.max_invalid:.0%} invalid pixels; "
            "try --max-invalid 0.9 or check the nodata value",
            file=sys.stderr,
        )
    word = "reused existing store" if res.reused else f"{res.tiles_per_s:.1f} tiles/s on {res.provider}"
    word += f"; FAISS {res.index} search index" if res.index != "flat" else ""
    _emit(
        args,
        data,
        f"store {res.store_id}: {res.n_tiles} tiles indexed, {res.n_skipped} skipped "
        f"(more than {params.max_invalid:.0%} invalid pixels); {word}",
    )
    return 0


def cmd_search(args) -> int:
    if args.k < 1 or args.k > 1000:
        raise BadInput(f"-k must be between 1 and 1000, got {args.k}")
    if args.like or args.like_tile:  # query by example (engine/cli_similar.py)
        from engine.cli_similar import cmd_search_like

        return cmd_search_like(args, _engine(args, need_model=bool(args.raster)))
    if not (args.query or "").strip():
        raise BadInput("query is empty (give a text, or examples with --like / --like-tile)")
    aoi = None
    if args.aoi:
        aoi = _read_aoi(args.aoi)
    if args.bbox:
        aoi = _bbox_aoi(args.bbox) if aoi is None else _bad("give --aoi or --bbox, not both")
    eng = _engine(args, need_model=bool(args.raster))
    res = eng.search(
        args.query,
        rasters=args.raster or [],
        store_ids=args.store or [],
        k=args.k,
        threshold=args.threshold,
        aoi=aoi,
        nprobe=args.nprobe,
        catalog=args.catalog,
    )
    if args.out:
        from engine.search import write_results

        write_results(res, args.out)
    lines = [
        f"{r['rank']:>4}  {r['score']:.4f}  tile {r['tile_id']:<6} {Path(r['raster']).name} window={r['window']}"
        for r in res["results"]
    ]
    _emit(args, res, "\n".join(lines + [f"{len(lines)} results in {res['took_ms']:.1f} ms"]))
    return 0


def _bad(message: str):
    raise BadInput(message)


def _bbox_aoi(value: str) -> dict:
    """``W,S,E,N`` in EPSG:4326 as a GeoJSON polygon."""
    try:
        w, s, e, n = (float(v) for v in value.split(","))
    except ValueError:
        raise BadInput(f"--bbox must be W,S,E,N in degrees, got {value!r}") from None
    if not (w < e and s < n):
        raise BadInput(f"--bbox must have W < E and S < N, got {value!r}")
    return {"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]}


def cmd_index_many(args) -> int:
    """``index-many SOURCES... --catalog NAME``: index many rasters into one catalog searched with one index."""
    params = _index_params(args, chunk_tiles=args.chunk_tiles)
    ray = None
    if args.ray is not None:  # engine/ray_index.py: needs the scale extra, checked before loading the model
        from engine.ray_index import RayParams, require_scale

        require_scale()
        ray = RayParams(address=args.ray or None, workers=args.ray_workers, chunks_per_commit=args.ray_commit_chunks)
    eng = _engine(args)
    t0 = time.perf_counter()
    unit = "windows" if ray else "rasters"

    def progress(done: int, total: int) -> None:
        if not args.json and not args.quiet:
            print(f"index-many: {done}/{total} {unit}", file=sys.stderr, flush=True)

    rebuild = True if args.rebuild else None
    m = eng.index_many(args.sources, args.catalog, params, progress=progress, rebuild=rebuild, ray=ray)
    kind = next((c["index"] for c in eng.catalogs() if c["name"] == args.catalog), "flat")
    data = {
        "catalog": m["name"],
        "version": m["version"],
        "n_rasters": len(m["members"]),
        "n_tiles": m["n_tiles"],
        "index": kind,
        "members": m["members"],
        "seconds": round(time.perf_counter() - t0, 3),
    }
    if "table" in m:
        data["table"] = m["table"]
    _emit(
        args,
        data,
        f"catalog {m['name']} v{m['version']}: {len(m['members'])} rasters, {m['n_tiles']} tiles, index {kind}",
    )
    return 0


def cmd_catalogs(args) -> int:
    eng = _engine(args, need_model=False)
    if args.action == "remove":
        if not args.name:
            raise BadInput("catalogs remove needs a catalog name (see `catalogs list`)")
        eng.remove_catalog(args.name)
        _emit(args, {"removed": args.name}, f"removed catalog {args.name}")
        return 0
    rows = eng.catalogs()
    lines = [
        f"{c['name']:<20} v{c['version']:<4} {c['n_rasters']:>5} rasters {c['n_tiles']:>10} tiles  index {c['index']}"
        f"  {c['model']}"
        for c in rows
    ] or ["no catalogs"]
    _emit(args, {"catalogs": rows}, "\n".join(lines))
    return 0


def _read_aoi(path: str) -> dict:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BadInput(f"cannot read AOI file {path}: {exc}") from None
    if data.get("type") == "FeatureCollection":
        import shapely.geometry

        geoms = [shapely.geometry.shape(f["geometry"]) for f in data.get("features", [])]
        if not geoms:
            raise BadInput(f"AOI file {path} has no features")
        return shapely.geometry.mapping(shapely.union_all(geoms))
    return data.get("geometry", data) if data.get("type") == "Feature" else data


def cmd_describe(args) -> int:
    if args.tile_id is None and (args.x is None or args.y is None):
        raise BadInput("describe needs --x and --y (or --tile-id with --store)")
    eng = _engine(args, need_model=not args.store)
    res = eng.describe(
        raster=args.raster, store_id=args.store, x=args.x, y=args.y, crs=args.crs, tile_id=args.tile_id, top=args.top
    )
    from engine.describe import describe_text

    _emit(args, res, describe_text(res))
    return 0


def cmd_caption_bank(args) -> int:
    """``caption-bank build SOURCE --out F.npz``: embed a team's own texts for describe."""
    from engine.caption_bank import build_bank, read_texts
    from engine.config import require_model_dir
    from engine.service import Engine

    texts = read_texts(args.source, args.split, args.column)
    enc = Engine(default_model=require_model_dir(args.model)).encoder()
    bar = None
    if not args.json and not args.quiet:
        from tqdm import tqdm

        bar = tqdm(total=len(texts), unit="text", desc="caption bank", dynamic_ncols=True, file=sys.stderr)

    def progress(done: int, total: int) -> None:
        if bar is not None:
            bar.n = done
            bar.refresh()

    try:
        out = build_bank(texts, enc, args.out, progress=progress)
    finally:
        if bar is not None:
            bar.close()
    data = {"out": str(out), "n_texts": len(texts), "model": enc.meta.name, "version": enc.meta.version}
    _emit(args, data, f"caption bank {out}: {len(texts)} texts embedded with {enc.meta.name} {enc.meta.version}")
    return 0


def cmd_info(args) -> int:
    eng = _engine(args, need_model=False)
    res = eng.info()
    lines = [
        f"rsitr engine {res['version']}",
        f"provider: {res['provider'] or 'n/a (no model)'}",
        f"available providers: {', '.join(res['available_providers'])}",
        f"stores dir: {res['stores_dir']}",
    ]
    lines += [
        f"model: {m['name']} {m['version']} dim={m['embed_dim']} {m['path']}" + (" (default)" if m["default"] else "")
        for m in res["models"]
    ]
    lines.append(f"stores: {len(res['stores'])}")
    _emit(args, res, "\n".join(lines))
    return 0


def _optimize(args) -> int:
    """``stores optimize``: build the FAISS IVF index of large complete stores (``--force``: any size)."""
    if not args.ids and not args.all:
        raise BadInput("stores optimize needs store ids or --all")
    out = _engine(args, need_model=False).optimize_stores(None if args.all else args.ids, force=args.force)
    lines = []
    for s in out:
        if s["index"] != "flat":
            word = f"FAISS {s['index']} index with {s['n_lists']} lists ({s['seconds']:.1f} s)"
        else:
            why = "small store: exact search; --force builds one" if s["state"] == "complete" else s["state"]
            word = f"no IVF index ({why})"
        lines.append(f"{s['store_id']}  {s['n_tiles']:>9} tiles  {word}")
    _emit(args, {"stores": out}, "\n".join(lines) or "no stores")
    return 0


def cmd_stores(args) -> int:
    if args.action == "optimize":
        return _optimize(args)
    eng = _engine(args, need_model=False)
    if args.action == "list":
        stores = eng.list_stores()
        lines = [
            f"{s['store_id']}  {s['state']:<9} {s['n_tiles']:>7} tiles {s['bytes'] / 1e6:8.2f} MB  "
            f"{s['model']}  {s['raster']}"
            for s in stores
        ] or ["no stores"]
        _emit(args, {"stores": stores}, "\n".join(lines))
    else:
        if not args.ids and not args.all and not args.stale:
            raise BadInput("stores clear needs store ids, --stale or --all")
        removed = eng.clear_stores(None if args.all else args.ids, stale=args.stale)
        _emit(args, {"removed": removed}, f"removed {len(removed)} store(s)")
    return 0


def _release_entries(release: str) -> list[tuple[str, str]]:
    """(archive URL, sha256) of every model in a ``release.json`` manifest (a URL or a local path)."""
    from engine.model_install import DownloadError, download

    if "://" in release:
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            local = Path(tmp) / "release.json"
            download(release, local)
            text = local.read_text(encoding="utf-8")
        base = release.rsplit("/", 1)[0] + "/"
    else:
        try:
            text = Path(release).expanduser().read_text(encoding="utf-8")
        except OSError as exc:
            raise BadInput(f"cannot read {release}: {exc.strerror or exc}") from None
        base = str(Path(release).expanduser().resolve().parent) + os.sep
    try:
        models = json.loads(text)["models"]
        return [(base + m["file"], m["sha256"]) for m in models]
    except (ValueError, KeyError, TypeError):
        raise DownloadError(f"{release} is not a release manifest (release.json with a 'models' list)") from None


def cmd_models(args) -> int:
    from engine.config import default_model_dir, model_dirs, models_dir

    root = Path(args.models_dir).expanduser() if args.models_dir else models_dir()
    if args.action == "dir":
        _emit(args, {"models_dir": str(root)}, str(root))
        return 0
    if args.action == "list":
        from engine.bundle import load_bundle, model_row
        from engine.errors import CorruptData

        os.environ["RSITR_MODELS_DIR"] = str(root)
        default = default_model_dir()
        rows, lines = [], []
        for path in model_dirs():
            try:
                meta = load_bundle(path).meta
            except CorruptData as exc:
                rows.append({"path": str(path), "error": exc.message})
                lines.append(f"{path.name:<16} broken: {exc.message}")
                continue
            row = model_row(meta, path, path == default)
            rows.append(row)
            mr = row["test_mr"] if row["test_mr"] is not None else "-"
            lines.append(
                f"{meta.name:<16} {meta.version:<8} {row['bytes'] / 1e6:6.1f} MB  test mR {mr}"
                + (f"  {row['image_orientations']} orientations" if row["image_orientations"] > 1 else "")
                + ("  (default)" if row["default"] else "")
                + f"  {path}"
            )
        _emit(args, {"models_dir": str(root), "models": rows}, "\n".join(lines) or f"no models in {root}")
        return 0
    if args.action == "remove":
        from engine.model_install import remove_bundle

        if not args.name:
            raise BadInput("models remove needs a model name (see `python -m engine models list`)")
        path = remove_bundle(args.name, root)
        _emit(args, {"removed": str(path)}, f"removed {path}")
        return 0
    from engine.model_install import install_archive_url

    if args.release:
        if args.url or args.sha256:
            raise BadInput("give either --release or --url with --sha256, not both")
        entries = _release_entries(args.release)
    elif args.url and args.sha256:
        entries = [(args.url, args.sha256)]
    else:
        raise BadInput("models install needs --release RELEASE_JSON, or --url ARCHIVE with --sha256 HEX")

    def progress(done: int, total: int) -> None:
        if args.progress_json:
            print(json.dumps({"event": "progress", "done": done, "total": total}), flush=True)

    for url, sha in entries:
        res = install_archive_url(url, sha, root, progress=progress)
        data = {
            "event": "installed",
            "name": res.name,
            "version": res.version,
            "path": str(res.path),
            "bytes": res.archive_bytes,
            "resumed_from": res.resumed_from,
        }
        if args.progress_json or args.json:
            print(json.dumps(data), flush=True)
        else:
            print(f"installed {res.name} {res.version} ({res.archive_bytes / 1e6:.1f} MB) in {res.path}")
    return 0


def cmd_serve(args) -> int:
    from engine.server import serve

    return serve(args)


def build_parser() -> argparse.ArgumentParser:
    from engine import __version__

    p = argparse.ArgumentParser(prog="python -m engine", description="RSITR engine: index rasters, search by text.")
    p.add_argument("--version", action="version", version=f"rsitr engine {__version__}")
    p.add_argument("--json", action="store_true", help="machine-readable JSON output")
    sub = p.add_subparsers(dest="command", required=True)
    from engine.cli_similar import add_commands as add_similar_commands
    from engine.cli_similar import add_like_options

    def common(sp, model=True):
        sp.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="JSON output")
        if model:
            sp.add_argument(
                "--model",
                help="model bundle directory (default: $RSITR_MODEL, else the only or 'default' bundle in "
                "the models folder, see `models dir`)",
            )

    sp = sub.add_parser("index", help="index a raster into a tile store")
    common(sp)
    sp.add_argument("raster", help="GeoTIFF or any GDAL-readable raster file")
    sp.add_argument("--tile", type=int, default=256, help="tile size in output pixels (default 256)")
    sp.add_argument("--stride", type=int, default=None, help="step between tiles in output pixels (default: --tile)")
    sp.add_argument("--bands", help="1-based band numbers, e.g. 1,2,3 or 4")
    sp.add_argument("--gsd", type=float, default=None, help="resample to this ground resolution in metres")
    sp.add_argument("--max-invalid", type=float, default=0.5, help="skip tiles with more invalid pixels (0..1)")
    sp.add_argument("--batch-size", type=int, default=32, help="tiles per encoder call (default 32)")
    sp.add_argument("--quiet", action="store_true", help="no progress bar")
    sp.set_defaults(func=cmd_index)

    sp = sub.add_parser("search", help="text search over indexed rasters or stores")
    common(sp)
    sp.add_argument("query", nargs="?", help="the text to search for, e.g. 'a river crossing farmland'")
    sp.add_argument("--raster", action="append", help="indexed raster (repeatable)")
    sp.add_argument("--store", action="append", help="store id (repeatable)")
    sp.add_argument("-k", type=int, default=20, help="number of results, 1..1000 (default 20)")
    sp.add_argument("--threshold", type=float, default=None, help="drop results scoring below this cosine")
    sp.add_argument("--aoi", help="GeoJSON file with an EPSG:4326 polygon")
    sp.add_argument("--out", help="write results to .geojson or .gpkg")
    sp.add_argument("--catalog", help="search this catalog (see index-many) instead of rasters/stores")
    sp.add_argument("--bbox", help="only tiles intersecting W,S,E,N (EPSG:4326 degrees)")
    sp.add_argument(
        "--nprobe",
        type=int,
        default=None,
        help="IVF lists probed in large stores/catalogs (default 0.8 %% of the lists, at least 8; more: better recall)",
    )
    add_like_options(sp)
    sp.set_defaults(func=cmd_search)
    add_similar_commands(sub, common)  # feedback, scoremap

    sp = sub.add_parser("index-many", help="index many rasters into one catalog searched with one index")
    common(sp)
    sp.add_argument("sources", nargs="+", help="rasters, folders, list files (.txt) or STAC ItemCollection JSON")
    sp.add_argument("--catalog", required=True, help="catalog name (letters, digits, _ . -)")
    sp.add_argument("--tile", type=int, default=256, help="tile size in output pixels (default 256)")
    sp.add_argument("--stride", type=int, default=None, help="step between tiles in output pixels (default: --tile)")
    sp.add_argument("--bands", help="1-based band numbers, e.g. 1,2,3 or 4")
    sp.add_argument("--gsd", type=float, default=None, help="resample to this ground resolution in metres")
    sp.add_argument("--max-invalid", type=float, default=0.5, help="skip tiles with more invalid pixels (0..1)")
    sp.add_argument("--rebuild", action="store_true", help="rebuild the catalog's FAISS index now")
    sp.add_argument("--batch-size", type=int, default=32, help="tiles per encoder call (default 32; GPUs: 256+)")
    sp.add_argument("--chunk-tiles", type=int, default=256, help="grid windows per resumable chunk (default 256)")
    sp.add_argument(
        "--ray",
        nargs="?",
        const="",
        default=None,
        metavar="ADDRESS",
        help="embed on a Ray cluster (host:port; without ADDRESS: $RAY_ADDRESS or a local Ray) into the catalog's "
        'Lance table; needs pip install "rsitr[scale]"',
    )
    sp.add_argument("--ray-workers", type=int, default=2, help="--ray: encoder actors (default 2)")
    sp.add_argument(
        "--ray-commit-chunks",
        type=int,
        default=8,
        help="--ray: chunks per Lance commit, the unit of progress, cancel and resume (default 8)",
    )
    sp.add_argument("--quiet", action="store_true", help="no progress lines")
    sp.set_defaults(func=cmd_index_many)

    sp = sub.add_parser("catalogs", help="list or remove catalogs")
    common(sp, model=False)
    sp.add_argument("action", choices=["list", "remove"], help="what to do")
    sp.add_argument("name", nargs="?", help="remove: the catalog name")
    sp.set_defaults(func=cmd_catalogs)

    sp = sub.add_parser("describe", help="describe the tile at a point")
    common(sp)
    sp.add_argument("raster", nargs="?", help="raster file (or give --store)")
    sp.add_argument("--store", help="store id of an indexed raster")
    sp.add_argument("--x", type=float, help="x of the point (in --crs)")
    sp.add_argument("--y", type=float, help="y of the point (in --crs)")
    sp.add_argument("--tile-id", type=int, help="tile id in --store instead of a point")
    sp.add_argument("--crs", help="CRS of x/y, e.g. EPSG:4326 (default: the raster CRS)")
    sp.add_argument(
        "--top",
        type=int,
        default=5,
        help="number of descriptions (default 5; at most 3 classes plus 'other' are shown)",
    )
    sp.add_argument("--captions", help="caption bank .npz")
    sp.set_defaults(func=cmd_describe)

    sp = sub.add_parser("caption-bank", help="build a caption bank (.npz) from your own texts for describe")
    common(sp)
    sp.add_argument("action", choices=["build"], help="what to do")
    sp.add_argument("source", help="Karpathy-style JSON, CSV (filename,title or a text column) or a GeoJSON folder")
    sp.add_argument("--out", required=True, help="the .npz to write (use it with describe/serve --captions)")
    sp.add_argument("--split", action="append", help="Karpathy JSON: only these splits (repeatable; default all)")
    sp.add_argument("--column", help="CSV column or GeoJSON property with the text (default: title, text, ...)")
    sp.add_argument("--quiet", action="store_true", help="no progress bar")
    sp.set_defaults(func=cmd_caption_bank)

    sp = sub.add_parser("serve", help="run the local HTTP service")
    common(sp)
    sp.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    sp.add_argument("--port", type=int, default=8765, help="port, 0 picks a free one (default 8765)")
    sp.add_argument("--token-file", help="bearer token file (default: <config dir>/token, created 0600)")
    sp.add_argument("--allowed-root", action="append", help="allowed raster root (repeatable)")
    sp.add_argument("--captions", help="caption bank .npz")
    sp.add_argument("--parent-pid", type=int, help="exit when this process (e.g. QGIS) is gone")
    sp.add_argument("--exit-on-stdin-eof", action="store_true", help="exit when stdin reaches end of file")
    sp.set_defaults(func=cmd_serve)

    sp = sub.add_parser("info", help="version, providers, models and stores")
    common(sp)
    sp.set_defaults(func=cmd_info)

    sp = sub.add_parser("stores", help="list, clear or optimize tile stores")
    common(sp, model=False)
    sp.add_argument("action", choices=["list", "clear", "optimize"], help="what to do")
    sp.add_argument("ids", nargs="*", help="store ids (see `stores list`)")
    sp.add_argument("--all", action="store_true", help="clear (optimize) every store")
    sp.add_argument("--stale", action="store_true", help="clear stale and corrupted stores only")
    sp.add_argument("--force", action="store_true", help="optimize: (re)build the FAISS IVF index whatever the size")
    sp.set_defaults(func=cmd_stores)

    sp = sub.add_parser("models", help="list, install or remove model bundles in the models folder")
    common(sp, model=False)
    sp.add_argument("action", choices=["dir", "list", "install", "remove"], help="what to do")
    sp.add_argument("name", nargs="?", help="remove: the model's folder name (see `models list`)")
    sp.add_argument("--models-dir", help="models folder (default: $RSITR_MODELS_DIR or the user data folder)")
    sp.add_argument("--release", help="install: release.json manifest (URL or path); installs every model it lists")
    sp.add_argument("--url", help="install: URL or path of one release archive (.zip)")
    sp.add_argument("--sha256", help="install: expected sha256 of the archive (64 hex digits)")
    sp.add_argument("--progress-json", action="store_true", help="install: JSON progress lines on stdout")
    sp.set_defaults(func=cmd_models)
    return p


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"warning: {' '.join(str(message).split())}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status (0 ok, 2 user error, 1 internal error, 130 interrupted)."""
    warnings.showwarning = _one_line_warning
    from engine.settings import apply_startup_defaults

    apply_startup_defaults()  # GDAL block cache, Hugging Face offline (engine/settings.py)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    try:
        return args.func(args)
    except EngineError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - never a traceback on the command line
        print(f"error: internal: {one_line(exc)}", file=sys.stderr)
        return EXIT_INTERNAL
