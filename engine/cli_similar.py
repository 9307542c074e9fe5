"""Command-line parts of "find more like this": ``search --like/--like-tile``, ``feedback`` and ``scoremap``
(registered by engine/cli.py; errors are EngineErrors, printed there as one line)."""

from __future__ import annotations

import argparse
from pathlib import Path

from engine.errors import BadInput

# the numeric modules (examples, feedback, ranking) are imported in the commands: building the parser stays light


def add_like_options(sp: argparse.ArgumentParser) -> None:
    """``--like RASTER:X,Y``, ``--like-tile STORE:ID`` and ``--mode`` (on ``search`` and ``scoremap``)."""
    sp.add_argument(
        "--like", action="append", metavar="RASTER:X,Y", help="example: the tile at X,Y (raster CRS) (repeatable)"
    )
    sp.add_argument("--like-tile", action="append", metavar="STORE:ID", help="example: a store's tile (repeatable)")
    sp.add_argument(
        "--mode", choices=["mean", "each"], default="mean", help="examples: mean vector, or each its own query"
    )


def _refs(points: list[str] | None, tiles: list[str] | None) -> tuple:
    from engine.examples import parse_like, parse_tile

    return tuple([parse_like(v) for v in points or []] + [parse_tile(v) for v in tiles or []])


def _labels(args, eng) -> tuple[tuple, tuple, str]:
    """yes/no refs from ``--yes/--no/--yes-at/--no-at`` plus a loaded ``--labels`` file, and its query."""
    from engine.examples import ExampleRef

    pos = list(_refs(getattr(args, "yes_at", None), getattr(args, "yes", None)))
    neg = list(_refs(getattr(args, "no_at", None), getattr(args, "no", None)))
    query = ""
    if getattr(args, "labels", None):
        loaded = eng.load_labels(args.labels)
        pos += [ExampleRef(store=r["store"], tile_id=r["tile_id"]) for r in loaded["positives"]]
        neg += [ExampleRef(store=r["store"], tile_id=r["tile_id"]) for r in loaded["negatives"]]
        query = loaded["query"]
        if loaded["missing"]:
            import sys

            print(f"warning: {loaded['missing']} labelled tiles of {args.labels} are not indexed here", file=sys.stderr)
    return tuple(pos), tuple(neg), query


def _print_results(args, res: dict) -> None:
    from engine.cli import _emit

    if getattr(args, "out", None):
        from engine.search import write_results

        write_results(res, args.out)
    lines = [
        f"{r['rank']:>4}  {r['score']:.4f}  tile {r['tile_id']:<6} {Path(r['raster']).name} window={r['window']}"
        for r in res["results"]
    ]
    extra = ""
    if res.get("kind") == "feedback":
        extra = f" (classifier on {res['n_positive']} yes / {res['n_negative']} no, fit {res['fit_ms']:.1f} ms)"
    summary = f"{len(lines)} results for '{res['query']}' in {res['took_ms']:.1f} ms{extra}"
    _emit(args, res, "\n".join([*lines, summary]))


def cmd_search_like(args, eng) -> int:
    """``search [TEXT] --like RASTER:X,Y / --like-tile STORE:ID``: query by example (with TEXT: combined)."""
    from engine.ranking import QuerySpec

    text = (args.query or "").strip() or None
    spec = QuerySpec(text=text, positives=_refs(args.like, args.like_tile), mode=args.mode)
    res = eng.rank(spec, args.raster or [], args.store or [], args.k, args.threshold, _aoi(args))
    _print_results(args, res)
    return 0


def _aoi(args) -> dict | None:
    if not getattr(args, "aoi", None):
        return None
    from engine.cli import _read_aoi

    return _read_aoi(args.aoi)


def _check_k(k: int) -> None:
    if not 1 <= k <= 1000:
        raise BadInput(f"-k must be between 1 and 1000, got {k}")


