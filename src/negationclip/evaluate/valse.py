"""VALSE: pairwise accuracy, the true caption scored above its foil for the same image.

Every piece file (``existence.json`` first, the negation piece) is evaluated the same way;
images are ``<image_root>/<image_file>``.

Official rule (Heidelberg-NLP/VALSE ``lxmert_valse_eval.py``, pairwise accuracy ``acc_r``):
only the valid items, ``mturk["caption"] >= 2`` (at least two of three annotators chose the
caption and not the foil; 505 of the 534 existence items), and an item is correct when the
caption scores strictly above the foil (a tie is wrong). So ``accuracy_official`` (=
``accuracy``) is the strict figure on the valid items; ``all_items`` holds the same figures on
every item of the file. A file without any ``mturk`` votes (a hand-made piece) has no valid
set: every item is scored and ``valid_filter`` says so.
"""

from __future__ import annotations

import ast
import os
import time
from pathlib import Path
from typing import Sequence

from ..data.valse import ValseItem, load_valse
from ..models import ClipBundle, ImageEmbeddingCache, encode_text
from ..utils import NegationClipError
from .images import check_missing, embed_keys, load_whole
from .metrics import TIE_TOL, pairwise_accuracy

VALID_MIN_VOTES = 2  # VALSE's README and scoring scripts: mturk["caption"] >= 2
from .negrefcocog import _model_name


def valse_pieces(folder: str | os.PathLike) -> list[Path]:
    """The piece files of a VALSE folder, ``existence`` first, then by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise NegationClipError(f"{folder}: VALSE folder not found")
    files = sorted(p for p in folder.glob("*.json"))
    if not files:
        raise NegationClipError(f"{folder}: no VALSE piece files (*.json)")
    return sorted(files, key=lambda p: (p.stem != "existence", p.stem))


def piece_name(path: str | os.PathLike) -> str:
    """``existence`` for ``existence.json`` and for NegWorld's ``valse_existence.json``."""
    stem = Path(path).stem
    return stem[len("valse_"):] if stem.startswith("valse_") and len(stem) > 6 else stem


def _caption_votes(item: ValseItem) -> int | None:
    m = item.raw.get("mturk")
    if isinstance(m, str):
        try:
            m = ast.literal_eval(m)
        except (ValueError, SyntaxError):
            return None
    if isinstance(m, dict) and isinstance(m.get("caption"), int):
        return m["caption"]
    return None


def evaluate_valse(bundle: ClipBundle, piece_path: str | os.PathLike | Sequence[ValseItem],
                   image_root: str | os.PathLike, *, cache: ImageEmbeddingCache | None = None,
                   batch_size: int = 64, max_missing: float = 0.05,
                   missing_out: str | os.PathLike | None = None,
                   mturk_min_votes: int | None = VALID_MIN_VOTES, limit: int | None = None,
                   model_name: str | None = None, return_items: bool = False,
                   tie_tol: float = TIE_TOL) -> dict:
    """Accuracy (caption > foil, strict) on the valid items of one VALSE piece (items with at
    least ``mturk_min_votes`` caption votes; None or 0: every item); ties counted separately;
    ``all_items`` beside."""
    t0 = time.perf_counter()
    if isinstance(piece_path, (str, os.PathLike)):
        piece = piece_name(piece_path)
        items = load_valse(piece_path, piece=piece)
    else:
        items = list(piece_path)
        piece = items[0].piece if items else "valse"
    if limit is not None:
        items = items[:limit]
    votes = [_caption_votes(it) for it in items]
    if not mturk_min_votes:
        valid_filter = "off (every item)"
        valid = [True] * len(items)
    elif all(v is None for v in votes):
        valid_filter = "unavailable: no mturk votes in the file (every item)"
        valid = [True] * len(items)
    else:
        valid_filter = f"mturk caption votes >= {mturk_min_votes}"
        valid = [(v or 0) >= mturk_min_votes for v in votes]
    root = Path(image_root)
    paths = [str(root / it.image_file) for it in items]
    emb = embed_keys(bundle, paths, load_whole, cache, batch_size=batch_size, desc=f"VALSE {piece}")
    check_missing(f"valse:{piece}", emb.failed, len(emb.keys), max_missing, missing_out)
    texts = list(dict.fromkeys([t for it in items for t in (it.caption, it.foil)]))
    tix = {t: i for i, t in enumerate(texts)}
    temb = encode_text(bundle, texts, show_progress=False)
    keep = [i for i, p in enumerate(paths) if bool(emb.ok[emb.index[p]])]
    img = emb.rows([paths[i] for i in keep])
    cap = temb[[tix[items[i].caption] for i in keep]]
    foil = temb[[tix[items[i].foil] for i in keep]]
    pos, neg = (img * cap).sum(-1), (img * foil).sum(-1)
    vmask = [valid[i] for i in keep]
    res = pairwise_accuracy(pos[vmask], neg[vmask], tol=tie_tol, official="strict")
    every = pairwise_accuracy(pos, neg, tol=tie_tol, official="strict")
    elapsed = time.perf_counter() - t0
    out = {"benchmark": f"valse:{piece}", "model": _model_name(bundle, model_name),
           **{k: res[k] for k in ("accuracy", "accuracy_official", "accuracy_strict", "correct",
                                  "correct_strict", "ties", "total")},
           "valid_filter": valid_filter, "invalid_items": valid.count(False),
           "all_items": {k: every[k] for k in ("accuracy_official", "accuracy_strict", "correct",
                                               "ties", "total")},
           "tie_tol": tie_tol,
           "items_per_second": len(items) / elapsed if elapsed > 0 else None,
           "missing_images": len(emb.failed), "skipped": len(items) - len(keep),
           "seconds": elapsed}
    if return_items:
        out["items"] = [{"key": items[i].key, "valid": valid[i], "caption_score": float(p),
                         "foil_score": float(n)} for i, p, n in zip(keep, pos, neg)]
    return out
