"""Distributed indexing on Ray (``index-many --ray``): window reads as Ray tasks, an actor pool holding the ONNX
encoder, rows appended to the catalog's Lance table (engine/tile_table.py); the member stores are then built from
the table on the driver, so the catalog's search path is the in-process one.

The same ``plan_index``, ``read_chunk`` and ``embed_chunk`` (engine/indexer.py) as in-process indexing, with the
same batches, so the rows are bit-identical. One pipeline per job; the driver commits whole chunks as they stream
in (one atomic Lance append per ``chunks_per_commit`` chunks): a re-run skips the chunks in the table, so a killed
job or worker leaves no duplicate and no gap after a resume. Needs the ``scale`` extra; nothing here is imported
by the in-process path.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.encoder import Encoder
from engine.errors import BadInput, Cancelled, CorruptData
from engine.indexer import (
    IndexParams,
    IndexPlan,
    TileBatch,
    chunk_range,
    embed_chunk,
    n_chunks,
    plan_index,
    read_chunk,
)
from engine.store import StoreWriter, read_manifest, store_lock

SCALE_HINT = 'distributed indexing needs the scale extra: pip install "rsitr[scale]"'
Progress = Callable[[int, int], None]


@dataclass
class RayParams:
    """How the Ray job runs. ``address``: a cluster (``host:port``); None or "" connects to ``$RAY_ADDRESS`` or
    starts a local Ray. Fractional CPUs keep readers and encoders schedulable on a 2-core node."""

    address: str | None = None
    workers: int = 2  # encoder actors (the actor pool's size)
    worker_cpus: float = 0.5  # logical CPUs per encoder actor
    reader_cpus: float = 0.25  # logical CPUs per window-read task
    gpus_per_worker: float | None = None  # None: 1 when the cluster has GPUs, else 0
    threads_per_worker: int = 1  # ONNX Runtime intra-op threads per encoder actor
    chunks_per_commit: int = 8  # whole chunks per Lance commit: the unit of progress, cancel and resume

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise BadInput(f"--ray-workers must be at least 1, got {self.workers}")
        if self.chunks_per_commit < 1:
            raise BadInput("chunks_per_commit must be positive")
        if self.worker_cpus <= 0 or self.reader_cpus <= 0:
            raise BadInput("worker_cpus and reader_cpus must be positive")


@dataclass
class RayIndexResult:
    """What a distributed run did: the member store ids (in source order) and the table's state."""

    store_ids: list[str]
    table_path: Path
    table_version: int
    chunks_run: int
    chunks_skipped: int
    tiles_embedded: int
    seconds: float


def require_scale() -> None:
    """One clear line when the ``scale`` extra is missing."""
    try:
        import lance  # noqa: F401
        import pyarrow  # noqa: F401
        import ray  # noqa: F401
    except ImportError as exc:
        raise BadInput(f"{SCALE_HINT} ({exc.name} is not installed)") from None


# ---------------------------------------------------------------- Ray stages (run on the workers)
def _read_chunks(batch, plans: dict[str, IndexPlan], meta, params: IndexParams):
    """Ray task: read + preprocess whole chunks (``read_chunk``); one row per chunk, pixels as float32 bytes."""
    import pyarrow as pa

    from engine.raster import open_raster

    out: dict[str, list] = {k: [] for k in ("store_id", "chunk", "index", "valid", "skipped", "sizes", "pixels")}
    for sid, c in zip(batch.column("store_id").to_pylist(), batch.column("chunk").to_pylist(), strict=True):
        plan = plans[sid]
        with open_raster(plan.info.path) as src:
            batches = list(read_chunk(src, plan, meta, params, c))
        pix = [b.pixels for b in batches if b.pixels is not None]
        out["store_id"].append(sid)
        out["chunk"].append(c)
        out["index"].append([i for b in batches for i in b.index])
        out["valid"].append([v for b in batches for v in b.valid])
        out["skipped"].append(batches[-1].skipped)
        out["sizes"].append([len(b.index) for b in batches if b.pixels is not None])
        out["pixels"].append(np.concatenate(pix).astype(np.float32, copy=False).tobytes() if pix else b"")
    types = {
        "store_id": pa.string(),
        "chunk": pa.int32(),
        "index": pa.list_(pa.int64()),
        "valid": pa.list_(pa.float32()),
        "skipped": pa.list_(pa.int64()),
        "sizes": pa.list_(pa.int32()),
        "pixels": pa.large_binary(),
    }
    return pa.table({k: pa.array(v, types[k]) for k, v in out.items()})


