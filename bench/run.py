"""Run the RSITR benchmark suite (issue 7) and write ``bench/results/*.json``, plots and ``docs/performance.md``.

    .venv/bin/python bench/run.py                  # everything (make bench), the shipped default bundle
    .venv/bin/python bench/run.py --quick          # 1-2 minute smoke version -> bench/tmp/ (git-ignored)
    .venv/bin/python bench/run.py --only query --model DIR

Benchmarks: throughput, indexing, query, http, text, feedback, ray_indexing (one module each in bench/;
ray_indexing needs the scale extra).
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from bench import report  # noqa: E402
from bench.common import Ctx, code_info, loadavg, machine_info, model_meta, rnd, write_json  # noqa: E402

NAMES = [m.NAME for m in report.MODULES]


def parse(argv: list[str] | None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny sizes, few repeats; outputs go to bench/tmp/")
    ap.add_argument("--model", help="model bundle directory (default: the shipped default bundle)")
    ap.add_argument(
        "--only",
        action="append",
        default=[],
        help=f"run only these ({', '.join(NAMES)}); repeatable "
        "or comma-separated; the page is regenerated from all results present",
    )
    ap.add_argument(
        "--checkpoint",
        help="PyTorch checkpoint of the bundle for the eager comparison "
        "(default: <bundle>/../best.pt if present, else random init of the same architecture)",
    )
    ap.add_argument("--results", help="results folder (default bench/results, quick: bench/tmp/results)")
    ap.add_argument("--doc", help="page to write (default docs/performance.md, quick: bench/tmp/performance.md)")
    ap.add_argument(
        "--mr-images", type=int, help="evaluate variant mR on the first N test images (default: all; quick: 32)"
    )
    ap.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME=DIR",
        help="another bundle of the same model to time and evaluate next to it (e.g. fp32=runs/x/ship/fp32); "
        "repeatable; default: <bundle>-fp16 / <bundle>-int8 siblings",
    )
    ap.add_argument("--keep-work", action="store_true", help="keep the scratch folder (stores, logs)")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    from engine.config import default_model_dir

    default = default_model_dir()
    model = Path(args.model).expanduser() if args.model else default
    if model is None or not (model / "model.json").is_file():
        print(
            "error: no model bundle: pass --model DIR (no default bundle in the models folder; "
            "`make bench` uses resources/models)",
            file=sys.stderr,
        )
        return 2
    model = model.resolve()
    only = [n.strip() for o in args.only for n in o.split(",") if n.strip()]
    unknown = set(only) - set(NAMES)
    if unknown:
        print(f"error: unknown benchmark(s) {sorted(unknown)}; choose from {NAMES}", file=sys.stderr)
        return 2
    variants = {}
    for v in args.variant:
        name, sep, d = v.partition("=")
        if not sep or not name or not (Path(d) / "model.json").is_file():
            print(f"error: --variant {v!r}: expected NAME=DIR with DIR a model bundle", file=sys.stderr)
            return 2
        variants[name] = Path(d)
    tmp = ROOT / "bench" / "tmp"
    results = Path(args.results) if args.results else (tmp / "results" if args.quick else ROOT / "bench" / "results")
    doc = Path(args.doc) if args.doc else (tmp / "performance.md" if args.quick else ROOT / "docs" / "performance.md")
    tmp.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="work-", dir=tmp))
    meta = model_meta(model)
    machine = machine_info()
    model_info = {
        "name": meta["name"],
        "version": meta["version"],
        "path": str(model),
        "architecture": meta.get("architecture"),
        "embed_dim": meta["embed_dim"],
        "image_size": meta["image_size"],
        "hash_bits": meta.get("hash_bits"),
        "is_default": default is not None and Path(default).resolve() == model,
    }
    ctx = Ctx(
        model=model,
        quick=args.quick,
        results_dir=results,
        work=work,
        checkpoint=Path(args.checkpoint) if args.checkpoint else None,
        model_is_default=model_info["is_default"],
        mr_images=args.mr_images,
        variants=variants,
    )
    ctx.log(
        f"bench: model {meta['name']} {meta['version']} ({model}); {machine['cpu_model']}, "
        f"{machine['usable_cores']} cores, load {machine['loadavg'][0]:.2f}; results -> {results}"
    )
    failed = []
    t_all = time.perf_counter()
    try:
        for mod in report.MODULES:
            if only and mod.NAME not in only:
                continue
            ctx.log(f"== {mod.NAME}: {mod.TITLE}")
            (work / mod.NAME).mkdir(exist_ok=True)
            la0, t0 = loadavg(), time.perf_counter()
            try:
                res = mod.run(ctx)
            except Exception as exc:  # noqa: BLE001 - one failed benchmark must not hide the others
                traceback.print_exc()
                res = {"error": f"{type(exc).__name__}: {' '.join(str(exc).split())[:500]}"}
                failed.append(mod.NAME)
            res = {
                "benchmark": mod.NAME,
                "title": mod.TITLE,
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "seconds": time.perf_counter() - t0,
                "quick": args.quick,
                "command": ctx.cmd_for(mod.NAME),
                "full_command": " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv]),
                "loadavg_before": la0,
                "loadavg_after": loadavg(),
                "machine": machine,
                "model": model_info,
                "code": code_info(),
                "provider": _provider(res),
                **res,
            }
            write_json(results / f"{mod.NAME}.json", rnd(res, 4))
            png = results / f"{mod.NAME}.png"
            if "error" not in res:
                try:
                    if not mod.plot(res, png) and png.exists():
                        png.unlink()
                except Exception:  # noqa: BLE001 - a plot failure must not lose the numbers
                    traceback.print_exc()
            ctx.log(f"== {mod.NAME} done in {res['seconds']:.0f} s")
    finally:
        if args.keep_work:
            ctx.log(f"scratch kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    report.write(results, doc)
    ctx.log(
        f"bench: {time.perf_counter() - t_all:.0f} s total; page {doc}"
        + (f"; FAILED: {', '.join(failed)}" if failed else "")
    )
    return 1 if failed else 0


def _provider(res: dict) -> str | None:
    for key in ("pure_provider", "provider"):
        if res.get(key):
            return res[key]
    for r in res.get("rows", []):
        if r.get("provider") and not str(r["provider"]).startswith("torch"):
            return r["provider"]
    return None


if __name__ == "__main__":
    raise SystemExit(main())
