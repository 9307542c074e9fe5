"""Describe a tile: calibrated scene-class probabilities, diverse grounded descriptions, caption-bank neighbours.

Classes: ``softmax(logit_scale * cos(image, class) / T)`` with the temperature ``T`` fitted on the validation
split (``model.json`` ``calibration.scene_temperature``, ``python -m training.calibrate``). The top
``shown_classes`` are returned with ``other`` = the rest of the probability mass, so the shown numbers sum to 1;
``uncertain`` is set when the top probability is below ``calibration.uncertain_below``.

Descriptions: the scene phrases of ``resources/prompts/descriptions.json`` ranked by cosine similarity to the
tile; the best few may take one attribute ("... next to a river") only when it raises the score over the bare
phrase by ``calibration.attribute_margin`` (measured on the validation split against the captions); the list is
then picked by maximal marginal relevance and never holds two texts whose embeddings have cosine > 0.95.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from engine.caption_bank import CaptionBank
from engine.config import PROMPTS_DIR
from engine.encoder import Encoder
from engine.errors import CorruptData

EmbedTexts = Callable[[list[str]], np.ndarray]

__all__ = ["CaptionBank", "DescribeParams", "Vocabulary", "describe_embedding"]


@dataclass(frozen=True)
class Attribute:
    text: str
    mentions: tuple[str, ...]  # caption words that confirm it (used when measuring the margin)


@dataclass
class Vocabulary:
    """Scene phrases per class, attributes and templates (``resources/prompts/descriptions.json``)."""

    scenes: dict[str, list[str]]
    attributes: list[Attribute]
    templates: list[str]
    scenes_with_attributes: int = 3  # the best phrases that may take an attribute
    attributes_per_tile: int = 4  # attributes tried: those closest to the tile

    @classmethod
    def load(cls, path: Path | None = None) -> Vocabulary:
        p = path or PROMPTS_DIR / "descriptions.json"
        try:
            d = json.loads(p.read_text(encoding="utf-8"))
            attrs = [Attribute(a["text"], tuple(a.get("mentions", ()))) for a in d["attributes"]]
            lim = d.get("limits", {})
            return cls(
                d["scenes"],
                attrs,
                d["templates"],
                lim.get("scenes_with_attributes", 3),
                lim.get("attributes_per_tile", 4),
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise CorruptData(f"invalid description vocabulary {p}: {exc}") from None

    @property
    def scene_phrases(self) -> list[str]:
        return [p for ps in self.scenes.values() for p in ps]

    @property
    def phrase_class(self) -> dict[str, str]:
        """Scene phrase -> its class key (e.g. ``"RailwayStation"``)."""
        return {p: c for c, ps in self.scenes.items() for p in ps}

    def filled(self, phrase: str, attributes: list[Attribute] | None = None) -> list[tuple[str, Attribute]]:
        """``phrase`` with each attribute in each template; attributes the phrase already mentions are skipped."""
        words = set(phrase.lower().replace(",", " ").split())
        return [
            (t.format(scene=phrase, attribute=a.text), a)
            for a, t in itertools.product(self.attributes if attributes is None else attributes, self.templates)
            if not words & set(a.mentions) and a.text not in phrase
        ]


@dataclass(frozen=True)
class AttributedPhrase:
    """The best attributed version of a scene phrase for one image."""

    text: str
    embedding: np.ndarray
    score: float
    attribute: Attribute


def best_attributed(
    emb: np.ndarray, phrases: list[str], embed: EmbedTexts, vocab: Vocabulary
) -> list[AttributedPhrase | None]:
    """For each phrase, its best-scoring attributed version (or None), trying the ``vocab.attributes_per_tile``
    attributes closest to the image in every template (one batched text-encoder call)."""
    a_sim = embed([a.text for a in vocab.attributes]) @ emb
    shortlist = [vocab.attributes[i] for i in np.argsort(-a_sim)[: vocab.attributes_per_tile]]
    filled = [vocab.filled(p, shortlist) for p in phrases]
    flat = [t for f in filled for t, _ in f]
    femb = embed(flat) if flat else np.zeros((0, len(emb)), np.float32)
    out, start = [], 0
    for f in filled:
        if not f:
            out.append(None)
            continue
        block = femb[start : start + len(f)]
        start += len(f)
        j = int(np.argmax(block @ emb))
        out.append(AttributedPhrase(f[j][0], block[j], float(block[j] @ emb), f[j][1]))
    return out


CALIBRATED_MIN_CLASS_PROBABILITY = 0.1  # with calibrated probabilities (docs/describe.md: the trade-off on val)


@dataclass(frozen=True)
class DescribeParams:
    """Describe settings; the first three come from the bundle's ``calibration`` (see :meth:`from_bundle_meta`)."""

    temperature: float = 1.0  # softmax(logit_scale * cos / temperature)
    uncertain_below: float = 0.5  # top probability below this: "uncertain"
    attribute_margin: float | None = None  # None: never add an attribute (say less)
    min_class_probability: float = 0.0  # only describe with phrases of classes at least this probable
    shown_classes: int = 3
    mmr_lambda: float = 0.7  # relevance weight in maximal marginal relevance
    max_text_cosine: float = 0.95  # no two shown texts more similar than this

    @classmethod
    def from_bundle_meta(cls, raw: dict) -> DescribeParams:
        """Read ``model.json`` ``calibration`` (absent: uncalibrated defaults, no attributes)."""
        cal = raw.get("calibration")
        if cal is None:
            return cls()
        try:
            t = float(cal["scene_temperature"])
            u = float(cal.get("uncertain_below", cls.uncertain_below))
            m = cal.get("attribute_margin")
            m = None if m is None else float(m)
            mp = float(cal.get("description_min_class_probability", CALIBRATED_MIN_CLASS_PROBABILITY))
        except (KeyError, TypeError, ValueError) as exc:
            raise CorruptData(f"invalid calibration in model.json: {exc}") from None
        if not (math.isfinite(t) and t > 0 and 0 <= u <= 1 and 0 <= mp <= 1 and (m is None or math.isfinite(m))):
            raise CorruptData("invalid calibration in model.json: need temperature > 0, probabilities in 0..1")
        return cls(temperature=t, uncertain_below=u, attribute_margin=m, min_class_probability=mp)


