"""Distributed indexing on Ray (``index-many --ray``, engine/ray_index.py) against in-process indexing.

Real components throughout: the shipped model, real rasters of ``$RSITR_SHARED/rasters``, a real 2-node Ray
cluster started inside a network + PID namespace the test creates (every Ray connection stays on loopback; the
cluster dies with the namespace), a real Lance table (the ``scale`` extra's install on a fresh venv: in
tests/engine/test_packaging.py). The cluster runs are done once per module (tests/engine/ray_cluster_job.py) and
the tests below assert on their outcome.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

from tests.wheelhouse import PROJECT_ROOT

RASTERS = ("RGB.byte.tif", "naip_2020.tif", "cogeo.tif", "world.rgb.tif")
PARAMS = {"tile": 128, "chunk_tiles": 16, "batch_size": 8}
COMMIT_CHUNKS = 2  # the API runs: 4 waves of 2 chunks (cancel after one, kill after another, resume)
N_CHUNKS = 8  # of the 4 rasters at PARAMS (107 grid windows)
# the cluster runs take ~100 s on 2 cores shared with a training job; the first scale install downloads ~250 MB
pytestmark = pytest.mark.timeout(900)


def _can_unshare() -> str | None:
    """None when this runner can create network + PID namespaces, else the reason it cannot."""
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return "unshare/ip not installed"
    run = subprocess.run(
        ["unshare", "--net", "--pid", "--fork", "--mount-proc", "true"], capture_output=True, text=True, timeout=30
    )
    return None if run.returncode == 0 else f"cannot create a network namespace here: {run.stderr.strip()[:200]}"


def _rasters(shared: Path) -> list[str]:
    return [str(shared / "rasters" / r) for r in RASTERS]


@pytest.fixture(scope="module")
def cluster_runs(shared, tmp_path_factory) -> dict:
    """The namespace job's results (CLI run, cancelled + killed + resumed API runs) and its folders."""
    pytest.importorskip("ray", reason="the scale extra is not installed (make setup installs it)")
    reason = _can_unshare()
    if reason:
        pytest.skip(reason)
    work = tmp_path_factory.mktemp("ray")
    ray_temp = Path(tempfile.mkdtemp(prefix="rr", dir="/tmp"))  # short: Ray's socket paths have a length limit
    spec = {
        "rasters": _rasters(shared),
        "params": PARAMS,
        "commit_chunks": COMMIT_CHUNKS,
        "cli_commit_chunks": N_CHUNKS,  # the CLI run: one wave, one commit
        "ray_cache": str(work / "ray_cache"),
        "kill_cache": str(work / "kill_cache"),
        "ray_temp": str(ray_temp),
        "work": str(work),
    }
    (work / "spec.json").write_text(json.dumps(spec))
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0", "PYTHONPATH": str(PROJECT_ROOT)}
    cmd = ["unshare", "--net", "--pid", "--fork", "--mount-proc", "--kill-child", sys.executable]
    cmd += ["-m", "tests.engine.ray_cluster_job", str(work / "out.json"), str(work / "spec.json")]
    try:
        run = subprocess.run(cmd, capture_output=True, text=True, timeout=420, env=env, cwd=PROJECT_ROOT)
    finally:
        shutil.rmtree(ray_temp, ignore_errors=True)
    assert (work / "out.json").is_file(), run.stderr[-3000:]
    out = json.loads((work / "out.json").read_text())
    assert "error" not in out, out["error"]
    return {**out, "work": work, "spec": spec}


@pytest.fixture(scope="module")
def local_cache(shared, tmp_path_factory) -> Path:
    """The same rasters indexed in-process (no --ray) by the CLI; asserts Ray and Lance were never imported."""
    cache = tmp_path_factory.mktemp("local")
    code = (
        "import sys; from engine.cli import main; rc = main(sys.argv[1:]); "
        "print('IMPORTED', [m for m in ('ray', 'lance') if m in sys.modules]); sys.exit(rc)"
    )
    args = ["index-many", *_rasters(shared), "--catalog", "cat", "--quiet"]
    args += ["--tile", str(PARAMS["tile"]), "--chunk-tiles", str(PARAMS["chunk_tiles"])]
    args += ["--batch-size", str(PARAMS["batch_size"])]
    env = {**os.environ, "RSITR_CACHE": str(cache)}
    run = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=300, env=env)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "IMPORTED []" in run.stdout, run.stdout  # the embedded default never imports Ray or Lance
    return cache


def _store_rows(cache: Path, catalog: str) -> dict[str, dict]:
    """Per member raster: the store's embeddings, windows and codes, as the search path reads them."""
    from engine.catalog import read_catalog
    from engine.store import open_store

    m = read_catalog(catalog, cache / "catalogs")
    out = {}
    for member in m["members"]:
        st = open_store(member["store_id"], cache / "stores")
        out[Path(member["raster"]).name] = {
            "store_id": st.store_id,
            "emb": np.asarray(st.embeddings),
            "windows": np.asarray(st.windows),
            "codes": np.asarray(st.codes),
            "n_skipped": st.manifest["n_skipped"],
        }
    return out


def _assert_identical(a: dict, b: dict) -> None:
    assert sorted(a) == sorted(b) == sorted(RASTERS)
    for name in a:
        x, y = a[name], b[name]
        assert x["store_id"] == y["store_id"], name
        assert x["emb"].dtype == y["emb"].dtype == np.float16 and x["emb"].shape == y["emb"].shape, name
        assert x["emb"].tobytes() == y["emb"].tobytes(), f"{name}: embeddings differ"
        assert np.array_equal(x["windows"], y["windows"]), name
        assert np.array_equal(x["codes"], y["codes"]), name
        assert x["n_skipped"] == y["n_skipped"], name


