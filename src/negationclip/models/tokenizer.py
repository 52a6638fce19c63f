"""CLIP's BPE tokenizer, built offline, with OpenAI's text cleaning.

The vocabulary comes from ``bpe_simple_vocab_16e6.txt.gz`` (shipped in ``assets/``, identical
to the file in the ``openai-clip``/``open_clip_torch`` wheels); ``vocab.json`` and
``merges.txt`` are derived from it exactly as OpenAI's ``SimpleTokenizer`` builds its tables.
The fast Hugging Face ``CLIPTokenizer`` does the byte-pair encoding; OpenAI's cleaning (ftfy,
double HTML unescape, whitespace collapse) runs first, so ids equal OpenAI's ``clip.tokenize``
on hard inputs, and the wrapped tokenizer saves as a normal Hugging Face tokenizer folder that
diffusers and CLIPSeg load.
"""

from __future__ import annotations

import functools
import gzip
import html
import json
import os
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import ftfy
import regex
import torch

CONTEXT_LENGTH = 77
SOT = "<|startoftext|>"
EOT = "<|endoftext|>"
_BPE_FILE = "bpe_simple_vocab_16e6.txt.gz"


def default_bpe_path() -> Path:
    return Path(__file__).resolve().parent / "assets" / _BPE_FILE