# ------------------------------------------------------------------ classes
def scene_logits(sims: np.ndarray, logit_scale: float, temperature: float = 1.0) -> np.ndarray:
    """Cosine similarities ``[..., C]`` -> logits ``logit_scale * sims / temperature``."""
    return np.asarray(sims, dtype=np.float64) * (logit_scale / temperature)


def softmax(x: np.ndarray) -> np.ndarray:
    """Softmax over the last axis (numerically stable)."""
    z = np.asarray(x, dtype=np.float64)
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def class_summary(p: np.ndarray, classes: list[str], shown: int, uncertain_below: float) -> dict:
    """Top ``shown`` classes, ``other`` (the rest, so the shown numbers sum to 1), ``uncertain``, ``scene``."""
    order = np.argsort(-p)[: max(1, shown)]
    top = [{"name": classes[i], "probability": round(float(p[i]), 4)} for i in order]
    other = round(max(0.0, 1.0 - sum(c["probability"] for c in top)), 4)
    uncertain = bool(p[order[0]] < uncertain_below)
    return {"classes": top, "other": other, "uncertain": uncertain, "scene": None if uncertain else top[0]["name"]}


def class_embeddings(encoder: Encoder) -> tuple[list[str], np.ndarray]:
    """The bundle's scene classes and their embeddings (the shipped prompts when the bundle has none)."""
    b = encoder.bundle
    if b.class_embeddings is not None:
        return b.classes, b.class_embeddings
    d = json.loads((PROMPTS_DIR / "scene_classes.json").read_text(encoding="utf-8"))
    cemb = np.stack([encoder.embed_texts(d["prompts"][c]).mean(axis=0) for c in d["classes"]])
    return d["classes"], cemb / np.linalg.norm(cemb, axis=1, keepdims=True)


def scene_probabilities(emb: np.ndarray, encoder: Encoder, params: DescribeParams) -> tuple[list[str], np.ndarray]:
    """The classes and their (calibrated) probabilities for one image embedding."""
    classes, cemb = class_embeddings(encoder)
    return classes, softmax(scene_logits(cemb @ emb, encoder.meta.logit_scale, params.temperature))


def phrase_class_probability(vocab: Vocabulary, classes: list[str], p: np.ndarray) -> np.ndarray:
    """The probability of each scene phrase's class (1 for vocabulary classes the bundle does not have)."""
    by_name = {c.replace(" ", "").lower(): float(q) for c, q in zip(classes, p, strict=True)}
    pc = vocab.phrase_class
    return np.array([by_name.get(pc[ph].lower(), 1.0) for ph in vocab.scene_phrases])


