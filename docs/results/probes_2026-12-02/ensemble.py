"""Probe: ensemble of shipped bundles (mean of cosine similarity matrices), test split, engine ONNX path."""

import sys

import numpy as np
from PIL import Image

sys.path.insert(0, ".")
from training.bundle_runtime import BundleEncoder
from training.evaluate import load_eval_set
from training.metrics import retrieval_metrics
from training.ship import DATA

bundles = sys.argv[1:]
paths, caps, t2i = load_eval_set(DATA, "test")
ims = [np.asarray(Image.open(p).convert("RGB")) for p in paths]
uniq = list(dict.fromkeys(caps))  # each distinct caption embedded once
upos = {t: i for i, t in enumerate(uniq)}
sel = np.array([upos[c] for c in caps])
embs = []
for b in bundles:
    enc = BundleEncoder(b, threads=2)
    txt = enc.encode_texts(uniq)[sel]
    img = np.concatenate([enc.encode_images(ims[i : i + 64]) for i in range(0, len(ims), 64)])
    img /= np.linalg.norm(img, axis=1, keepdims=True)
    txt /= np.linalg.norm(txt, axis=1, keepdims=True)
    embs.append((img, txt))
    m = retrieval_metrics(img, txt, t2i)
    print(b, {k: round(float(v), 2) for k, v in m.items()}, flush=True)
img = np.concatenate([e[0] for e in embs], 1) / np.sqrt(len(embs))
txt = np.concatenate([e[1] for e in embs], 1) / np.sqrt(len(embs))
m = retrieval_metrics(img, txt, t2i)
print("ensemble", {k: round(float(v), 2) for k, v in m.items()}, flush=True)
