"""Probe: ensemble of shipped bundles (mean of cosine similarity matrices), test split, engine ONNX path."""

import sys

import numpy as np
from PIL import Image

sys.path.insert(0, ".")
from training.bundle_runtime import BundleEncoder
from training.config import resolve_path
from training.data.readers import read_dataset
from training.metrics import retrieval_metrics
from training.ship import DATA

bundles = sys.argv[1:]
path = resolve_path(DATA)
rows = read_dataset(path, ("test",))
root = path.parent / "images"
files = list(dict.fromkeys(r.filename for r in rows))
pos = {f: i for i, f in enumerate(files)}
t2i = np.array([pos[r.filename] for r in rows])
ims = [np.asarray(Image.open(root / f).convert("RGB")) for f in files]
uniq = list(dict.fromkeys(r.caption for r in rows))
upos = {t: i for i, t in enumerate(uniq)}
sel = np.array([upos[r.caption] for r in rows])
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