@functools.lru_cache()
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable-unicode table (as in OpenAI's simple_tokenizer)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) \
        + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(2 ** 8):
        if b not in bs:
            bs.append(b)
            cs.append(2 ** 8 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


@functools.lru_cache()
def vocab_and_merges(bpe_path: str | None = None) -> tuple[dict[str, int], list[str]]:
    """Derive (vocab, merges) from the gzipped BPE file, as OpenAI's SimpleTokenizer does."""
    path = Path(bpe_path) if bpe_path else default_bpe_path()
    lines = gzip.open(path).read().decode("utf-8").split("\n")
    merges = lines[1:49152 - 256 - 2 + 1]
    pairs = [tuple(m.split()) for m in merges]
    vocab = list(bytes_to_unicode().values())
    vocab = vocab + [v + "</w>" for v in vocab]
    vocab.extend("".join(p) for p in pairs)
    vocab.extend([SOT, EOT])
    return {tok: i for i, tok in enumerate(vocab)}, [" ".join(p) for p in pairs]


def write_vocab_files(folder: str | os.PathLike) -> tuple[Path, Path]:
    """Write ``vocab.json`` and ``merges.txt`` (the Hugging Face slow-tokenizer files)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab, merges = vocab_and_merges()
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n",
                                       encoding="utf-8")
    return folder / "vocab.json", folder / "merges.txt"


_WS = regex.compile(r"\s+")


def basic_clean(text: str) -> str:
    """OpenAI's (and open_clip's) basic_clean: ftfy, double HTML unescape, strip."""
    if text.isascii() and text.isprintable() and "&" not in text:
        # ftfy and unescaping change nothing here (every fix needs a non-ASCII character, a
        # control character or an entity): skip them, most of the cost of tokenising captions
        return text.strip()
    text = ftfy.fix_text(text)
    return html.unescape(html.unescape(text)).strip()


def whitespace_clean(text: str) -> str:
    return _WS.sub(" ", text.strip()).strip()


def clean_text(text: str) -> str:
    """OpenAI's basic_clean + whitespace_clean + lower-casing."""
    return whitespace_clean(basic_clean(text)).lower()


_PUNCT = str.maketrans("", "", string.punctuation)


def canonicalize_text(text: str) -> str:
    """big_vision's SigLIP text canonicalisation (as open_clip's ``clean="canonicalize"``):
    basic_clean, underscores to spaces, punctuation removed, lower case, whitespace collapsed."""
    text = basic_clean(text).replace("_", " ").translate(_PUNCT).lower()
    return " ".join(text.split()).strip()


def _split_join(text: str) -> str:
    return " ".join(text.split()).strip()  # open_clip's whitespace_clean (str.split, not a regex)


#: open_clip ``HFTokenizer`` cleaning rules (``text_cfg.tokenizer_kwargs.clean``), by name
TEXT_CLEANERS = {
    "canonicalize": canonicalize_text,
    "lower": lambda t: _split_join(basic_clean(t)).lower(),
    "whitespace": lambda t: _split_join(basic_clean(t)),
    "whitespace_underscore": lambda t: _split_join(basic_clean(t).replace("_", " ")),
}


@functools.lru_cache()
def _hf_tokenizer_from_assets():
    from transformers import CLIPTokenizer

    vocab, merges = vocab_and_merges()
    return CLIPTokenizer(vocab=dict(vocab), merges=[tuple(m.split(" ")) for m in merges])


@dataclass
class TokenBatch:
    input_ids: torch.Tensor       # [B, L] int64
    attention_mask: torch.Tensor  # [B, L] int64, 1 for real tokens (SOT..EOT)


class ClipTokenizer:
    """OpenAI-exact CLIP tokenization over a Hugging Face ``CLIPTokenizer``.

    Call it on a list of strings. ``padding="longest"`` (default) pads to the longest text of
    the batch (dynamic padding); ``padding="max_length"`` pads to ``context_length`` like
    ``clip.tokenize``. Over-long texts are truncated with end-of-text kept as the last token.
    """

    def __init__(self, hf_tokenizer=None, context_length: int = CONTEXT_LENGTH):
        self.hf = hf_tokenizer if hf_tokenizer is not None else _hf_tokenizer_from_assets()
        self.context_length = context_length
        self.sot_token_id = self.hf.convert_tokens_to_ids(SOT)
        self.eot_token_id = self.hf.convert_tokens_to_ids(EOT)
        # Our padding id is end-of-text: HF's CLIP text tower pools at the first EOT, and the
        # causal mask means no real token ever attends to padding.
        self.pad_token_id = self.eot_token_id

    @classmethod
    def from_pretrained(cls, folder: str | os.PathLike, context_length: int | None = None):
        from transformers import AutoTokenizer

        hf = AutoTokenizer.from_pretrained(str(folder))
        ctx = context_length or min(int(getattr(hf, "model_max_length", CONTEXT_LENGTH) or
                                        CONTEXT_LENGTH), CONTEXT_LENGTH * 100)
        if ctx > 10_000:  # "infinite" model_max_length in some configs
            ctx = CONTEXT_LENGTH
        return cls(hf, context_length=ctx)

    def save_pretrained(self, folder: str | os.PathLike) -> None:
        self.hf.model_max_length = self.context_length
        self.hf.save_pretrained(str(folder))

    @property
    def vocab_size(self) -> int:
        return len(self.hf)

    def encode(self, text: str) -> list[int]:
        """Token ids of one text, without SOT/EOT and without truncation."""
        return self.hf(clean_text(text), add_special_tokens=False)["input_ids"]

    def encode_many(self, texts: Sequence[str]) -> list[list[int]]:
        """``[encode(t) for t in texts]`` in one batched call (several times faster)."""
        if not texts:
            return []
        return self.hf([clean_text(t) for t in texts], add_special_tokens=False)["input_ids"]

    def __call__(self, texts: str | Sequence[str], *, padding: str = "longest",
                 context_length: int | None = None) -> TokenBatch:
        if isinstance(texts, str):
            texts = [texts]
        ctx = context_length or self.context_length
        rows = []
        for t in texts:
            ids = self.encode(t)[: ctx - 2]
            rows.append([self.sot_token_id, *ids, self.eot_token_id])
        width = ctx if padding == "max_length" else max((len(r) for r in rows), default=2)
        input_ids = torch.full((len(rows), width), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            input_ids[i, : len(r)] = torch.tensor(r, dtype=torch.long)
            attention_mask[i, : len(r)] = 1
        return TokenBatch(input_ids, attention_mask)

    def tokenize_openai(self, texts: str | Sequence[str], context_length: int | None = None
                        ) -> torch.Tensor:
        """Exactly ``clip.tokenize(texts, truncate=True)``: padded to 77 with zeros."""
        batch = self(texts, padding="max_length", context_length=context_length)
        return batch.input_ids * batch.attention_mask