def test_cli_ray_rows_bit_identical_to_in_process(cluster_runs, local_cache):
    cli = cluster_runs["cli"]
    assert cli["rc"] == 0, cli["stderr"]
    # no Python tracebacks or Ray Data log lines; Ray's C++ core may log a line of its own (``[date ...] x.cc:N:``:
    # this namespace has no route outside; Ray Data's actor constructor arguments live in the object store)
    lines = [ln for ln in cli["stderr"].splitlines() if not re.match(r"^\[\d{4}-\d\d-\d\d [^]]+\] \w+\.cc:\d+: ", ln)]
    assert lines == [], lines
    data = json.loads(cli["stdout"])
    assert data["n_rasters"] == len(RASTERS) and data["table"]["chunks_skipped"] == 0
    ray_cache = Path(cluster_runs["spec"]["ray_cache"])
    _assert_identical(_store_rows(ray_cache, "cat"), _store_rows(local_cache, "cat"))
    # the Lance table holds exactly the stores' rows (the fixed-size float16 schema, one row per window)
    from engine.tile_table import TileTable

    table = TileTable.of_catalog(ray_cache / "catalogs" / "cat")
    ds = table.dataset()
    assert str(ds.schema.field("embedding").type) == "fixed_size_list<item: halffloat>[256]"
    for name, rows in _store_rows(local_cache, "cat").items():
        chunks = table.chunks_of(rows["store_id"], 256)
        emb = np.concatenate([c.emb for c in chunks.values()])
        assert emb.tobytes() == rows["emb"].tobytes(), name


def test_two_nodes_did_work_one_catalog_version_and_search_ranks_rasters_together(cluster_runs, local_cache):
    from engine.catalog import read_catalog
    from engine.service import Engine
    from engine.tile_table import TileTable

    ray_cache = Path(cluster_runs["spec"]["ray_cache"])
    table = TileTable.of_catalog(ray_cache / "catalogs" / "cat")
    nodes = table.node_ids()
    assert len(nodes) == N_CHUNKS and len(set(nodes.values())) == 2, nodes  # every chunk once; both nodes embedded
    m = read_catalog("cat", ray_cache / "catalogs")
    assert m["version"] == 1 and table.version == 1  # one catalog version made from one table commit
    assert (
        m["n_tiles"]
        == sum(x["n_tiles"] for x in m["members"])
        == read_catalog("cat", local_cache / "catalogs")["n_tiles"]
    )
    res = Engine(root=ray_cache / "stores").search("a river crossing farmland", catalog="cat", k=40)
    rasters = {Path(r["raster"]).name for r in res["results"]}
    assert len(res["results"]) == 40 and len(rasters) >= 2, rasters
    scores = [r["score"] for r in res["results"]]
    assert scores == sorted(scores, reverse=True)  # ranked together, not per raster


def test_cancel_then_killed_worker_then_resume_no_duplicate_no_missing_tile(cluster_runs, local_cache):
    from engine.tile_table import TileTable

    api = cluster_runs["api"]
    assert api["cancel"].startswith("Cancelled:"), api["cancel"]
    assert api["version_after_cancel"] == 1 and api["chunks_after_cancel"] == COMMIT_CHUNKS  # one whole wave kept
    total = api["progress"][0][1]
    assert api["progress"][0][0] == 0 and 0 < api["progress"][1][0] < total == 107  # windows done, after one wave
    assert api["kill"].get("pid"), api  # an encoder actor's process was SIGKILLed mid-run
    assert api["attempts"][-1]["ok"], api["attempts"]
    kill_cache = Path(cluster_runs["spec"]["kill_cache"])
    table = TileTable.of_catalog(kill_cache / "catalogs" / "kill")
    rows = table.dataset().to_table(columns=["store_id", "window"])
    keys = list(zip(rows.column("store_id").to_pylist(), rows.column("window").to_pylist(), strict=True))
    assert len(keys) == len(set(keys)) == total  # every window exactly once: no duplicate, no missing tile
    local = _store_rows(local_cache, "cat")
    _assert_identical(_store_rows(kill_cache, "kill"), local)


def test_bad_input_is_one_line_exit_2(shared, tmp_path):
    env = {**os.environ, "RSITR_CACHE": str(tmp_path)}
    cases = [
        (["index-many", str(tmp_path / "missing.tif"), "--catalog", "c", "--ray"], "source not found"),
        (["index-many", *_rasters(shared)[:1], "--catalog", "c", "--ray", "--ray-workers", "0"], "--ray-workers"),
        (["index-many", *_rasters(shared)[:1], "--catalog", "c", "--ray", "127.0.0.1:1"], "no Ray cluster reachable"),
        (["index-many", *_rasters(shared)[:1], "--catalog", "c", "--ray", "somewhere"], "host:port"),
    ]
    for args, words in cases:
        run = subprocess.run(
            [sys.executable, "-m", "engine", *args], capture_output=True, text=True, timeout=120, env=env
        )
        assert run.returncode == 2 and words in run.stderr, (args, run.stderr)
        assert len(run.stderr.strip().splitlines()) == 1 and "Traceback" not in run.stderr, run.stderr
