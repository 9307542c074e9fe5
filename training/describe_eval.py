"""Measure describe on a split: ``python -m training.describe_eval --bundle DIR --split test --json OUT``.

Before = the describe of git revision ``--legacy-rev`` (its ``engine/describe.py`` and ``descriptions.json``,
uncalibrated softmax); after = today's ``engine.describe`` with the bundle's ``calibration``. Both run on the same
image embeddings, computed through the bundle's ONNX encoders as the engine runs them (cached, see
``training.calibrate``). Reported:

- classes: top-1 accuracy, ECE (15 bins), share of images shown as "uncertain" and the accuracy of the rest;
- descriptions: share of images whose top description belongs to the true scene class (its scene phrase's class),
  the same over all top-5 descriptions, mean and max pairwise text cosine of the top 5, images with a pair > 0.95,
  and how often an attribute is shown and confirmed by the image's captions.
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from engine.describe import (
    DescribeParams,
    Vocabulary,
    class_summary,
    compose_descriptions,
    phrase_class_probability,
    scene_logits,
    softmax,
)
from training.calibrate import DEFAULT_CACHE, DEFAULT_DATA, PROJECT_ROOT, CachedEncoder, expected_calibration_error

LEGACY_REV = "a00c88f"  # the last commit before issue 21
TOP = 5


def load_legacy(rev: str, workdir: Path):
    """The describe module and vocabulary of an older commit (``git show``), imported under another name."""
    mod_path, voc_path = workdir / "describe_legacy.py", workdir / "descriptions_legacy.json"
    for src, dst in (("engine/describe.py", mod_path), ("resources/prompts/descriptions.json", voc_path)):
        out = subprocess.run(["git", "show", f"{rev}:{src}"], cwd=PROJECT_ROOT, capture_output=True, text=True)
        if out.returncode:
            raise SystemExit(f"error: git show {rev}:{src} failed: {out.stderr.strip()}")
        dst.write_text(out.stdout, encoding="utf-8")
    spec = importlib.util.spec_from_file_location("describe_legacy", mod_path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["describe_legacy"] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod, mod.Vocabulary.load(voc_path)


def text_class(text: str, phrase_class: dict[str, str]) -> str | None:
    """The class of a description: that of the longest scene phrase it starts with."""
    best = max((p for p in phrase_class if text.startswith(p)), key=len, default=None)
    return phrase_class[best] if best else None


def pairwise(emb: np.ndarray) -> np.ndarray:
    """Cosines of all pairs (upper triangle) of L2-normalised rows."""
    i, j = np.triu_indices(len(emb), 1)
    return np.einsum("nd,nd->n", emb[i], emb[j])


def description_metrics(lists: list[list[str]], labels: list[str], phrase_class: dict[str, str], embed, words, attrs):
    """Grounding, diversity and attribute metrics of per-image description lists."""
    top1, top5, mean_cos, max_cos, shown, confirmed = [], [], [], [], 0, 0
    for texts, label, w in zip(lists, labels, words, strict=True):
        classes = [text_class(t, phrase_class) for t in texts]
        top1.append(classes[0] == label)
        top5.append(np.mean([c == label for c in classes]))
        if len(texts) > 1:
            c = pairwise(embed(texts))
            mean_cos.append(float(c.mean()))
            max_cos.append(float(c.max()))
        for t in texts:
            base = max((p for p in phrase_class if t.startswith(p)), key=len, default=t)
            extra = t[len(base) :]
            hit = [a for a in attrs if extra.endswith(" " + a.text)]
            if hit:
                shown += 1
                confirmed += bool(w & set(hit[0].mentions))
    max_cos = np.array(max_cos)
    return {
        "top_description_true_class": round(float(np.mean(top1)), 4),
        "top5_descriptions_true_class": round(float(np.mean(top5)), 4),
        "descriptions_per_image": round(float(np.mean([len(t) for t in lists])), 4),
        "top5_mean_pairwise_cosine": round(float(np.mean(mean_cos)), 4),
        "top5_max_pairwise_cosine": round(float(max_cos.max()), 4),
        "images_with_pair_above_0.95": int((max_cos > 0.95).sum()),
        "attributes_shown_per_image": round(shown / len(lists), 4),
        "attributes_confirmed_by_captions": round(confirmed / shown, 4) if shown else None,
    }


def class_metrics(p: np.ndarray, labels: np.ndarray, uncertain_below: float) -> dict:
    conf, correct = p.max(axis=1), p.argmax(axis=1) == labels
    shown = conf >= uncertain_below
    return {
        "top1": round(float(correct.mean()), 4),
        "ece": round(expected_calibration_error(p, labels), 4),
        "mean_top_probability": round(float(conf.mean()), 4),
        "uncertain_share": round(float(1 - shown.mean()), 4),
        "accuracy_when_shown": round(float(correct[shown].mean()), 4) if shown.any() else None,
    }


def evaluate(bundle: str, data: str, split: str, legacy_rev: str, cache: Path) -> dict:
    ce = CachedEncoder(bundle, cache)
    sd, emb = ce.embed_split(data, split)
    b = ce.bundle
    params = DescribeParams.from_bundle_meta(b.meta.raw)
    sims = emb @ b.class_embeddings.T
    vocab = Vocabulary.load()
    label_names = [b.classes[i] for i in sd.labels]
    norm = {c.replace(" ", "").lower(): c for c in b.classes}
    phrase_class = {p: norm[c.lower()] for p, c in vocab.phrase_class.items()}

    with tempfile.TemporaryDirectory() as tmp:
        legacy, legacy_vocab = load_legacy(legacy_rev, Path(tmp))
    legacy_pc = {p: norm[c.lower()] for c, ps in legacy_vocab.scenes.items() for p in ps}

    t0 = time.perf_counter()
    before_desc = [[d["text"] for d in legacy.compose_descriptions(e, ce, legacy_vocab, TOP)] for e in emb]
    t1 = time.perf_counter()
    p_after = softmax(scene_logits(sims, b.meta.logit_scale, params.temperature))
    after_desc = [
        [
            d["text"]
            for d in compose_descriptions(
                e, ce.embed_texts, vocab, params, TOP, phrase_class_probability(vocab, b.classes, p)
            )
        ]
        for e, p in zip(emb, p_after, strict=True)
    ]
    t2 = time.perf_counter()
    ce.save()
    p_before = softmax(scene_logits(sims, b.meta.logit_scale))
    summaries = [class_summary(p, b.classes, params.shown_classes, params.uncertain_below) for p in p_after]
    sums = [sum(c["probability"] for c in s["classes"]) + s["other"] for s in summaries]
    attrs = vocab.attributes
    return {
        "split": split,
        "data": str(data),
        "n_images": len(sd.files),
        "bundle": f"{b.meta.name} {b.meta.version}",
        "legacy_rev": legacy_rev,
        "calibration": {k: v for k, v in (b.meta.raw.get("calibration") or {}).items() if not isinstance(v, list)},
        "before": {
            "classes": class_metrics(p_before, sd.labels, 0.0),
            "descriptions": description_metrics(
                before_desc, label_names, legacy_pc, ce.embed_texts, sd.caption_words, attrs
            ),
            "seconds_per_image_cached_texts": round((t1 - t0) / len(emb), 5),
        },
        "after": {
            "classes": class_metrics(p_after, sd.labels, params.uncertain_below),
            "shown_plus_other_sum_max_error": round(float(np.max(np.abs(np.array(sums) - 1))), 8),
            "descriptions": description_metrics(
                after_desc, label_names, phrase_class, ce.embed_texts, sd.caption_words, attrs
            ),
            "seconds_per_image_cached_texts": round((t2 - t1) / len(emb), 5),
        },
        "examples": [
            {"file": sd.files[i].name, "true": label_names[i], "before": before_desc[i], "after": after_desc[i]}
            for i in itertools.islice(range(0, len(emb), max(1, len(emb) // 6)), 6)
        ],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Describe metrics before/after on a split")
    ap.add_argument("--bundle", required=True)
    ap.add_argument("--data", default=DEFAULT_DATA)
    ap.add_argument("--split", default="test")
    ap.add_argument("--legacy-rev", default=LEGACY_REV, help="git revision whose describe is 'before'")
    ap.add_argument("--cache-dir", default=str(DEFAULT_CACHE))
    ap.add_argument("--json", help="write the result here")
    args = ap.parse_args(argv)
    res = evaluate(args.bundle, args.data, args.split, args.legacy_rev, Path(args.cache_dir))
    text = json.dumps(res, indent=2)
    print(text)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(text + "\n", encoding="utf-8")
        print(f"wrote {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
