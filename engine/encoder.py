"""ONNX Runtime encoders for a bundle: image batches, text queries (cached), optional hash heads."""

from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

from engine.bundle import Bundle
from engine.errors import BadInput, CorruptData
from engine.settings import current

MAX_QUERY_CHARS = 1000


def choose_providers() -> list[str]:
    """CUDA then CPU when the CUDA provider is available (``RSITR_PROVIDER=cpu`` forces CPU)."""
    available = ort.get_available_providers()
    if not current().force_cpu and "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def _session(path, providers: list[str], threads: int | None) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    # no busy-waiting between batches: the prefetch thread needs those cycles
    if not current().ort_spin:
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if threads:
        opts.intra_op_num_threads = threads
    try:
        return ort.InferenceSession(str(path), sess_options=opts, providers=providers)
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises several unrelated types
        raise CorruptData(f"cannot load {path}: {' '.join(str(exc).split())[:300]}") from None


def _static(dim) -> int | None:
    return dim if isinstance(dim, int) else None


class Encoder:
    """Image/text encoders of one bundle; thread-safe (ORT sessions are, the query cache is locked)."""

    def __init__(self, bundle: Bundle, threads: int | None = None, cache_size: int = 1024) -> None:
        self.bundle = bundle
        self.meta = bundle.meta
        providers = choose_providers()
        self.image = _session(bundle.image_onnx, providers, threads)
        self.text = _session(bundle.text_onnx, providers, threads)
        self.hash_image = self.hash_text = None
        if bundle.hash_image_onnx:
            self.hash_image = _session(bundle.hash_image_onnx, providers, threads)
            self.hash_text = _session(bundle.hash_text_onnx, providers, threads)
        try:
            self.tokenizer = Tokenizer.from_file(str(bundle.tokenizer_json))
        except Exception as exc:  # noqa: BLE001
            raise CorruptData(f"invalid model bundle {bundle.path}: tokenizer.json unreadable ({exc})") from None
        ctx = self.meta.context_length
        self.tokenizer.enable_truncation(max_length=ctx)
        self.tokenizer.enable_padding(length=ctx, pad_id=self.meta.pad_token_id)
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()
        self._check()

    @property
    def provider(self) -> str:
        """The execution provider actually used by the image session."""
        return self.image.get_providers()[0]

    def _check(self) -> None:
        """Check graph signatures and run a probe so a wrong bundle fails at load, not mid-run."""
        path, s, d = self.bundle.path, self.meta.image_size, self.meta.embed_dim
        inp = self.image.get_inputs()
        if len(inp) != 1 or inp[0].name != "image":
            raise CorruptData(f"invalid model bundle {path}: image_encoder.onnx must have one input named 'image'")
        shape = inp[0].shape
        if len(shape) != 4 or _static(shape[1]) not in (3, None) or any(_static(x) not in (s, None) for x in shape[2:]):
            raise CorruptData(f"invalid model bundle {path}: image input shape {shape} does not match [N,3,{s},{s}]")
        names = {i.name for i in self.text.get_inputs()}
        if names != set(self.meta.text_inputs):
            raise CorruptData(
                f"invalid model bundle {path}: text_encoder.onnx inputs {sorted(names)} "
                f"do not match text_inputs {list(self.meta.text_inputs)}"
            )
        try:
            img = self.embed_images(np.zeros((1, 3, s, s), dtype=np.float32))
            txt = self._run_text(["probe"])
        except CorruptData:
            raise
        except Exception as exc:  # noqa: BLE001
            raise CorruptData(f"invalid model bundle {path}: probe inference failed ({exc})") from None
        if img.shape != (1, d):
            raise CorruptData(f"invalid model bundle {path}: image embedding dim {img.shape[1:]} != embed_dim {d}")
        if txt.shape != (1, d):
            raise CorruptData(f"invalid model bundle {path}: text embedding dim {txt.shape[1:]} != embed_dim {d}")

    def embed_images(self, batch: np.ndarray) -> np.ndarray:
        """float32 ``[N,3,S,S]`` -> L2-normalised float32 ``[N,D]``."""
        out = self.image.run(None, {"image": batch})[0]
        return _l2(out)

    def _run_text(self, texts: list[str]) -> np.ndarray:
        if self.meta.lowercase:
            texts = [t.lower() for t in texts]
        enc = self.tokenizer.encode_batch(texts)
        feeds = {"input_ids": np.asarray([e.ids for e in enc], dtype=np.int64)}
        if "attention_mask" in self.meta.text_inputs:
            feeds["attention_mask"] = np.asarray([e.attention_mask for e in enc], dtype=np.int64)
        return _l2(self.text.run(None, feeds)[0])

    def embed_texts(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        """Texts -> L2-normalised float32 ``[N,D]``, with an LRU cache per text."""
        out: list[np.ndarray | None] = []
        missing: list[int] = []
        with self._lock:
            for i, t in enumerate(texts):
                hit = self._cache.get(t)
                if hit is not None:
                    self._cache.move_to_end(t)
                else:
                    missing.append(i)
                out.append(hit)
        for start in range(0, len(missing), batch_size):
            idx = missing[start : start + batch_size]
            emb = self._run_text([texts[i] for i in idx])
            with self._lock:
                for j, i in enumerate(idx):
                    out[i] = emb[j]
                    self._cache[texts[i]] = emb[j]
                while len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
        if not out:
            return np.zeros((0, self.meta.embed_dim), dtype=np.float32)
        return np.stack(out).astype(np.float32)

    def embed_query(self, text: str) -> np.ndarray:
        """One validated query -> ``[D]``."""
        clean = " ".join(str(text).split())
        if not clean:
            raise BadInput("query is empty")
        if len(text) > MAX_QUERY_CHARS:
            raise BadInput(f"query is longer than {MAX_QUERY_CHARS} characters ({len(text)})")
        return self.embed_texts([clean])[0]

    def image_codes(self, emb: np.ndarray) -> np.ndarray:
        """Packed hash bits ``[N, K/8]`` uint8: the bundle's image hash head, else sign random projections."""
        if self.hash_image is None:
            return simhash(emb)
        return np.packbits(self.hash_image.run(None, {"embedding": emb.astype(np.float32)})[0] > 0, axis=1)

    def text_codes(self, emb: np.ndarray) -> np.ndarray:
        """Packed hash bits for text embeddings (same scheme as ``image_codes``)."""
        if self.hash_text is None:
            return simhash(emb)
        return np.packbits(self.hash_text.run(None, {"embedding": emb.astype(np.float32)})[0] > 0, axis=1)

    @property
    def code_kind(self) -> str:
        return "bundle" if self.hash_image is not None else f"simhash{SIMHASH_BITS}"


SIMHASH_BITS = 128


def simhash(emb: np.ndarray, bits: int = SIMHASH_BITS) -> np.ndarray:
    """Sign random projections (fixed seed) -> packed uint8 ``[N, bits/8]``; Hamming ~ angle."""
    d = emb.shape[1]
    proj = np.random.default_rng(20261123).standard_normal((d, bits)).astype(np.float32)
    return np.packbits(np.asarray(emb, dtype=np.float32) @ proj > 0, axis=1)


def _l2(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
