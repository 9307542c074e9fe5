"""Model bundle loading and validation (docs/contracts.md section 1)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from engine.errors import CorruptData, NotFound

REQUIRED_FILES = ("model.json", "image_encoder.onnx", "text_encoder.onnx", "tokenizer.json")
INTERPOLATIONS = ("bicubic", "bilinear", "nearest")


@dataclass(frozen=True)
class ModelMeta:
    """The fields of ``model.json`` the engine uses."""

    name: str
    version: str
    embed_dim: int
    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str = "bicubic"
    context_length: int = 77
    pad_token_id: int = 0
    text_inputs: tuple[str, ...] = ("input_ids",)
    lowercase: bool = False
    gsd_m: float | None = None
    hash_bits: int | None = None
    logit_scale: float = 100.0
    raw: dict = field(default_factory=dict, compare=False, repr=False)


@dataclass
class Bundle:
    """A validated bundle directory."""

    path: Path
    meta: ModelMeta
    classes: list[str]
    prompts: dict[str, list[str]]
    class_embeddings: np.ndarray | None

    @property
    def image_onnx(self) -> Path:
        return self.path / "image_encoder.onnx"

    @property
    def text_onnx(self) -> Path:
        return self.path / "text_encoder.onnx"

    @property
    def tokenizer_json(self) -> Path:
        return self.path / "tokenizer.json"

    @property
    def hash_image_onnx(self) -> Path | None:
        p = self.path / "hash_image.onnx"
        return p if p.is_file() and (self.path / "hash_text.onnx").is_file() else None

    @property
    def hash_text_onnx(self) -> Path | None:
        return self.path / "hash_text.onnx" if self.hash_image_onnx else None

    @property
    def key(self) -> str:
        return f"{self.meta.name}@{self.meta.version}"


def _need(cond: bool, path: Path, what: str) -> None:
    if not cond:
        raise CorruptData(f"invalid model bundle {path}: {what}")


def parse_meta(data: dict, path: Path) -> ModelMeta:
    """Validate ``model.json`` content."""
    _need(isinstance(data, dict), path, "model.json is not a JSON object")
    _need(data.get("format_version") == 1, path, f"unsupported format_version {data.get('format_version')!r}")
    for key in ("name", "version", "embed_dim", "image_size", "mean", "std"):
        _need(key in data, path, f"model.json lacks {key!r}")
    _need(isinstance(data["name"], str) and data["name"].strip() != "", path, "name must be a non-empty string")
    for key in ("embed_dim", "image_size"):
        _need(isinstance(data[key], int) and 1 <= data[key] <= 8192, path, f"{key} must be an integer 1..8192")
    for key in ("mean", "std"):
        v = data[key]
        _need(
            isinstance(v, list) and len(v) == 3 and all(isinstance(x, int | float) for x in v),
            path,
            f"{key} must be a list of 3 numbers",
        )
    _need(all(x > 0 for x in data["std"]), path, "std values must be positive")
    interp = data.get("interpolation", "bicubic")
    _need(interp in INTERPOLATIONS, path, f"interpolation must be one of {INTERPOLATIONS}")
    text_inputs = tuple(data.get("text_inputs", ["input_ids"]))
    _need(
        text_inputs and text_inputs[0] == "input_ids" and set(text_inputs) <= {"input_ids", "attention_mask"},
        path,
        "text_inputs must be ['input_ids'] or ['input_ids', 'attention_mask']",
    )
    ctx = data.get("context_length", 77)
    _need(isinstance(ctx, int) and 1 <= ctx <= 4096, path, "context_length must be an integer 1..4096")
    gsd = data.get("gsd_m")
    _need(gsd is None or (isinstance(gsd, int | float) and gsd > 0), path, "gsd_m must be positive or null")
    hb = data.get("hash_bits")
    _need(hb is None or (isinstance(hb, int) and hb > 0 and hb % 8 == 0), path, "hash_bits must be a multiple of 8")
    return ModelMeta(
        name=data["name"],
        version=str(data["version"]),
        embed_dim=data["embed_dim"],
        image_size=data["image_size"],
        mean=tuple(map(float, data["mean"])),
        std=tuple(map(float, data["std"])),
        interpolation=interp,
        context_length=ctx,
        pad_token_id=int(data.get("pad_token_id", 0)),
        text_inputs=text_inputs,
        lowercase=bool(data.get("lowercase", False)),
        gsd_m=float(gsd) if gsd else None,
        hash_bits=hb,
        logit_scale=float(data.get("logit_scale", 100.0)),
        raw=data,
    )


def load_bundle(path: str | os.PathLike) -> Bundle:
    """Load and validate a bundle's metadata and files (ONNX graphs are checked by the encoder)."""
    p = Path(path).expanduser()
    if not p.is_dir():
        raise NotFound(f"model bundle not found: {p} (expected a directory with model.json)")
    p = p.resolve()
    for name in REQUIRED_FILES:
        f = p / name
        _need(f.is_file(), p, f"missing {name}")
        _need(f.stat().st_size > 0, p, f"{name} is empty")
    try:
        data = json.loads((p / "model.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CorruptData(f"invalid model bundle {p}: model.json unreadable ({exc})") from None
    meta = parse_meta(data, p)
    classes: list[str] = []
    prompts: dict[str, list[str]] = {}
    class_emb = None
    sc = p / "scene_classes.json"
    if sc.is_file():
        try:
            sdata = json.loads(sc.read_text(encoding="utf-8"))
            classes = [str(c) for c in sdata["classes"]]
            prompts = {str(k): [str(t) for t in v] for k, v in sdata.get("prompts", {}).items()}
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise CorruptData(f"invalid model bundle {p}: scene_classes.json unreadable ({exc})") from None
        npy = p / "scene_class_embeddings.npy"
        _need(npy.is_file(), p, "scene_classes.json present but scene_class_embeddings.npy missing")
        try:
            class_emb = np.load(npy, allow_pickle=False).astype(np.float32)
        except (OSError, ValueError) as exc:
            raise CorruptData(f"invalid model bundle {p}: scene_class_embeddings.npy unreadable ({exc})") from None
        _need(
            class_emb.shape == (len(classes), meta.embed_dim),
            p,
            f"scene_class_embeddings.npy has shape {class_emb.shape}, expected ({len(classes)}, {meta.embed_dim})",
        )
    return Bundle(path=p, meta=meta, classes=classes, prompts=prompts, class_embeddings=class_emb)


def bundle_bytes(path: str | os.PathLike) -> int:
    """Size of a bundle folder's files (what a model picker shows)."""
    return sum(f.stat().st_size for f in Path(path).iterdir() if f.is_file())


def measured_test_mr(meta: ModelMeta) -> float | None:
    """The bundle's measured test mR on rsicd_aid150 from ``model.json`` metrics (None when not measured)."""
    return meta.raw.get("metrics", {}).get("rsicd_aid150_test", {}).get("mr")


def model_row(meta: ModelMeta, path: Path, default: bool) -> dict:
    """One model's row in ``GET /models`` and ``models list`` (docs/contracts.md §3)."""
    return {
        "name": meta.name,
        "version": meta.version,
        "path": str(path),
        "embed_dim": meta.embed_dim,
        "bytes": bundle_bytes(path),
        "test_mr": measured_test_mr(meta),
        # forward passes per tile inside the image encoder (§1): what indexing speed depends on
        "image_orientations": int(meta.raw.get("image_orientations", 1)),
        "default": default,
    }
