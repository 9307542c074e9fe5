"""Preprocessing (exactly the bundle contract) and the frozen-feature caches that make CPU training cheap.

Image preprocessing: RGB uint8 -> resize S x S bicubic (Pillow) -> /255 -> (x-mean)/std -> CHW float32, through
``engine.preprocess`` (one implementation of the contract for training, export checks and serving).
The frozen trunks (EfficientNet-Lite0 blocks 0-4, MobileNetV2 features 0-13, MiniLM embeddings + lower layers)
run once per image / unique caption; results are stored in fp16 under ``cache_dir`` keyed by a hash of
everything that affects them, so the noise/ablation runs of issue 6 share one cache.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from training.augment import ImageAugParams, augment_view, view_rng


def _rgb(img: np.ndarray | Image.Image) -> np.ndarray:
    if isinstance(img, Image.Image):
        return np.asarray(img.convert("RGB"), dtype=np.uint8)
    return np.asarray(img, dtype=np.uint8)


def preprocess(rgb: np.ndarray | Image.Image, size: int, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """RGB uint8 [H,W,3] (or PIL image) -> float32 [3,S,S] per docs/contracts.md §1, by the engine's own
    implementation (``engine.preprocess``), so the bundle's preprocessing contract has one implementation."""
    from engine.preprocess import prepare

    return prepare([_rgb(rgb)], size, mean, std, "bicubic")[0]


def load_images(root: Path, filenames: Sequence[str], size: int, mean, std, transform=None) -> torch.Tensor:
    """Images of ``root/filenames`` as a contract-preprocessed float32 batch [N,3,S,S] (``engine.preprocess``);
    ``transform(filename, image)`` changes each source image first (an augmentation view)."""
    from engine.preprocess import prepare

    images = [Image.open(root / f) for f in filenames]
    if transform is not None:
        images = [transform(f, im) for f, im in zip(filenames, images, strict=True)]
    return torch.from_numpy(prepare([_rgb(im) for im in images], size, mean, std, "bicubic"))


def load_tokenizer(path: str | Path, context_length: int, pad_id: int = 0):
    """HF ``tokenizers`` tokenizer with padding/truncation to ``context_length`` (as the engine sets it)."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(path))
    tok.enable_truncation(context_length)
    tok.enable_padding(pad_id=pad_id, length=context_length)
    return tok


def tokenize(tok, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
    enc = tok.encode_batch(list(texts))
    ids = torch.tensor([e.ids for e in enc], dtype=torch.long)
    mask = torch.tensor([e.attention_mask for e in enc], dtype=torch.long)
    return ids, mask


def cache_key(**parts) -> str:
    return hashlib.sha1(json.dumps(parts, sort_keys=True, default=str).encode(), usedforsecurity=False).hexdigest()[:16]


def _cached(cache_dir: Path | None, key: str, compute):
    if cache_dir is None:
        return compute()
    path = Path(cache_dir) / f"{key}.pt"
    if path.exists():
        return torch.load(path, map_location="cpu", weights_only=True)
    out = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(out, tmp)
    tmp.rename(path)
    return out


@torch.no_grad()
def image_trunk_cache(
    model,
    root: Path,
    filenames: Sequence[str],
    cache_dir: Path | None,
    batch: int = 64,
    desc: str = "image cache",
    view: int = 0,
    aug: ImageAugParams | None = None,
    aug_seed: int = 0,
) -> dict[str, torch.Tensor]:
    """{'img_mid': fp16 [N,C,h,w], 'instr_mid': fp16 [N,C',h,w]} from the frozen trunks; ``view`` > 0: of the
    images' augmentation view ``view`` (training/augment.py, drawn from ``aug`` and ``aug_seed``)."""
    cfg = model.cfg
    parts = dict(
        kind="img",
        files=list(filenames),
        root=str(root),
        size=cfg.image_size,
        mean=cfg.mean,
        std=cfg.std,
        pre=cfg.pretrained,
        fb=cfg.image_freeze_blocks,
        fi=cfg.instr_freeze_features,
    )
    transform = None
    if view > 0:
        aug = aug or ImageAugParams()
        parts.update(view=view, aug=aug.key(), aug_seed=aug_seed)

        def transform(name: str, im: Image.Image) -> Image.Image:
            return augment_view(im, view_rng(name, view, aug_seed), aug)

    key = cache_key(**parts)

    def compute():
        cl = torch.channels_last  # ~2.5x faster convolutions on CPU
        model.image_trunk.eval().to(memory_format=cl)
        model.instr.trunk.eval().to(memory_format=cl)
        mids, instrs = [], []
        for i in tqdm(range(0, len(filenames), batch), desc=desc, mininterval=10):
            x = load_images(root, filenames[i : i + batch], cfg.image_size, cfg.mean, cfg.std, transform)
            a, b = model.image_trunk_features(x.contiguous(memory_format=cl))
            mids.append(a.contiguous().half())
            instrs.append(b.contiguous().half())
        return {"img_mid": torch.cat(mids), "instr_mid": torch.cat(instrs)}

    return _cached(cache_dir, key, compute)


@torch.no_grad()
def text_trunk_cache(
    model, tok, texts: Sequence[str], cache_dir: Path | None, batch: int = 256, desc: str = "text cache"
) -> dict[str, torch.Tensor]:
    """{'h_mid': fp16 [U,L,384], 'mask': int8 [U,L]} for the given (unique) texts."""
    cfg = model.cfg
    key = cache_key(kind="txt", texts=list(texts), L=cfg.context_length, pre=cfg.pretrained, fl=cfg.text_freeze_layers)

    def compute():
        model.text.eval()
        hs, ms = [], []
        for i in tqdm(range(0, len(texts), batch), desc=desc, mininterval=10):
            ids, mask = tokenize(tok, texts[i : i + batch])
            hs.append(model.text_trunk_features(ids, mask).half())
            ms.append(mask.to(torch.int8))
        return {"h_mid": torch.cat(hs), "mask": torch.cat(ms)}

    return _cached(cache_dir, key, compute)


def d4_augment(x: torch.Tensor, gen: torch.Generator | None = None) -> torch.Tensor:
    """Random flip / 90-degree rotation per sample on feature maps [B,C,h,w] (aerial scenes have no 'up')."""
    out = x.clone()
    k = torch.randint(0, 4, (x.shape[0],), generator=gen)
    f = torch.randint(0, 2, (x.shape[0],), generator=gen)
    for r in range(4):
        for fl in range(2):
            sel = (k == r) & (f == fl)
            if sel.any():
                y = x[sel]
                if fl:
                    y = y.flip(-1)
                out[sel] = torch.rot90(y, r, dims=(-2, -1))
    return out


@torch.no_grad()
def embed_cached(
    model,
    img_mid: torch.Tensor,
    instr_feat: torch.Tensor,
    h_mid: torch.Tensor,
    mask: torch.Tensor,
    batch: int = 256,
) -> tuple[np.ndarray, np.ndarray]:
    """Image and text embeddings (numpy) from cached trunk features, eval mode."""
    model.eval()
    ie = [
        model.encode_image_cached(
            img_mid[i : i + batch].float().contiguous(memory_format=torch.channels_last), instr_feat[i : i + batch]
        )
        for i in range(0, len(img_mid), batch)
    ]
    te = []
    for i in range(0, len(h_mid), batch):
        m = mask[i : i + batch].long()
        L = int(m.sum(1).max())
        te.append(model.encode_text_cached(h_mid[i : i + batch, :L].float(), m[:, :L]))
    return torch.cat(ie).numpy(), torch.cat(te).numpy()
