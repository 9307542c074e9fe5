"""The catalog's Lance table of tile rows written by distributed indexing (docs/contracts.md §2, "Tile rows table").

One row per grid window of every chunk indexed: ``(store_id, chunk, window)`` identifies it; kept tiles carry
their float16 embedding and hash code, skipped windows (too many invalid pixels) carry nulls there. A chunk is
either wholly in the table or absent (rows are appended by atomic Lance commits of whole chunks), so the chunks
present are the ones done. Needs the ``scale`` extra (pylance, pyarrow).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.indexer import ChunkRows

TABLE_DIR = "rows.lance"


def table_schema(embed_dim: int, code_bytes: int):
    """The table's Arrow schema (explicit fixed-size lists: a vector index needs them, plain lists become
    ``LargeList``)."""
    import pyarrow as pa

    return pa.schema(
        [
            pa.field("store_id", pa.string(), nullable=False),
            pa.field("chunk", pa.int32(), nullable=False),
            pa.field("window", pa.int64(), nullable=False),
            pa.field("valid_fraction", pa.float32(), nullable=False),
            pa.field("embedding", pa.list_(pa.float16(), embed_dim)),
            pa.field("codes", pa.list_(pa.uint8(), code_bytes)),
            pa.field("node_id", pa.string(), nullable=False),
        ]
    )


def chunk_table(store_id: str, rows: ChunkRows, node_id: str, code_bytes: int):
    """Arrow table of one chunk: its kept tiles and its skipped windows (null embedding), ordered by window."""
    import pyarrow as pa

    d = rows.emb.shape[1]
    n, m = len(rows.index), len(rows.skipped)
    windows = np.concatenate([rows.index, rows.skipped]).astype(np.int64)
    order = np.argsort(windows, kind="stable")
    mask = np.concatenate([np.zeros(n, bool), np.ones(m, bool)])[order]
    emb = np.concatenate([rows.emb, np.zeros((m, d), np.float16)])[order]
    codes = np.concatenate([rows.codes.reshape(n, code_bytes), np.zeros((m, code_bytes), np.uint8)])[order]
    valid = np.concatenate([rows.valid, np.zeros(m, np.float32)])[order]
    pa_mask = pa.array(mask)
    return pa.Table.from_arrays(
        [
            pa.array([store_id] * (n + m), pa.string()),
            pa.array(np.full(n + m, rows.chunk, np.int32)),
            pa.array(windows[order]),
            pa.array(valid.astype(np.float32)),
            pa.FixedSizeListArray.from_arrays(pa.array(emb.ravel(), pa.float16()), d, mask=pa_mask),
            pa.FixedSizeListArray.from_arrays(pa.array(codes.ravel(), pa.uint8()), code_bytes, mask=pa_mask),
            pa.array([node_id] * (n + m), pa.string()),
        ],
        schema=table_schema(d, code_bytes),
    )


def _fsl_numpy(col, width: int) -> np.ndarray:
    """A (combined) fixed-size-list column as a ``[n, width]`` array (null slots included)."""
    arr = col.combine_chunks()
    return arr.values.slice(arr.offset * width, len(arr) * width).to_numpy(zero_copy_only=False).reshape(-1, width)


@dataclass
class TileTable:
    """The Lance table at ``path`` (absent until the first commit)."""

    path: Path

    @classmethod
    def of_catalog(cls, catalog_path: Path) -> TileTable:
        return cls(Path(catalog_path) / TABLE_DIR)

    def dataset(self):
        import lance

        return lance.dataset(str(self.path)) if (self.path / "_versions").is_dir() else None

    @property
    def version(self) -> int:
        ds = self.dataset()
        return int(ds.version) if ds is not None else 0

    def append(self, rows) -> int:
        """Commit the Arrow table ``rows`` (whole chunks) as one atomic Lance append; the new version."""
        import lance

        mode = "append" if (self.path / "_versions").is_dir() else "create"
        return int(lance.write_dataset(rows, str(self.path), schema=rows.schema, mode=mode).version)

    def done_chunks(self, store_ids: list[str]) -> dict[str, set[int]]:
        """The chunks present per store (a chunk is committed whole or not at all)."""
        out: dict[str, set[int]] = {s: set() for s in store_ids}
        ds = self.dataset()
        if ds is None or not store_ids:
            return out
        tbl = ds.to_table(columns=["store_id", "chunk"], filter=_in("store_id", store_ids))
        for sid, c in zip(tbl.column("store_id").to_pylist(), tbl.column("chunk").to_pylist(), strict=True):
            out[sid].add(int(c))
        return out

    def chunks_of(self, store_id: str, embed_dim: int) -> dict[int, ChunkRows]:
        """All rows of one store, as ``ChunkRows`` per chunk (windows ascending)."""
        ds = self.dataset()
        if ds is None:
            return {}
        tbl = ds.to_table(filter=_in("store_id", [store_id])).sort_by([("chunk", "ascending"), ("window", "ascending")])
        if tbl.num_rows == 0:
            return {}
        chunk = tbl.column("chunk").to_numpy()
        window = tbl.column("window").to_numpy()
        valid = tbl.column("valid_fraction").to_numpy()
        kept = ~tbl.column("embedding").is_null().to_numpy(zero_copy_only=False)
        code_bytes = tbl.schema.field("codes").type.list_size
        emb = _fsl_numpy(tbl.column("embedding"), embed_dim)
        codes = _fsl_numpy(tbl.column("codes"), code_bytes)
        out = {}
        for c in np.unique(chunk):
            sel = chunk == c
            k, s = sel & kept, sel & ~kept
            out[int(c)] = ChunkRows(
                int(c),
                window[k].astype(np.int64),
                valid[k].astype(np.float32),
                emb[k].astype(np.float16),
                codes[k].astype(np.uint8),
                window[s].astype(np.int64),
            )
        return out

    def node_ids(self, store_ids: list[str] | None = None) -> dict[tuple[str, int], str]:
        """(store id, chunk) -> the Ray node that embedded it."""
        ds = self.dataset()
        if ds is None:
            return {}
        flt = _in("store_id", store_ids) if store_ids else None
        tbl = ds.to_table(columns=["store_id", "chunk", "node_id"], filter=flt)
        cols = (tbl.column(n).to_pylist() for n in ("store_id", "chunk", "node_id"))
        return {(s, int(c)): nd for s, c, nd in zip(*cols, strict=True)}


def _in(column: str, values: list[str]) -> str:
    """A Lance filter ``column IN (...)`` (store ids are 16 hex characters, never quoted text)."""
    if not all(v.isalnum() for v in values):
        raise ValueError("store ids are hex strings")
    return f"{column} IN ({', '.join(repr(v) for v in values)})"