# ------------------------------------------------------------------ descriptions
def select_diverse(relevance: np.ndarray, text_emb: np.ndarray, k: int, lam: float, max_cos: float) -> list[int]:
    """Maximal marginal relevance: repeatedly the candidate with the best ``lam * relevance - (1 - lam) * (highest
    cosine to a chosen text)``; candidates with cosine > ``max_cos`` to a chosen text are never taken."""
    rel = np.asarray(relevance, dtype=np.float64)
    n = len(rel)
    chosen: list[int] = []
    closest = np.full(n, -1.0)  # highest cosine of each candidate to the chosen ones
    free = np.ones(n, dtype=bool)
    while len(chosen) < k and free.any():
        redundancy = np.maximum(closest, 0.0) if chosen else np.zeros(n)
        gain = np.where(free, lam * rel - (1 - lam) * redundancy, -np.inf)
        i = int(np.argmax(gain))
        chosen.append(i)
        free[i] = False
        closest = np.maximum(closest, text_emb @ text_emb[i])
        free &= closest <= max_cos
    return chosen


def compose_descriptions(
    emb: np.ndarray,
    embed: EmbedTexts,
    vocab: Vocabulary,
    params: DescribeParams,
    top: int,
    class_probability: np.ndarray | None = None,
) -> list[dict]:
    """Scene phrases of classes with at least ``min_class_probability`` (``class_probability``: per phrase), ranked
    by cosine; the best few with an attribute when it clears the margin; picked by MMR (fewer when few qualify) and
    listed best first."""
    phrases = vocab.scene_phrases
    pemb = embed(phrases)
    rel = pemb @ emb
    texts, embs, scores = list(phrases), pemb.copy(), rel.copy()
    allowed = np.ones(len(phrases), dtype=bool)
    if class_probability is not None and params.min_class_probability > 0:
        allowed = class_probability >= min(params.min_class_probability, float(class_probability.max()))
    if params.attribute_margin is not None:
        best = np.argsort(np.where(allowed, -rel, np.inf))[: vocab.scenes_with_attributes]
        for i, ap in zip(best, best_attributed(emb, [phrases[i] for i in best], embed, vocab), strict=True):
            if ap is not None and ap.score - rel[i] >= params.attribute_margin:
                texts[i], embs[i], scores[i] = ap.text, ap.embedding, ap.score
    idx = np.flatnonzero(allowed)
    chosen = idx[select_diverse(scores[idx], embs[idx], top, params.mmr_lambda, params.max_text_cosine)]
    return [{"text": texts[i], "score": round(float(scores[i]), 6)} for i in sorted(chosen, key=lambda i: -scores[i])]


def nearest_captions(emb: np.ndarray, bank: CaptionBank | None, top: int, params: DescribeParams) -> list[dict]:
    """The bank's best-matching texts, without near-duplicates (the same diversity rule as descriptions)."""
    if bank is None or not bank.texts:
        return []
    s = bank.embeddings @ emb
    pool = np.argsort(-s)[: max(50, 10 * top)]
    chosen = pool[select_diverse(s[pool], bank.embeddings[pool], top, params.mmr_lambda, params.max_text_cosine)]
    return [{"text": bank.texts[i], "score": round(float(s[i]), 6)} for i in sorted(chosen, key=lambda i: -s[i])]


def describe_embedding(
    emb: np.ndarray,
    encoder: Encoder,
    vocab: Vocabulary,
    bank: CaptionBank | None,
    top: int = 5,
    params: DescribeParams | None = None,
) -> dict:
    """Classes (with ``other``, ``uncertain``, ``scene``), descriptions and captions for one image embedding."""
    params = params or DescribeParams.from_bundle_meta(encoder.meta.raw)
    params = replace(params, shown_classes=min(params.shown_classes, top))
    emb = np.asarray(emb, dtype=np.float32)
    emb = emb / max(float(np.linalg.norm(emb)), 1e-12)
    classes, p = scene_probabilities(emb, encoder, params)
    return {
        **class_summary(p, classes, params.shown_classes, params.uncertain_below),
        "descriptions": compose_descriptions(
            emb, encoder.embed_texts, vocab, params, top, phrase_class_probability(vocab, classes, p)
        ),
        "captions": nearest_captions(emb, bank, top, params),
    }


def describe_text(res: dict) -> str:
    """The command-line view of a describe answer: scene (or "uncertain"), classes plus other, texts."""
    where = f"tile {res['tile_id']} of store {res['store_id']}" if res.get("store_id") else "tile (not indexed)"
    scene = "uncertain (no class is probable enough; the candidates:)" if res.get("uncertain") else res.get("scene")
    lines = [where, f"  scene: {scene}"]
    lines += [f"    {c['name']:<22} {100 * c['probability']:5.1f}%" for c in res["classes"]]
    lines.append(f"    {'other':<22} {100 * res.get('other', 0.0):5.1f}%")
    lines += [f"  {d['score']:.3f}  {d['text']}" for d in res["descriptions"]]
    lines += [f"  caption {c['score']:.3f}  {c['text']}" for c in res["captions"]]
    return "\n".join(lines)
