"""Score every tile of a store with a linear scorer and rank: the exact path shared by query-by-example,
relevance feedback and score maps (text search keeps its own large-store paths in engine/search.py)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import shapely

from engine.errors import BadInput
from engine.search import SCAN_ROWS, Hit, aoi_in_crs
from engine.store import Store


@dataclass(frozen=True)
class QuerySpec:
    """What to rank by: a text query, example tiles (``positives``) and "no" tiles (``negatives``).

    Text alone: cosine with the text embedding. Examples alone: cosine with their mean (``mode`` "mean") or the
    best cosine over them ("each"). "No" tiles, text with examples, or ``classifier``: relevance feedback
    (engine/feedback.py), the text being the classifier's prior."""

    text: str | None = None
    positives: tuple = ()  # ExampleRef
    negatives: tuple = ()  # ExampleRef
    mode: str = "mean"
    classifier: bool = False

    @property
    def kind(self) -> str:
        if self.negatives or self.classifier or (self.text and self.positives):
            return "feedback"
        return "examples" if self.positives else "text"

    def label(self) -> str:
        """A short human-readable name (the response's ``query``)."""
        if self.kind == "text":
            return self.text or ""
        if self.kind == "examples":
            n = len(self.positives)
            return f"similar to {n} example{'s' if n != 1 else ''}"
        return f"{self.text or 'examples'} (+{len(self.positives)}/-{len(self.negatives)})"


@dataclass(frozen=True)
class LinearScorer:
    """``score(x) = link(max_j x . weights[:, j] + bias)`` for an L2-normalised embedding ``x``.

    One column and no bias, identity link: cosine with a query vector (text or the mean of examples).
    Several columns: each example its own query, a tile scores its best match. ``sigmoid``: a classifier's
    probability (relevance feedback)."""

    weights: np.ndarray  # float32 [D, m]
    bias: float = 0.0
    link: str = "identity"  # "identity" or "sigmoid"
    kind: str = "text"  # what built it: "text", "examples" or "feedback" (reported in responses)

    def __post_init__(self) -> None:
        w = np.asarray(self.weights, dtype=np.float32)
        object.__setattr__(self, "weights", w.reshape(w.shape[0], -1))
        if self.link not in ("identity", "sigmoid"):
            raise ValueError(f"unknown link {self.link!r}")

    @property
    def dim(self) -> int:
        return int(self.weights.shape[0])

    def __call__(self, emb: np.ndarray) -> np.ndarray:
        """Scores ``[n]`` float32 of a float32 block ``[n, D]``."""
        if self.weights.shape[1] == 1:  # a matrix-vector product, exactly as text search scores (search.py)
            z = emb @ self.weights[:, 0]
        else:
            z = (emb @ self.weights).max(axis=1)
        if self.bias:
            z = z + np.float32(self.bias)
        if self.link == "sigmoid":
            z = 1.0 / (1.0 + np.exp(-np.clip(z, -60.0, 60.0)))
        return z.astype(np.float32, copy=False)


def store_scores(store: Store, scorer: LinearScorer) -> np.ndarray:
    """Scores of every tile of ``store`` (float32 ``[n]``), in blocks when the embeddings are memory-mapped."""
    d = store.embeddings.shape[1]
    if d != scorer.dim:
        raise BadInput(f"store {store.store_id} has {d}-d embeddings, the query has {scorer.dim}")
    emb = store.dense()
    if emb.dtype == np.float32:
        return scorer(emb)
    out = np.empty(emb.shape[0], dtype=np.float32)
    for s in range(0, emb.shape[0], SCAN_ROWS):
        out[s : s + SCAN_ROWS] = scorer(np.asarray(emb[s : s + SCAN_ROWS], dtype=np.float32))
    return out


def rank_stores(
    stores: list[Store],
    scorer: LinearScorer,
    k: int,
    threshold: float | None = None,
    aoi: dict | None = None,
) -> list[Hit]:
    """Exact top-``k`` tiles over several stores (ties: store id, then tile id), like ``search_stores``."""
    if not 1 <= k <= 1000:
        raise BadInput(f"k must be between 1 and 1000, got {k}")
    hits: list[Hit] = []
    for st in stores:
        if st.embeddings.shape[0] == 0:
            continue
        scores = store_scores(st, scorer)
        ids = np.arange(len(scores))
        if aoi is not None:
            keep = shapely.intersects(aoi_in_crs(aoi, st.manifest["raster"]["crs_wkt"]), st.polygons())
            scores, ids = scores[keep], ids[keep]
        if threshold is not None:
            keep = scores >= threshold
            scores, ids = scores[keep], ids[keep]
        if len(scores) > k:
            top = np.argpartition(-scores, k - 1)[:k]
            scores, ids = scores[top], ids[top]
        hits.extend(Hit(float(s), st, int(i)) for s, i in zip(scores, ids, strict=True))
    hits.sort(key=lambda h: (-h.score, h.store.store_id, h.tile_id))
    return hits[:k]
