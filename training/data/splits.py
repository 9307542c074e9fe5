"""A validation split that looks like test (issue 17).

RSICD's ``val`` is unlike its ``test``: 54 % of val images have five identical captions (2 of 1,027 test images)
and 40 % of val caption rows occur verbatim in train (10.6 % of test rows), so selecting on it is weak. The
holdout split takes ``n_images`` *train* images that have at least ``min_distinct`` distinct captions (after
normalising case, spaces and the final full stop) and at most ``max_shared_rows`` caption rows that occur
verbatim in another train image (test: 66 % of images have none, 22 % one), ordered by the SHA-1 of their
filename (deterministic, independent of file order and class), and removes them from the train set.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

from training.data.readers import CaptionRecord


def normalise_caption(caption: str) -> str:
    """Lower case, single spaces, no trailing full stop: 'A  plane.' and 'a plane' are the same caption."""
    return re.sub(r"\s+", " ", caption.strip().lower()).rstrip(" .")


def distinct_captions(rows: Sequence[CaptionRecord]) -> dict[str, set[str]]:
    """filename -> set of its normalised captions."""
    out: dict[str, set[str]] = {}
    for r in rows:
        out.setdefault(r.filename, set()).add(normalise_caption(r.caption))
    return out


def _hash(name: str) -> str:
    return hashlib.sha1(name.encode(), usedforsecurity=False).hexdigest()


def shared_rows(rows: Sequence[CaptionRecord]) -> dict[str, int]:
    """filename -> number of its caption rows whose normalised text also belongs to another image."""
    owners: dict[str, set[str]] = {}
    for r in rows:
        owners.setdefault(normalise_caption(r.caption), set()).add(r.filename)
    out: dict[str, int] = {}
    for r in rows:
        out[r.filename] = out.get(r.filename, 0) + (len(owners[normalise_caption(r.caption)]) > 1)
    return out


def holdout_split(
    rows: Sequence[CaptionRecord], n_images: int, min_distinct: int = 3, max_shared_rows: int | None = None
) -> tuple[list[CaptionRecord], list[CaptionRecord]]:
    """(remaining train rows, holdout rows): the first ``n_images`` eligible images by filename hash."""
    caps = distinct_captions(rows)
    shared = shared_rows(rows)
    eligible = sorted(
        (
            f
            for f, c in caps.items()
            if len(c) >= min_distinct and (max_shared_rows is None or shared[f] <= max_shared_rows)
        ),
        key=_hash,
    )
    if len(eligible) < n_images:
        raise ValueError(f"only {len(eligible)} images are eligible for the holdout, {n_images} asked")
    held = set(eligible[:n_images])
    return [r for r in rows if r.filename not in held], [r for r in rows if r.filename in held]


def split_stats(rows: Sequence[CaptionRecord], train_rows: Sequence[CaptionRecord]) -> dict[str, float]:
    """How test-like a split is: images with one distinct caption (%), caption rows verbatim in train (%),
    mean distinct captions per image."""
    caps = distinct_captions(rows)
    train_caps = {normalise_caption(r.caption) for r in train_rows}
    n = max(len(caps), 1)
    return {
        "images": len(caps),
        "rows": len(rows),
        "single_caption_images_pct": round(100.0 * sum(len(c) == 1 for c in caps.values()) / n, 2),
        "rows_verbatim_in_train_pct": round(
            100.0 * sum(normalise_caption(r.caption) in train_caps for r in rows) / max(len(rows), 1), 2
        ),
        "mean_distinct_captions": round(sum(len(c) for c in caps.values()) / n, 3),
    }
