"""Auxiliary word task (issue 17, step 5): nouns and attributes mined from the training captions, one multi-hot
target row per image ("which of these words does any caption of this image use").

Scene identity alone is worth about 13.5 test mR; what is left must come from telling apart images of one scene
("a *red* roof", "*many* *cars*", "a *pond* beside *trees*"). The words are embedded by the text tower itself, so the
task adds no parameters and nothing to the bundle: the image embedding is pulled towards the embeddings of the
words of its captions (training/losses/word.py).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

# function words and caption boilerplate ("there are", "is located", "in the image"): they say nothing about
# what sets one image apart
STOPWORDS = frozenset(
    """a an the and or of in on at to with without by from for as into onto over under near next beside besides
    between among around along across through behind above below some much more most
    other others another each every both all any no not this that these those there here it its it's they them
    their is are was were be been being has have had do does did can could may might will would shall should
    which who whom whose what where when while also very quite too so such than then just only like
    image picture photo view scene area part parts side sides one two three four five six seven eight nine ten
    piece pieces kind kinds located surrounded stands stand standing lies lie lying built seen shown appear appears
    well""".split()
)
TOKEN = re.compile(r"[a-z]+")


@dataclass
class WordParams:
    """Which words become targets: the ``size`` most frequent by number of images, among words used for at least
    ``min_images`` images and at most ``max_frac`` of all images (a word on every image tells none apart)."""

    size: int = 300
    min_images: int = 20
    max_frac: float = 0.4
    min_len: int = 3

    def __post_init__(self) -> None:
        for name in ("size", "min_images", "min_len"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"words.{name}: expected an integer >= 1, got {v!r}")
        if isinstance(self.max_frac, bool) or not isinstance(self.max_frac, int | float) or not 0 < self.max_frac <= 1:
            raise ValueError(f"words.max_frac: expected a number in (0, 1], got {self.max_frac!r}")
        self.max_frac = float(self.max_frac)


def caption_words(text: str, min_len: int = 3) -> set[str]:
    """Content words of one caption: lower case, letters only, no stop words."""
    return {w for w in TOKEN.findall(text.lower()) if len(w) >= min_len and w not in STOPWORDS}


def build_vocab(captions_per_image: Sequence[Sequence[str]], params: WordParams) -> list[str]:
    """The target words, most frequent first (ties alphabetically, so the vocabulary is deterministic)."""
    df: Counter[str] = Counter()
    for caps in captions_per_image:
        df.update(set().union(*(caption_words(c, params.min_len) for c in caps)) if caps else set())
    cap = params.max_frac * len(captions_per_image)
    ok = [(w, n) for w, n in df.items() if params.min_images <= n <= cap]
    ok.sort(key=lambda wn: (-wn[1], wn[0]))
    return [w for w, _ in ok[: params.size]]


def image_word_targets(captions_per_image: Sequence[Sequence[str]], vocab: Sequence[str], min_len: int = 3):
    """Bool [N_images, len(vocab)]: image i uses word j in any of its captions."""
    col = {w: j for j, w in enumerate(vocab)}
    out = np.zeros((len(captions_per_image), len(vocab)), dtype=bool)
    for i, caps in enumerate(captions_per_image):
        for c in caps:
            for w in caption_words(c, min_len):
                j = col.get(w)
                if j is not None:
                    out[i, j] = True
    return out


@dataclass
class WordTask:
    """The train split's word task: the vocabulary, its text-trunk cache, one target row per train image."""

    vocab: list[str]
    h_mid: torch.Tensor  # fp16 [V, L, 384] (training.features.text_trunk_cache of ``vocab``)
    mask: torch.Tensor  # int8 [V, L]
    targets: torch.Tensor  # bool [N_images, V]


def captions_per_image(row_img: np.ndarray, captions: Sequence[str], n_images: int) -> list[list[str]]:
    """The captions of each image (``row_img[j]`` is the image of caption row ``j``)."""
    out: list[list[str]] = [[] for _ in range(n_images)]
    for i, c in zip(row_img, captions, strict=True):
        out[int(i)].append(c)
    return out


def word_task(model, tok, train, params: WordParams, cache_dir) -> WordTask:
    """The word task of ``train`` (a ``training.data.splits.Split``): vocabulary, targets, the words' text cache."""
    from training.features import text_trunk_cache

    caps = captions_per_image(train.row_img, [r.caption for r in train.rows], len(train.files))
    vocab = build_vocab(caps, params)
    if not vocab:
        raise ValueError(f"word task: no word is used by at least words.min_images={params.min_images} train images")
    targets = torch.from_numpy(image_word_targets(caps, vocab, params.min_len))
    tc = text_trunk_cache(model, tok, vocab, cache_dir, desc="word cache")
    return WordTask(vocab, tc["h_mid"], tc["mask"], targets)
