"""Readers that turn the community's caption files into one flat list of (image, caption) rows.

Every reader returns :class:`CaptionRecord` rows, one per caption, in file order. ``image_id`` is a dense
integer per distinct image file so that captions of the same image can be grouped (multi-positive losses,
I->T recall).
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, replace
from pathlib import Path


@dataclass(frozen=True)
class CaptionRecord:
    """One caption row. ``filename`` is relative to the image root; ``scene_class`` may be None."""

    image_id: int
    filename: str
    caption: str
    split: str
    scene_class: str | None = None
    row: int = 0


def _dense_ids(rows: list[CaptionRecord]) -> list[CaptionRecord]:
    ids: dict[str, int] = {}
    out = []
    for i, r in enumerate(rows):
        iid = ids.setdefault(r.filename, len(ids))
        out.append(replace(r, image_id=iid, row=i))
    return out


def read_karpathy_json(path: str | Path, splits: tuple[str, ...] | None = None) -> list[CaptionRecord]:
    """Read a Karpathy-style JSON (RSICD, RSITMD, UCM, rsicd_aid150). The optional ``class`` field is kept.

    ``splits`` filters on the image's ``split`` (``None`` keeps all). Captions are the ``raw`` strings,
    stripped.
    """
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    rows: list[CaptionRecord] = []
    for img in data["images"]:
        split = img.get("split", "train")
        if splits is not None and split not in splits:
            continue
        for s in img.get("sentences", []):
            raw = s.get("raw") or " ".join(s.get("tokens", []))
            rows.append(CaptionRecord(0, img["filename"], raw.strip(), split, img.get("class")))
    return _dense_ids(rows)


def read_csv_pairs(path: str | Path, split: str = "train") -> list[CaptionRecord]:
    """Read a CSV with header ``filename,title`` (one row per caption; RRSITR / open_clip layout)."""
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames is None or not {"filename", "title"} <= set(reader.fieldnames):
            raise ValueError(f"{path}: expected header 'filename,title', got {reader.fieldnames}")
        rows = [CaptionRecord(0, r["filename"], r["title"].strip(), split) for r in reader]
    return _dense_ids(rows)


def read_amfmn_precomp(folder: str | Path, split: str, caps_per_image: int = 5) -> list[CaptionRecord]:
    """Read the AMFMN "precomp" layout: ``{split}_caps.txt`` and ``{split}_filename.txt``.

    Two variants exist: one filename line per caption (test files), or one filename line per image with
    ``caps_per_image`` consecutive caption lines each (train files). The variant is detected from the counts.
    """
    folder = Path(folder)
    caps = [c.strip() for c in (folder / f"{split}_caps.txt").read_text(encoding="utf-8").splitlines()]
    names = [n.strip() for n in (folder / f"{split}_filename.txt").read_text(encoding="utf-8").splitlines()]
    caps = [c for c in caps if c]
    names = [n for n in names if n]
    if len(names) == len(caps):
        pairs = list(zip(names, caps, strict=True))
    elif len(names) * caps_per_image == len(caps):
        pairs = [(names[i // caps_per_image], c) for i, c in enumerate(caps)]
    else:
        raise ValueError(
            f"{folder}/{split}: {len(caps)} captions vs {len(names)} filenames (caps_per_image={caps_per_image})"
        )
    return _dense_ids([CaptionRecord(0, n, c, split) for n, c in pairs])


def read_dataset(path: str | Path, splits: tuple[str, ...] | None = None) -> list[CaptionRecord]:
    """Dispatch on the file type: ``.json`` (Karpathy), ``.csv`` (filename,title) or a precomp folder."""
    p = Path(path)
    if p.is_dir():
        split = (splits or ("train",))[0]
        return read_amfmn_precomp(p, split)
    if p.suffix.lower() == ".csv":
        return read_csv_pairs(p, (splits or ("train",))[0])
    return read_karpathy_json(p, splits)
