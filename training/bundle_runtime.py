"""ONNX Runtime path for a model bundle (docs/contracts.md §1), used to evaluate shipped artefacts.

Uses the engine's loader and encoder (``engine.bundle``, ``engine.encoder``, ``engine.preprocess``) so the
evaluation measures exactly what the engine serves; with ``use_engine=False`` this module runs the ONNX
sessions and the tokenizer itself (padded/truncated to ``context_length`` with ``pad_token_id``); image
preprocessing is the engine's one implementation of the contract in both cases (``training.features``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from training.features import preprocess


class BundleEncoder:
    """Encode images (RGB uint8 arrays or PIL images) and texts with a bundle's ONNX graphs (CPU)."""

    def __init__(self, bundle_dir: str | Path, threads: int = 2, use_engine: bool = True):
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self.dir = Path(bundle_dir)
        self.meta = json.loads((self.dir / "model.json").read_text())
        self.engine = None
        if use_engine:
            try:  # the engine's own loader/encoder: evaluation measures exactly what is served
                from engine.bundle import load_bundle
                from engine.encoder import Encoder

                self.engine = Encoder(load_bundle(self.dir), threads=threads)
            except ImportError:
                self.engine = None
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        prov = ["CPUExecutionProvider"]
        self.image_sess = ort.InferenceSession(str(self.dir / "image_encoder.onnx"), so, providers=prov)
        self.text_sess = ort.InferenceSession(str(self.dir / "text_encoder.onnx"), so, providers=prov)
        self.tok = Tokenizer.from_file(str(self.dir / "tokenizer.json"))
        L = int(self.meta["context_length"])
        self.tok.enable_truncation(L)
        self.tok.enable_padding(pad_id=int(self.meta.get("pad_token_id", 0)), length=L)
        self.hash_sessions = {}
        for m in ("image", "text"):
            p = self.dir / f"hash_{m}.onnx"
            if p.exists():
                self.hash_sessions[m] = ort.InferenceSession(str(p), so, providers=prov)

    def preprocess(self, images: Sequence) -> np.ndarray:
        m = self.meta
        return np.stack([preprocess(im, int(m["image_size"]), m["mean"], m["std"]) for im in images])

    def encode_images(self, images: Sequence, batch: int = 64) -> np.ndarray:
        if self.engine is not None:
            from engine.preprocess import prepare

            m = self.meta
            out = [
                self.engine.embed_images(
                    prepare(
                        [np.asarray(im, dtype=np.uint8) for im in images[i : i + batch]],
                        int(m["image_size"]),
                        m["mean"],
                        m["std"],
                        m.get("interpolation", "bicubic"),
                    )
                )
                for i in range(0, len(images), batch)
            ]
            return np.concatenate(out) if out else np.zeros((0, m["embed_dim"]), np.float32)
        out = [
            self.image_sess.run(["image_embedding"], {"image": self.preprocess(images[i : i + batch])})[0]
            for i in range(0, len(images), batch)
        ]
        return np.concatenate(out) if out else np.zeros((0, self.meta["embed_dim"]), np.float32)

    def encode_texts(self, texts: Sequence[str], batch: int = 256) -> np.ndarray:
        if self.engine is not None:
            return self.engine.embed_texts(list(texts), batch_size=batch)
        out = []
        inputs = self.meta.get("text_inputs", ["input_ids", "attention_mask"])
        for i in range(0, len(texts), batch):
            enc = self.tok.encode_batch(list(texts[i : i + batch]))
            feed = {"input_ids": np.array([e.ids for e in enc], dtype=np.int64)}
            if "attention_mask" in inputs:
                feed["attention_mask"] = np.array([e.attention_mask for e in enc], dtype=np.int64)
            out.append(self.text_sess.run(["text_embedding"], feed)[0])
        return np.concatenate(out) if out else np.zeros((0, self.meta["embed_dim"]), np.float32)

    def hash_codes(self, emb: np.ndarray, modality: str) -> np.ndarray:
        return self.hash_sessions[modality].run(["code"], {"embedding": emb.astype(np.float32)})[0]