class ChunkEmbedder:
    """Ray actor: holds one ONNX encoder; turns read chunks into table rows with ``embed_chunk``."""

    def __init__(self, bundle_path: str, threads: int, code_bytes: int) -> None:
        import ray

        from engine.bundle import load_bundle

        self.encoder = Encoder(load_bundle(bundle_path), threads=threads)
        self.code_bytes = code_bytes
        self.node_id = ray.get_runtime_context().get_node_id()

    def __call__(self, batch):
        import pyarrow as pa

        from engine.tile_table import chunk_table

        s = self.encoder.meta.image_size
        tables = []
        for r in batch.to_pylist():
            pixels = np.frombuffer(r["pixels"], np.float32).reshape(-1, 3, s, s)
            bounds = np.cumsum([0, *r["sizes"]])
            tiles = [
                TileBatch(r["chunk"], r["index"][a:b], r["valid"][a:b], pixels[a:b])
                for a, b in zip(bounds[:-1], bounds[1:], strict=True)
            ]
            tiles.append(TileBatch(r["chunk"], [], [], None, list(r["skipped"]), last=True))
            rows = embed_chunk(self.encoder, r["chunk"], tiles)
            tables.append(chunk_table(r["store_id"], rows, self.node_id, self.code_bytes))
        return pa.concat_tables(tables)


# ---------------------------------------------------------------- driver
def check_reachable(address: str | None, timeout: float = 5.0) -> None:
    """A ``host:port`` cluster address (or ``$RAY_ADDRESS``) must accept a TCP connection (Ray itself retries an
    unreachable one for minutes, then exits the process)."""
    address = address or os.environ.get("RAY_ADDRESS")
    if not address or address == "auto" or "://" in address:
        return
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise BadInput(f"Ray address must be host:port, got {address!r}")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        raise BadInput(
            f"no Ray cluster reachable at {address} ({exc.strerror or exc}); start one with ray start"
        ) from None


