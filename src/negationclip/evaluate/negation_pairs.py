"""NegWorld's balanced negation-pairs test: is the negated text closer to the image it is true
of than to the same scene with the negated object put back?

Each record has one text and two images that differ only in the negated object, so a model
that ignores "no"/"without" scores 50% at best; ``heldout_accuracy`` covers phrasings no
training text uses (does the model generalise the cue, or memorise templates?).
"""

from __future__ import annotations

import os
import time
from collections import defaultdict
from pathlib import Path
from typing import Sequence

import torch

from ..data.negworld import NegationPair, load_negation_pairs
from ..models import ClipBundle, ImageEmbeddingCache, encode_text
from .images import check_missing, embed_keys, load_whole
from .metrics import pairwise_accuracy
from .negrefcocog import _model_name


def evaluate_negation_pairs(bundle: ClipBundle, path: str | os.PathLike | Sequence[NegationPair],
                            root: str | os.PathLike | None = None, *,
                            cache: ImageEmbeddingCache | None = None, split: str | None = None,
                            batch_size: int = 64, max_missing: float = 0.05,
                            missing_out: str | os.PathLike | None = None,
                            model_name: str | None = None) -> dict:
    """Accuracy = fraction with sim(text, image) > sim(text, foil_image); ties apart.

    ``root`` is the export root the image paths are relative to (default: the folder of
    ``path``); ``split`` keeps one split only (None: all records).
    """
    t0 = time.perf_counter()
    if isinstance(path, (str, os.PathLike)):
        pairs = load_negation_pairs(path)
        root = Path(root) if root is not None else Path(path).parent
    else:
        pairs = list(path)
        root = Path(root if root is not None else ".")
    if split is not None:
        pairs = [p for p in pairs if p.split == split]
    img = [str(root / p.image) for p in pairs]
    foil = [str(root / p.foil_image) for p in pairs]
    emb = embed_keys(bundle, img + foil, load_whole, cache, batch_size=batch_size,
                     desc="negation pairs")
    check_missing("negation-pairs", emb.failed, len(emb.keys), max_missing, missing_out)
    texts = list(dict.fromkeys(p.text for p in pairs))
    tix = {t: i for i, t in enumerate(texts)}
    temb = encode_text(bundle, texts, show_progress=False)
    keep = [i for i in range(len(pairs))
            if bool(emb.ok[emb.index[img[i]]]) and bool(emb.ok[emb.index[foil[i]]])]
    t = temb[[tix[pairs[i].text] for i in keep]]
    pos = (emb.rows([img[i] for i in keep]) * t).sum(-1)
    neg = (emb.rows([foil[i] for i in keep]) * t).sum(-1)

    def sub(mask: list[bool]) -> dict:
        m = torch.tensor(mask, dtype=torch.bool).reshape(-1)
        return pairwise_accuracy(pos[m], neg[m])

    held = [pairs[i].heldout_phrasing for i in keep]
    overall = pairwise_accuracy(pos, neg)
    h = sub(held)
    tr = sub([not x for x in held])
    by_template: dict[str, list[int]] = defaultdict(list)
    for j, i in enumerate(keep):
        by_template[pairs[i].template].append(j)
    per_template = {}
    for name, idx in sorted(by_template.items()):
        r = pairwise_accuracy(pos[idx], neg[idx])
        per_template[name] = {"accuracy": r["accuracy"], "total": r["total"], "ties": r["ties"]}
    elapsed = time.perf_counter() - t0
    return {"benchmark": "negation-pairs", "model": _model_name(bundle, model_name),
            "accuracy": overall["accuracy"], "correct": overall["correct"], "total": overall["total"],
            "ties": overall["ties"],
            "heldout_accuracy": h["accuracy"], "heldout_total": h["total"], "heldout_ties": h["ties"],
            "trained_phrasing_accuracy": tr["accuracy"], "trained_phrasing_total": tr["total"],
            "trained_phrasing_ties": tr["ties"], "per_template": per_template,
            "items_per_second": len(pairs) / elapsed if elapsed > 0 else None,
            "missing_images": len(emb.failed), "skipped": len(pairs) - len(keep),
            "split": split, "seconds": elapsed}
