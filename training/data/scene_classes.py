"""Scene class per image: the ``class`` field, else the filename prefix before ``_``, else a user mapping."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import PurePosixPath

from training.data.readers import CaptionRecord

_NUMERIC = re.compile(r"^\d+$")


def class_from_filename(filename: str) -> str | None:
    """``airport_12.tif`` -> ``airport``; ``Airport/airport_1.jpg`` -> ``airport``; numeric names -> None."""
    stem = PurePosixPath(filename).stem
    if "_" not in stem:
        return None
    prefix = stem.split("_")[0]
    return None if _NUMERIC.match(prefix) else prefix


def ucm_class_of(filename: str, class_names: Sequence[str] | None = None) -> str:
    """UCM-captions mapping: image k (``k.tif``) belongs to class (k-1)//100 in alphabetical order."""
    k = int(PurePosixPath(filename).stem)
    idx = (k - 1) // 100
    return class_names[idx] if class_names else str(idx)


def resolve_scene_classes(
    rows: list[CaptionRecord],
    mapping: dict[str, str] | Callable[[str], str | None] | None = None,
    canonical: bool = True,
) -> list[CaptionRecord]:
    """Fill ``scene_class`` for every row: field, then filename prefix, then ``mapping``; else ``unknown``.

    With ``canonical`` the names are lower-cased with non-letters removed so that ``DenseResidential`` (field)
    and ``denseresidential`` (prefix) agree.
    """
    out = []
    for r in rows:
        c = r.scene_class or class_from_filename(r.filename)
        if c is None and mapping is not None:
            c = mapping(r.filename) if callable(mapping) else mapping.get(r.filename)
        c = c or "unknown"
        if canonical:
            c = re.sub(r"[^a-z0-9]", "", c.lower())
        out.append(replace(r, scene_class=c))
    return out


def class_index(rows: list[CaptionRecord], classes: Sequence[str] | None = None) -> tuple[list[str], list[int]]:
    """Sorted class vocabulary (or the given one) and the class index of each row (-1 if not in
    vocabulary).
    """
    vocab = list(classes) if classes is not None else sorted({r.scene_class or "unknown" for r in rows})
    pos = {c: i for i, c in enumerate(vocab)}
    return vocab, [pos.get(r.scene_class or "unknown", -1) for r in rows]
