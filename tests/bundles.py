"""Tiny, valid model bundles built without torch (onnx.helper + tokenizers) for fast engine tests.

Image encoder: channel means and pooled ReLU-conv features -> MatMul -> L2 norm; dims 0..2 carry the
red/green/blue means, so the text queries "red", "green", "blue" find tiles of that colour.
Text encoder: embedding Gather -> masked mean -> L2 norm; words "red"/"green"/"blue" map to axes 0..2.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parent.parent
OPSET = 17


def _l2_nodes(inp: str, out: str) -> list:
    return [
        helper.make_node("ReduceL2", [inp], [f"{out}_n"], axes=[1], keepdims=1),
        helper.make_node("Max", [f"{out}_n", "eps"], [f"{out}_nc"]),
        helper.make_node("Div", [inp, f"{out}_nc"], [out]),
    ]


def _save(graph, path: Path) -> None:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def image_graph(embed_dim: int, image_size: int, rng, input_size: int | None = None, name="image"):
    s = input_size or image_size
    conv_w = rng.standard_normal((8, 3, 3, 3)).astype(np.float32) * 0.3
    w = rng.standard_normal((11, embed_dim)).astype(np.float32) * 0.3
    w[0:3, :] = 0.0
    w[3:, 0:3] = 0.0  # conv features never touch the colour axes
    w[0:3, 0:3] = 5.0 * np.eye(3, dtype=np.float32)
    nodes = [
        helper.make_node("GlobalAveragePool", [name], ["gap"]),
        helper.make_node("Conv", [name, "conv_w"], ["conv"], strides=[2, 2]),
        helper.make_node("Relu", ["conv"], ["relu"]),
        helper.make_node("GlobalAveragePool", ["relu"], ["gap2"]),
        helper.make_node("Concat", ["gap", "gap2"], ["feat4"], axis=1),
        helper.make_node("Flatten", ["feat4"], ["feat"], axis=1),
        helper.make_node("MatMul", ["feat", "w"], ["proj"]),
        *_l2_nodes("proj", "image_embedding"),
    ]
    return helper.make_graph(
        nodes,
        "image_encoder",
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, ["N", 3, s, s])],
        [helper.make_tensor_value_info("image_embedding", TensorProto.FLOAT, ["N", embed_dim])],
        [
            numpy_helper.from_array(conv_w, "conv_w"),
            numpy_helper.from_array(w, "w"),
            numpy_helper.from_array(np.array([1e-12], np.float32), "eps"),
        ],
    )


def text_graph(table: np.ndarray, context_length: int):
    d = table.shape[1]
    nodes = [
        helper.make_node("Gather", ["table", "input_ids"], ["tok"], axis=0),
        helper.make_node("Cast", ["attention_mask"], ["maskf"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["maskf", "ax2"], ["mask3"]),
        helper.make_node("Mul", ["tok", "mask3"], ["masked"]),
        helper.make_node("ReduceSum", ["masked", "ax1"], ["summed"], keepdims=0),
        *_l2_nodes("summed", "text_embedding"),
    ]
    return helper.make_graph(
        nodes,
        "text_encoder",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["N", context_length]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["N", context_length]),
        ],
        [helper.make_tensor_value_info("text_embedding", TensorProto.FLOAT, ["N", d])],
        [
            numpy_helper.from_array(table, "table"),
            numpy_helper.from_array(np.array([1e-12], np.float32), "eps"),
            numpy_helper.from_array(np.array([2], np.int64), "ax2"),
            numpy_helper.from_array(np.array([1], np.int64), "ax1"),
        ],
    )


def hash_graph(w: np.ndarray):
    nodes = [helper.make_node("MatMul", ["embedding", "w"], ["h"]), helper.make_node("Tanh", ["h"], ["code"])]
    return helper.make_graph(
        nodes,
        "hash",
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["N", w.shape[0]])],
        [helper.make_tensor_value_info("code", TensorProto.FLOAT, ["N", w.shape[1]])],
        [numpy_helper.from_array(w, "w")],
    )


def _vocabulary() -> list[str]:
    words = set("red green blue a an the of with and near next to river road forest water field".split())
    for f in ("scene_classes.json", "descriptions.json"):
        words |= set(re.findall(r"[a-z]+", (ROOT / "resources" / "prompts" / f).read_text().lower()))
    return ["[PAD]", "[UNK]", *sorted(words)]


def build_synthetic_bundle(
    directory,
    embed_dim: int = 32,
    image_size: int = 32,
    *,
    name: str = "synthetic",
    version: str = "0.0.1",
    context_length: int = 16,
    hashes: bool = False,
    seed: int = 0,
    gsd_m: float | None = None,
    text_dim: int | None = None,
    onnx_image_size: int | None = None,
) -> Path:
    """Write a valid bundle to ``directory`` (``text_dim``/``onnx_image_size`` make deliberately broken ones)."""
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.normalizers import Lowercase
    from tokenizers.pre_tokenizers import Whitespace

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    vocab = _vocabulary()
    tdim = text_dim or embed_dim
    table = rng.standard_normal((len(vocab), tdim)).astype(np.float32) * 0.2
    table[0] = 0.0
    for i, word in enumerate(("red", "green", "blue")):
        table[vocab.index(word)] = 0.0
        table[vocab.index(word), i] = 3.0
    _save(image_graph(embed_dim, image_size, rng, onnx_image_size), d / "image_encoder.onnx")
    _save(text_graph(table, context_length), d / "text_encoder.onnx")
    tok = Tokenizer(WordLevel({w: i for i, w in enumerate(vocab)}, unk_token="[UNK]"))
    tok.normalizer = Lowercase()
    tok.pre_tokenizer = Whitespace()
    tok.save(str(d / "tokenizer.json"))
    sc = json.loads((ROOT / "resources" / "prompts" / "scene_classes.json").read_text())
    index = {w: i for i, w in enumerate(vocab)}

    def embed(text: str) -> np.ndarray:
        ids = [index.get(t, 1) for t in re.findall(r"\w+|[^\w\s]", text.lower())][:context_length]
        v = table[ids].sum(axis=0)
        return v / max(np.linalg.norm(v), 1e-12)

    cls = np.stack([np.mean([embed(p) for p in sc["prompts"][c]], axis=0) for c in sc["classes"]])
    cls /= np.linalg.norm(cls, axis=1, keepdims=True)
    (d / "scene_classes.json").write_text(json.dumps({"classes": sc["classes"], "prompts": sc["prompts"]}))
    cls = np.pad(cls, ((0, 0), (0, max(0, embed_dim - tdim))))[:, :embed_dim]  # broken bundles: keep shape
    np.save(d / "scene_class_embeddings.npy", cls.astype(np.float32))
    meta = {
        "format_version": 1,
        "name": name,
        "version": version,
        "architecture": "synthetic-test",
        "embed_dim": embed_dim,
        "image_size": image_size,
        "mean": [0.5, 0.5, 0.5],
        "std": [0.5, 0.5, 0.5],
        "interpolation": "bilinear",
        "context_length": context_length,
        "pad_token_id": 0,
        "text_inputs": ["input_ids", "attention_mask"],
        "lowercase": False,
        "input_bands": ["red", "green", "blue"],
        "gsd_m": gsd_m,
        "hash_bits": 64 if hashes else None,
        "precision": "fp32",
        "metrics": {},
        "licenses": {"weights": "test", "training_data": "none"},
        "created": "2026-11-23T00:00:00Z",
        "training_config": "tests/bundles.py",
    }
    (d / "model.json").write_text(json.dumps(meta, indent=1))
    if hashes:
        w = rng.standard_normal((embed_dim, 64)).astype(np.float32)
        _save(hash_graph(w), d / "hash_image.onnx")
        _save(hash_graph(w), d / "hash_text.onnx")
    return d
