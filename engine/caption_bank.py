"""Caption banks: a team's own texts embedded with a bundle's text encoder, searched by describe.

File (``.npz``, docs/contracts.md §1): ``texts`` (str ``[M]``, unique), ``embeddings`` (float16 ``[M, D]``,
L2-normalised), ``model_name``, ``model_version`` (str scalars), ``embed_dim`` (int scalar); loaded with
``allow_pickle=False``; a bank whose ``model_name`` differs from the bundle's is rejected.

Sources (``python -m engine caption-bank build SOURCE --out F.npz``): a Karpathy-style JSON (``images[].sentences[]
.raw``, optional ``split`` filter), a CSV (column ``title``, ``text``, ``caption`` or ``description``, or the one
named), or a folder of GeoJSON files (a text property of each feature).
"""

from __future__ import annotations

import csv
import json
import os
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.errors import BadInput, CorruptData

TEXT_COLUMNS = ("title", "text", "caption", "description", "label", "name")
MAX_TEXT_CHARS = 1000


@dataclass
class CaptionBank:
    """Texts and their L2-normalised embeddings (float32 in memory)."""

    texts: list[str]
    embeddings: np.ndarray
    model: str
    version: str = ""

    @classmethod
    def load(cls, path: str | os.PathLike, embed_dim: int, model_name: str | None = None) -> CaptionBank:
        p = Path(path).expanduser()
        try:
            with np.load(p, allow_pickle=False) as z:
                texts = [str(t) for t in z["texts"]]
                emb = np.asarray(z["embeddings"], dtype=np.float32)
                model = str(z["model_name"]) if "model_name" in z.files else ""
                version = str(z["model_version"]) if "model_version" in z.files else ""
        except FileNotFoundError:
            raise BadInput(f"caption bank not found: {p}") from None
        except (OSError, ValueError, KeyError) as exc:
            raise CorruptData(f"invalid caption bank {p}: {exc}") from None
        if emb.ndim != 2 or emb.shape != (len(texts), embed_dim):
            raise CorruptData(f"invalid caption bank {p}: embeddings {emb.shape}, expected ({len(texts)}, {embed_dim})")
        if model_name and model and model != model_name:
            raise BadInput(f"caption bank {p} was built with model {model}, not {model_name}")
        return cls(texts, emb, model, version)


# ------------------------------------------------------------------ reading texts
def _clean(text: object) -> str:
    return " ".join(str(text).split())[:MAX_TEXT_CHARS] if text is not None else ""


def texts_from_karpathy(path: Path, splits: Iterable[str] | None = None) -> list[str]:
    """``raw`` (else joined ``tokens``) of every sentence, in file order; ``splits`` filters on ``split``."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        images = data["images"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BadInput(f"{path} is not a Karpathy-style caption JSON (images[].sentences[]): {exc}") from None
    keep = set(splits) if splits else None
    out = []
    for img in images:
        if keep is not None and img.get("split", "train") not in keep:
            continue
        for s in img.get("sentences", []):
            out.append(_clean(s.get("raw") or " ".join(s.get("tokens", []))))
    return out


def texts_from_csv(path: Path, column: str | None = None) -> list[str]:
    """One text per row from ``column`` or the first of ``TEXT_COLUMNS`` in the header (``filename,title``)."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            fields = reader.fieldnames or []
            names = [column] if column else [c for c in TEXT_COLUMNS if c in fields]
            if not names or names[0] not in fields:
                want = column or " or ".join(TEXT_COLUMNS)
                raise BadInput(f"{path}: no text column {want} in the header {fields}")
            return [_clean(row.get(names[0])) for row in reader]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise BadInput(f"cannot read CSV {path}: {exc}") from None


def texts_from_geojson(path: Path, prop: str | None = None) -> list[str]:
    """The text property (``prop``, else the first of ``TEXT_COLUMNS`` present) of every feature of a GeoJSON
    file, or of every ``*.geojson``/``*.json`` file below a folder (sorted, recursive)."""
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix.lower() in (".geojson", ".json") and p.is_file())
    else:
        files = [path]
    if not files:
        raise BadInput(f"no .geojson files in {path}")
    out = []
    for f in files:
        try:
            data = json.loads(f.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise BadInput(f"cannot read GeoJSON {f}: {exc}") from None
        feats = data.get("features", []) if isinstance(data, dict) and data.get("type") == "FeatureCollection" else []
        if isinstance(data, dict) and data.get("type") == "Feature":
            feats = [data]
        for feat in feats:
            props = feat.get("properties") or {}
            key = prop if prop else next((c for c in TEXT_COLUMNS if props.get(c)), None)
            if key and props.get(key) is not None:
                out.append(_clean(props[key]))
    return out


def read_texts(source: str | os.PathLike, splits: Iterable[str] | None = None, column: str | None = None) -> list[str]:
    """Unique non-empty texts (first occurrence order) from a Karpathy JSON, a CSV or a GeoJSON folder.

    ``column`` names the CSV column or the GeoJSON property; ``splits`` applies to Karpathy JSON only."""
    p = Path(source).expanduser()
    if not p.exists():
        raise BadInput(f"caption source not found: {p}")
    if p.is_dir() or p.suffix.lower() == ".geojson":
        texts = texts_from_geojson(p, column)
    elif p.suffix.lower() == ".csv":
        texts = texts_from_csv(p, column)
    else:
        texts = texts_from_karpathy(p, splits)
    unique = list(dict.fromkeys(t for t in texts if t))
    if not unique:
        raise BadInput(f"no texts found in {p}")
    return unique


# ------------------------------------------------------------------ building
def write_bank(out: str | os.PathLike, texts: list[str], embeddings: np.ndarray, name: str, version: str) -> Path:
    """Write the ``.npz`` atomically (temporary file in the target folder, then rename)."""
    out = Path(out).expanduser()
    out.parent.mkdir(parents=True, exist_ok=True)
    emb = np.asarray(embeddings, dtype=np.float32)
    emb = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    fd, tmp = tempfile.mkstemp(prefix=".bank-", suffix=".npz", dir=out.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(
                fh,
                texts=np.array(texts, dtype=str),
                embeddings=emb.astype(np.float16),
                model_name=np.array(name),
                model_version=np.array(version),
                embed_dim=np.array(int(emb.shape[1])),
            )
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return out


def build_bank(
    texts: list[str],
    encoder,
    out: str | os.PathLike,
    batch_size: int = 128,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Embed ``texts`` with the engine encoder (no query cache) in batches and write the bank."""
    chunks = []
    for start in range(0, len(texts), batch_size):
        chunks.append(encoder.embed_texts(texts[start : start + batch_size], batch_size=batch_size))
        if progress:
            progress(min(start + batch_size, len(texts)), len(texts))
    emb = np.concatenate(chunks) if chunks else np.zeros((0, encoder.meta.embed_dim), np.float32)
    return write_bank(out, texts, emb, encoder.meta.name, encoder.meta.version)