def _connect(address: str | None) -> bool:
    """Connect to (or start) Ray; True when this call started it (and so shuts it down)."""
    import ray

    if ray.is_initialized():
        return False
    logging.getLogger("ray").setLevel(logging.ERROR)
    kwargs = {"logging_level": "ERROR", "log_to_driver": False}
    try:
        ray.init(address=address or None, **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = address or "a local Ray"
        raise BadInput(f"cannot connect to Ray at {where}: {' '.join(str(exc).split())[:200]}") from None
    return True


def _pipeline(
    items: list[dict],
    plans: dict[str, IndexPlan],
    encoder: Encoder,
    params: IndexParams,
    rp: RayParams,
    code_bytes: int,
):
    """One Ray Data pipeline over ``items`` (store id, chunk): read tasks, then the encoder actor pool, which lives
    for the whole job (one bundle load per actor, not per commit)."""
    # Ray Data (re)configures its loggers at import and per execution; this variable wins each time (no per-run
    # INFO/WARNING lines on the CLI's stderr); a user's own setting is kept
    os.environ.setdefault("RAY_DATA_LOG_LEVEL", "ERROR")
    import ray

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    gpus = rp.gpus_per_worker
    if gpus is None:
        gpus = 1 if ray.cluster_resources().get("GPU", 0) >= 1 else 0
    ds = ray.data.from_items(items, override_num_blocks=len(items))
    ds = ds.map_batches(
        _read_chunks,
        fn_kwargs={"plans": plans, "meta": encoder.meta, "params": params},
        batch_size=1,
        batch_format="pyarrow",
        num_cpus=rp.reader_cpus,
    )
    return ds.map_batches(
        ChunkEmbedder,
        fn_constructor_kwargs={
            "bundle_path": str(encoder.bundle.path),
            "threads": rp.threads_per_worker,
            "code_bytes": code_bytes,
        },
        batch_size=1,
        batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(size=min(rp.workers, len(items))),  # no idle actors on small jobs
        num_cpus=rp.worker_cpus,
        num_gpus=gpus,
    )


def _build_store(root: Path, plan: IndexPlan, params: IndexParams, chunks: dict, embed_dim: int) -> None:
    """Write store ``plan.store_id`` from its table rows (the same files in-process indexing writes)."""
    from engine.indexer import _index

    total = n_chunks(plan, params)
    if sorted(chunks) != list(range(total)):
        missing = sorted(set(range(total)) - set(chunks))
        raise CorruptData(f"tile table lacks chunks {missing[:5]} of {plan.info.path}; re-run index-many --ray")
    for c, rows in chunks.items():
        got = np.sort(np.concatenate([rows.index, rows.skipped]))
        if not np.array_equal(got, np.arange(chunk_range(plan, params, c).start, chunk_range(plan, params, c).stop)):
            raise CorruptData(f"tile table chunk {c} of {plan.info.path} has duplicate or missing windows")
    path = root / plan.store_id
    with store_lock(root, plan.store_id):
        writer = StoreWriter(path, plan.manifest, params.chunk_tiles)
        for c in range(total):
            r = chunks[c]
            writer.write_chunk(c, r.index, r.valid, r.emb, r.skipped, r.codes)
        info = plan.info
        writer.finalize(total, plan.grid, info.transform, info.crs_wkt, info.authid, embed_dim)
        _index(path)


def _complete(root: Path, store_id: str) -> bool:
    try:
        m = read_manifest(root / store_id)
    except Exception:  # noqa: BLE001 - any unreadable store is rebuilt
        return False
    return m.get("state") == "complete" and (root / store_id / "embeddings.npy").is_file()


def _embed_streamed(todo, by_id, encoder, params, rp, table, progress, cancel, windows_done: int, total: int) -> None:
    """Run the chunks ``todo`` through one Ray pipeline; the driver commits whole chunks to the Lance table,
    ``rp.chunks_per_commit`` per append, as they stream in (the unit of progress, cancel and resume).

    One pipeline rather than one per commit: a pipeline per commit re-started the actor pool (a bundle load per
    actor) each time, which cost more than the embedding itself on the 2,000-tile benchmark."""
    import pyarrow as pa
    import pyarrow.compute as pc

    d = encoder.meta.embed_dim
    code_bytes = int(encoder.image_codes(np.zeros((1, d), np.float32)).shape[1])
    expected = {(s, c): len(chunk_range(by_id[s], params, c)) for s, c in todo}
    started = _connect(rp.address)
    parts: dict[tuple[str, int], list] = {}  # rows received per chunk, until the chunk is whole
    whole: list = []  # whole chunks not committed yet
    received: set[tuple[str, int]] = set()

    def commit() -> None:
        nonlocal windows_done
        table.append(pa.concat_tables(t for _, t in whole))
        windows_done += sum(expected[key] for key, _ in whole)
        whole.clear()
        if progress:
            progress(windows_done, total)

    try:
        items = [{"store_id": s, "chunk": c} for s, c in todo]
        ds = _pipeline(items, {s: by_id[s] for s, _ in todo}, encoder, params, rp, code_bytes)
        # closed on cancel and errors too: Ray Data shuts its executor (actors, read tasks) down when the batch
        # generator closes, which an exception's traceback would otherwise delay until garbage collection
        with closing(iter(ds.iter_batches(batch_size=None, batch_format="pyarrow"))) as stream:
            for batch in stream:
                if cancel is not None and cancel.is_set():
                    raise Cancelled("distributed indexing cancelled; re-run to resume (committed chunks are kept)")
                sids, chunks = batch.column("store_id").to_pylist(), batch.column("chunk").to_pylist()
                for key in dict.fromkeys(zip(sids, chunks, strict=True)):  # one chunk per block in practice
                    if key in received:
                        continue  # a chunk delivered again (a retried task): its first delivery counts
                    mask = pc.and_(pc.equal(batch.column("store_id"), key[0]), pc.equal(batch.column("chunk"), key[1]))
                    parts.setdefault(key, []).append(batch.filter(mask))
                    n = sum(t.num_rows for t in parts[key])
                    if n > expected[key]:
                        raise CorruptData(f"chunk {key[1]} of store {key[0]} came back with {n} rows; re-run")
                    if n == expected[key]:
                        received.add(key)
                        whole.append((key, pa.concat_tables(parts.pop(key))))
                if len(whole) >= rp.chunks_per_commit:
                    commit()
        if whole:
            commit()
        if parts:
            raise CorruptData(f"{len(parts)} chunks came back incomplete from Ray; re-run index-many --ray")
    finally:
        if started:
            import ray

            ray.shutdown()


def index_on_ray(
    rasters: list[Path],
    encoder: Encoder,
    params: IndexParams,
    rp: RayParams,
    root: Path,
    table_path: Path,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
) -> RayIndexResult:
    """Embed every chunk of ``rasters`` not yet in the table at ``table_path`` on Ray, then build the member
    stores under ``root`` from the table. ``progress(done_windows, total_windows)`` after each commit. One job per
    table at a time (an inter-process lock next to it): two jobs never append the same chunk."""
    require_scale()
    from engine.tile_table import TileTable

    t0 = time.perf_counter()
    check_reachable(rp.address)
    plans = [plan_index(r, encoder, params) for r in rasters]
    by_id = {p.store_id: p for p in plans}
    table = TileTable(table_path)
    d = encoder.meta.embed_dim
    with store_lock(table_path.parent, table_path.name):
        done = table.done_chunks(list(by_id))
        todo = [(p.store_id, c) for p in plans for c in range(n_chunks(p, params)) if c not in done[p.store_id]]
        total = sum(len(p.grid) for p in plans)
        windows_done = total - sum(len(chunk_range(by_id[s], params, c)) for s, c in todo)
        if progress:
            progress(windows_done, total)
        if todo:
            _embed_streamed(todo, by_id, encoder, params, rp, table, progress, cancel, windows_done, total)
        embedded, run = 0, {s for s, _ in todo}
        for p in plans:
            if p.store_id not in run and _complete(root, p.store_id):
                continue
            chunks = table.chunks_of(p.store_id, d)
            embedded += sum(len(r.index) for r in chunks.values())
            _build_store(root, p, params, chunks, d)
        version = table.version
    return RayIndexResult(
        [p.store_id for p in plans],
        table.path,
        version,
        len(todo),
        sum(n_chunks(p, params) for p in plans) - len(todo),
        embedded,
        time.perf_counter() - t0,
    )
