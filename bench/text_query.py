"""5. Text query latency (tokenise + encode), cold and warm.

Cold: a fresh Python process per sample imports the engine, loads the bundle (``Encoder`` runs a one-word
probe through both graphs while loading) and times its first real query; the median over processes is
reported with the load time. The OS file cache is warm (the bundle files were read before). Warm: one
loaded encoder, distinct queries never seen before (no LRU cache hits), each timed once; tokenisation alone
and the cache-hit path are timed separately.
"""

from __future__ import annotations

import itertools
import json
import time
from pathlib import Path

import numpy as np

from bench.common import PY, Ctx, bench_env, fmt, median, run_measured, summarise

NAME = "text"
TITLE = "Text query latency (tokenise + encode)"

CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
from engine.bundle import load_bundle
from engine.encoder import Encoder
t1 = time.perf_counter()
enc = Encoder(load_bundle(sys.argv[1]))
t2 = time.perf_counter()
enc.embed_query("a road running through a dense green forest")
t3 = time.perf_counter()
enc.embed_query("a river with a bridge near a small town")
t4 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "load_s": t2 - t1, "first_ms": (t3 - t2) * 1000,
                  "second_ms": (t4 - t3) * 1000, "provider": enc.provider}))
"""


def run(ctx: Ctx) -> dict:
    from bench.http_load import query_texts
    from engine.bundle import load_bundle
    from engine.encoder import Encoder

    n_cold = 2 if ctx.quick else 5
    cold = []
    for _ in range(n_cold):
        r = run_measured([PY, "-c", CHILD, str(ctx.model)], env=bench_env(), timeout=300)
        if r["rc"] != 0:
            raise RuntimeError(f"cold text child failed: {r['stderr'][-400:]}")
        cold.append({**json.loads(r["stdout"].strip().splitlines()[-1]), "process_wall_s": r["wall_s"]})
    enc = Encoder(load_bundle(ctx.model))
    n = 30 if ctx.quick else 100
    rounds = 2 if ctx.quick else 3
    texts = query_texts()
    warm, tok, hit, per_round = [], [], [], []
    used: list[str] = []
    for _ in range(rounds):
        batch = list(itertools.islice(texts, n))
        used += batch
        lat = []
        for t in batch:
            t0 = time.perf_counter()
            enc.embed_query(t)
            lat.append((time.perf_counter() - t0) * 1000)
        warm += lat
        per_round.append(median(lat))
    for t in used[:n]:
        t0 = time.perf_counter()
        enc.tokenizer.encode_batch([t])
        tok.append((time.perf_counter() - t0) * 1000)
        t0 = time.perf_counter()
        enc.embed_query(t)  # cached
        hit.append((time.perf_counter() - t0) * 1000)
    lens = [len(e.ids) - e.ids.count(enc.meta.pad_token_id) for e in enc.tokenizer.encode_batch(used[:n])]
    res = {
        "cold": {
            "samples": cold,
            "first_query_ms_median": median([c["first_ms"] for c in cold]),
            "load_s_median": median([c["load_s"] for c in cold]),
            "import_s_median": median([c["import_s"] for c in cold]),
            "second_query_ms_median": median([c["second_ms"] for c in cold]),
            "process_wall_s_median": median([c["process_wall_s"] for c in cold]),
        },
        "warm_ms": summarise(warm),
        "warm_p50_per_round": per_round,
        "tokenise_ms": summarise(tok),
        "cache_hit_ms": summarise(hit),
        "queries_per_round": n,
        "rounds": rounds,
        "mean_tokens": float(np.mean(lens)),
        "context_length": enc.meta.context_length,
        "provider": enc.provider,
        "goals": [],
    }
    ctx.log(
        f"text: cold first query {res['cold']['first_query_ms_median']:.1f} ms, warm p50 {res['warm_ms']['p50']:.2f} ms"
    )
    return res


def markdown(res: dict) -> list[str]:
    c, w = res["cold"], res["warm_ms"]
    return [
        "| figure | value |",
        "| --- | --- |",
        f"| cold: first query after load, p50 over {len(c['samples'])} processes (ms) | "
        f"{c['first_query_ms_median']:.1f} |",
        f"| cold: second query in that process (ms) | {c['second_query_ms_median']:.1f} |",
        f"| cold: bundle load incl. probe (s) / engine import (s) | {c['load_s_median']:.2f} / "
        f"{c['import_s_median']:.2f} |",
        f"| warm: p50 / p95, distinct queries (ms) | {w['p50']:.2f} / {w['p95']:.2f} |",
        f"| warm: p50 of each round (ms) | {', '.join(fmt(v, 2) for v in res['warm_p50_per_round'])} |",
        f"| tokenise only p50 (ms) | {res['tokenise_ms']['p50']:.3f} |",
        f"| repeated query (LRU cache hit) p50 (ms) | {res['cache_hit_ms']['p50']:.3f} |",
        "",
        f"{res['rounds']} rounds x {res['queries_per_round']} distinct generated queries (mean "
        f"{res['mean_tokens']:.1f} tokens, context {res['context_length']}), provider {res['provider']}. "
        "No goal in issue 7 beyond reporting p50 cold and warm.",
    ]


def plot(res: dict, path: Path) -> bool:
    return False