def cmd_feedback(args) -> int:
    """One relevance-feedback round: fit on yes/no tiles (and the text prior), re-rank the stores."""
    from engine.cli import _engine
    from engine.feedback import FeedbackParams
    from engine.ranking import QuerySpec

    _check_k(args.k)
    eng = _engine(args, need_model=bool(args.raster))
    pos, neg, query = _labels(args, eng)
    text = (args.query or "").strip() or query or None
    if not pos and not text:
        raise BadInput("feedback needs at least one 'yes' tile (--yes, --yes-at or --labels) or a text query")
    given = {k: v for k, v in (("prior_scale", args.prior_scale), ("l2", args.l2)) if v is not None}
    params = FeedbackParams(**given)
    spec = QuerySpec(text=text, positives=pos, negatives=neg, classifier=True)
    res = eng.rank(spec, args.raster or [], args.store or [], args.k, args.threshold, _aoi(args), params=params)
    if args.save_labels:
        eng.save_labels(args.save_labels, pos, neg, text)
    _print_results(args, res)
    return 0


def cmd_scoremap(args) -> int:
    """Write the score of every tile of one raster (text, examples or yes/no labels) as a GeoTIFF."""
    from engine.cli import _emit, _engine
    from engine.ranking import QuerySpec

    if bool(args.raster) == bool(args.store):
        raise BadInput("scoremap needs --raster or --store (one of them)")
    eng = _engine(args, need_model=bool(args.raster))
    pos, neg, query = _labels(args, eng)
    pos = _refs(args.like, args.like_tile) + pos
    text = (args.query or "").strip() or query or None
    spec = QuerySpec(text=text, positives=pos, negatives=neg, mode=args.mode, classifier=bool(args.labels or neg))
    res = eng.scoremap(spec, args.raster, args.store, args.out)
    lo, hi = res["min"], res["max"]
    rng = f"{lo:.4f}..{hi:.4f}" if lo is not None else "no tiles"
    _emit(args, res, f"score map {res['path']}: {res['width']} x {res['height']} px ({res['kind']}), scores {rng}")
    return 0


def add_commands(sub, common) -> None:
    """The ``feedback`` and ``scoremap`` subcommands."""
    sp = sub.add_parser("feedback", help="relevance feedback: re-rank by a classifier fitted on yes/no tiles")
    common(sp)
    sp.add_argument("query", nargs="?", help="optional text query: the classifier's prior")
    sp.add_argument("--raster", action="append", help="indexed raster to re-rank (repeatable)")
    sp.add_argument("--store", action="append", help="store id to re-rank (repeatable)")
    sp.add_argument("--yes", action="append", metavar="STORE:ID", help="a relevant tile (repeatable)")
    sp.add_argument("--no", action="append", metavar="STORE:ID", help="an irrelevant tile (repeatable)")
    sp.add_argument("--yes-at", action="append", metavar="RASTER:X,Y", help="a relevant tile by point (repeatable)")
    sp.add_argument("--no-at", action="append", metavar="RASTER:X,Y", help="an irrelevant tile by point (repeatable)")
    sp.add_argument("--labels", help="labels GeoPackage to start from (written by --save-labels or the plugin)")
    sp.add_argument("--save-labels", help="write all yes/no tiles (and the query) to this .gpkg")
    sp.add_argument("-k", type=int, default=20, help="number of results, 1..1000 (default 20)")
    sp.add_argument("--threshold", type=float, default=None, help="drop results with a lower probability")
    sp.add_argument("--aoi", help="GeoJSON file with an EPSG:4326 polygon")
    sp.add_argument("--prior-scale", type=float, help="weight of the text prior, logit per cosine (default 10)")
    sp.add_argument("--l2", type=float, help="how strongly the fit stays near the prior (default 0.01)")
    sp.add_argument("--out", help="write results to .geojson or .gpkg")
    sp.set_defaults(func=cmd_feedback)

    sp = sub.add_parser("scoremap", help="write a raster of the score of every tile (GeoTIFF, tile-grid pixels)")
    common(sp)
    sp.add_argument("query", nargs="?", help="text query (and/or examples or labels)")
    sp.add_argument("--raster", help="indexed raster")
    sp.add_argument("--store", help="store id")
    add_like_options(sp)
    sp.add_argument("--no", action="append", metavar="STORE:ID", help="an irrelevant tile (classifier; repeatable)")
    sp.add_argument("--labels", help="labels GeoPackage: score by the relevance-feedback classifier")
    sp.add_argument("--out", required=True, help="the GeoTIFF to write (.tif)")
    sp.set_defaults(func=cmd_scoremap, yes=None, yes_at=None, no_at=None)
