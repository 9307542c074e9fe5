"""A Hugging Face ``tokenizer.json`` for the CLIP BPE (open_clip's ``bpe_simple_vocab_16e6.txt.gz``), offline.

The bundle contract needs a ``tokenizers`` file; open_clip ships only the raw BPE merges. We build the
byte-level BPE with the ``tokenizers`` library the way transformers' ``CLIPConverter`` does.
Ids equal ``open_clip.tokenize`` (tested); padding id 0 as in open_clip.
"""

from __future__ import annotations

import gzip
from pathlib import Path


def _bytes_to_unicode() -> dict[int, str]:
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs], strict=True))


def write_clip_tokenizer_json(out: str | Path) -> Path:
    """Write ``tokenizer.json`` for the 49408-token CLIP BPE to ``out`` (mirrors transformers' CLIPConverter)."""
    import open_clip
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    bpe = Path(open_clip.__file__).resolve().parent / "bpe_simple_vocab_16e6.txt.gz"
    lines = gzip.open(bpe).read().decode("utf-8").split("\n")[1 : 49152 - 256 - 2 + 1]
    merges = [tuple(m.split()) for m in lines]
    vocab = list(_bytes_to_unicode().values())
    vocab = vocab + [v + "</w>" for v in vocab] + ["".join(m) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    tok = Tokenizer(
        models.BPE(
            vocab={t: i for i, t in enumerate(vocab)},
            merges=merges,
            continuing_subword_prefix="",
            end_of_word_suffix="</w>",
            unk_token="<|endoftext|>",
            fuse_unk=False,
        )
    )
    tok.normalizer = normalizers.Sequence(
        [normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Lowercase()]
    )
    pattern = r"""'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(pattern), behavior="removed", invert=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.RobertaProcessing(
        ("<|endoftext|>", len(vocab) - 1),
        ("<|startoftext|>", len(vocab) - 2),
        trim_offsets=False,
        add_prefix_space=False,
    )
    tok.add_special_tokens(["<|startoftext|>", "<|endoftext|>"])
    out = Path(out)
    tok.save(str(out))
    return out
