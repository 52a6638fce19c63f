"""CC-Neg (CoN-CLIP): does the image match its true caption better than the negated one?

Official rule (CoN-CLIP's README evaluation loop): ``argmax([sim(image, caption),
sim(image, negated)])`` with the true caption first, so a tie counts as correct:
``accuracy_official`` (= ``accuracy``) is ``caption >= negated - tie_tol``; ``accuracy_strict``
is ``caption > negated + tie_tol``; ``ties`` lie within ``tie_tol``. Items are the last 40,000
of the file (``data.ccneg``); image paths are resolved under ``image_root`` by their trailing
components (CoN-CLIP replaces its own prefix ``/workspace/datasets/cc3m/`` with its root).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Sequence

from ..data.ccneg import EVAL_SPLIT, CcNegItem, load_ccneg
from ..models import ClipBundle, ImageEmbeddingCache
from ..utils import NegationClipError
from .images import ImageResolver, check_missing, embed_keys, load_whole
from .metrics import TIE_TOL, pairwise_accuracy
from .negbench import _text_index
from .negrefcocog import _model_name


def evaluate_ccneg(bundle: ClipBundle, path: str | os.PathLike | Sequence[CcNegItem],
                   image_root: str | os.PathLike | None = None, *,
                   cache: ImageEmbeddingCache | None = None, batch_size: int = 64,
                   max_missing: float = 0.05, missing_out: str | os.PathLike | None = None,
                   eval_size: int | None = EVAL_SPLIT, limit: int | None = None,
                   model_name: str | None = None, tie_tol: float = TIE_TOL,
                   source: str | None = None) -> dict:
    """Two-way accuracy on CC-Neg's evaluation split (``path``: the file, or its evaluation
    items already read, then ``source`` names the file)."""
    t0 = time.perf_counter()
    if isinstance(path, (str, os.PathLike)):
        source, items = str(path), load_ccneg(path, eval_size=eval_size)
    else:
        source, items = source or "<items>", list(path)
    if limit is not None:
        items = items[:limit]
    if not items:
        raise NegationClipError(f"{source}: no CC-Neg items")
    resolver = ImageResolver(image_root, Path(source).parent if source != "<items>" else None)
    paths = [resolver(it.image_path) for it in items]
    emb = embed_keys(bundle, paths, load_whole, cache, batch_size=batch_size, desc="CC-Neg images")
    check_missing("ccneg", emb.failed, len(emb.keys), max_missing, missing_out)
    keep = [i for i, p in enumerate(paths) if bool(emb.ok[emb.index[p]])]
    temb, tix = _text_index(bundle, [t for i in keep for t in (items[i].caption, items[i].negative)])
    img = emb.rows([paths[i] for i in keep])
    pos = (img * temb[[tix[items[i].caption] for i in keep]]).sum(-1)
    neg = (img * temb[[tix[items[i].negative] for i in keep]]).sum(-1)
    res = pairwise_accuracy(pos, neg, tol=tie_tol, official="first")
    elapsed = time.perf_counter() - t0
    return {"benchmark": "ccneg", "model": _model_name(bundle, model_name), "file": source, **res,
            "tie_tol": tie_tol, "eval_size": eval_size, "first_index": items[0].index,
            "missing_images": len(emb.failed), "skipped": len(items) - len(keep),
            "items_per_second": len(items) / elapsed if elapsed > 0 else None, "seconds": elapsed}
