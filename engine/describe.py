"""Describe a tile: scene-class probabilities, composed descriptions and optional caption-bank neighbours.

Caption bank file (``.npz``, built by ``python -m training.caption_bank`` or any tool): arrays
``texts`` (str ``[M]``), ``embeddings`` (float16/float32 ``[M, D]``, L2-normalised with the bundle's text
encoder), and optionally ``model_name``, ``model_version``, ``embed_dim``; loaded with ``allow_pickle=False``.
A bank whose ``model_name`` differs from the bundle's name is rejected.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.config import PROMPTS_DIR
from engine.encoder import Encoder
from engine.errors import BadInput, CorruptData


@dataclass
class Vocabulary:
    """Scene phrases, elements and templates (``resources/prompts/descriptions.json``)."""

    scenes: dict[str, list[str]]
    elements: list[str]
    templates: list[str]
    pair_templates: list[str]
    max_scenes: int = 4
    max_elements: int = 4

    @classmethod
    def load(cls, path: Path | None = None) -> Vocabulary:
        d = json.loads((path or PROMPTS_DIR / "descriptions.json").read_text(encoding="utf-8"))
        elements = [e for group in d["elements"].values() for e in group]
        lim = d.get("limits", {})
        return cls(
            d["scenes"],
            elements,
            d["templates"],
            d.get("pair_templates", []),
            lim.get("scenes", 4),
            lim.get("elements", 4),
        )

    @property
    def scene_phrases(self) -> list[str]:
        return [p for ps in self.scenes.values() for p in ps]


@dataclass
class CaptionBank:
    texts: list[str]
    embeddings: np.ndarray
    model: str

    @classmethod
    def load(cls, path: str | Path, embed_dim: int, model_name: str | None = None) -> CaptionBank:
        p = Path(path).expanduser()
        try:
            with np.load(p, allow_pickle=False) as z:
                texts = [str(t) for t in z["texts"]]
                emb = np.asarray(z["embeddings"], dtype=np.float32)
                model = str(z["model_name"]) if "model_name" in z.files else ""
        except FileNotFoundError:
            raise BadInput(f"caption bank not found: {p}") from None
        except (OSError, ValueError, KeyError) as exc:
            raise CorruptData(f"invalid caption bank {p}: {exc}") from None
        if emb.ndim != 2 or emb.shape != (len(texts), embed_dim):
            raise CorruptData(f"invalid caption bank {p}: embeddings {emb.shape}, expected ({len(texts)}, {embed_dim})")
        if model_name and model and model != model_name:
            raise BadInput(f"caption bank {p} was built with model {model}, not {model_name}")
        return cls(texts, emb, model)


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max())
    return e / e.sum()


def scene_probabilities(emb: np.ndarray, encoder: Encoder, top: int) -> list[dict]:
    """Top scene classes with softmax probabilities (logit scale from model.json, default 100)."""
    b = encoder.bundle
    classes, cemb = b.classes, b.class_embeddings
    if cemb is None:  # bundle without scene classes: use the prompts shipped in resources/
        d = json.loads((PROMPTS_DIR / "scene_classes.json").read_text(encoding="utf-8"))
        classes = d["classes"]
        cemb = np.stack([encoder.embed_texts(d["prompts"][c]).mean(axis=0) for c in classes])
        cemb /= np.linalg.norm(cemb, axis=1, keepdims=True)
    p = softmax(encoder.meta.logit_scale * (cemb @ emb))
    order = np.argsort(-p)[:top]
    return [{"name": classes[i], "probability": round(float(p[i]), 6)} for i in order]


def compose_descriptions(emb: np.ndarray, encoder: Encoder, vocab: Vocabulary, top: int) -> list[dict]:
    """Rank scene phrases, then compositions of the best phrases with elements/other scenes."""
    phrases = vocab.scene_phrases
    ps = encoder.embed_texts(phrases) @ emb
    best = [phrases[i] for i in np.argsort(-ps)[: vocab.max_scenes]]
    es = encoder.embed_texts(vocab.elements) @ emb
    elems = [vocab.elements[i] for i in np.argsort(-es)[: vocab.max_elements]]
    cands = set(best)
    for s, e, t in itertools.product(best, elems, vocab.templates):
        cands.add(t.format(scene=s, element=e))
    for (s, o), t in itertools.product(itertools.permutations(best[:3], 2), vocab.pair_templates):
        cands.add(t.format(scene=s, other=o))
    cands_l = sorted(cands)
    scores = encoder.embed_texts(cands_l) @ emb
    order = np.argsort(-scores)[:top]
    return [{"text": cands_l[i], "score": round(float(scores[i]), 6)} for i in order]


def nearest_captions(emb: np.ndarray, bank: CaptionBank | None, top: int) -> list[dict]:
    if bank is None or not bank.texts:
        return []
    s = bank.embeddings @ emb
    order = np.argsort(-s)[:top]
    return [{"text": bank.texts[i], "score": round(float(s[i]), 6)} for i in order]


def describe_embedding(
    emb: np.ndarray, encoder: Encoder, vocab: Vocabulary, bank: CaptionBank | None, top: int = 5
) -> dict:
    """Classes, descriptions and captions for one L2-normalised image embedding."""
    emb = np.asarray(emb, dtype=np.float32)
    emb = emb / max(float(np.linalg.norm(emb)), 1e-12)
    return {
        "classes": scene_probabilities(emb, encoder, top),
        "descriptions": compose_descriptions(emb, encoder, vocab, top),
        "captions": nearest_captions(emb, bank, top),
    }
