"""CC-Neg (CoN-CLIP, Singh et al., WACV 2025): ``ccneg_preprocessed.pt`` as released, or the
same fields as JSON / JSONL.

The ``.pt`` is a dict ``{"image_paths": [...], "annotations": [...]}``; each annotation has
``json.caption`` (true of the image) and ``sop_data["negative-prompt"]`` (the negated, false
caption). It is read with ``torch.load(weights_only=True)``: plain data only, a pickle that
would run code is refused (NegationClipError naming the file).

The evaluation split is the last 40,000 items, as in CoN-CLIP's
``src/data/evaluation_datasets.py`` (``configs.num_ccneg_eval_samples``), and commas are
removed from the negative prompt as there (``negative_prompt.replace(",", "")``).

JSON / JSONL: the same dict layout, or one record per item with ``image_path`` and either the
released nested fields (``json.caption``, ``sop_data.negative-prompt``) or flat ``caption`` and
``negative_prompt`` (also ``negative-prompt``). The split and the comma rule apply the same way.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..utils import NegationClipError, load_json, load_torch_state, read_jsonl

EVAL_SPLIT = 40_000  # CoN-CLIP: "the last 40,000 indices consist of the decided evaluation split"


@dataclass
class CcNegItem:
    index: int  # position in the whole file (before the split)
    image_path: str  # as written in the file
    caption: str
    negative: str  # commas removed, as CoN-CLIP's evaluation does


def _records(path: Path) -> list[dict] | tuple[list, list]:
    suffix = path.suffix.lower()
    if not path.is_file():
        raise NegationClipError(f"{path}: CC-Neg file not found")
    if suffix in (".pt", ".pth", ".bin"):
        obj = load_torch_state(path)
    elif suffix == ".jsonl":
        return read_jsonl(path)
    else:
        obj = load_json(path)
    if isinstance(obj, dict):
        paths, annos = obj.get("image_paths"), obj.get("annotations")
        if not isinstance(paths, list) or not isinstance(annos, list):
            raise NegationClipError(f"{path}: expected 'image_paths' and 'annotations' lists "
                                    f"(CoN-CLIP's ccneg_preprocessed layout), got keys "
                                    f"{sorted(map(str, obj))[:8]}")
        if len(paths) != len(annos):
            raise NegationClipError(f"{path}: {len(paths)} image_paths but {len(annos)} annotations")
        return paths, annos
    if isinstance(obj, list):
        return obj
    raise NegationClipError(f"{path}: expected a dict (image_paths, annotations) or a list of "
                            f"records, got {type(obj).__name__}")


def _text(rec: Any, path, i: int, *keys: str) -> str:
    """The first of the dotted ``keys`` present in ``rec``, checked to be a string."""
    for key in keys:
        val, ok = rec, True
        for part in key.split("."):
            if isinstance(val, dict) and part in val:
                val = val[part]
            else:
                ok = False
                break
        if ok:
            if not isinstance(val, str):
                raise NegationClipError(f"{path}: item {i}: {key!r} should be a string, got "
                                        f"{type(val).__name__}")
            return val
    raise NegationClipError(f"{path}: item {i}: missing {' or '.join(repr(k) for k in keys)}")


def load_ccneg(path: str | os.PathLike, *, eval_size: int | None = EVAL_SPLIT) -> list[CcNegItem]:
    """The evaluation items of a CC-Neg file: the last ``eval_size`` (None or 0: all)."""
    path = Path(path)
    got = _records(path)
    if isinstance(got, tuple):
        paths, annos = got
        rows = [(p, a) for p, a in zip(paths, annos)]
    else:
        rows = [(r.get("image_path", r.get("image")) if isinstance(r, dict) else None, r) for r in got]
    if not rows:
        raise NegationClipError(f"{path}: no CC-Neg items")
    start = max(0, len(rows) - eval_size) if eval_size else 0
    items = []
    for i in range(start, len(rows)):
        img, rec = rows[i]
        if not isinstance(rec, dict):
            raise NegationClipError(f"{path}: item {i}: expected an object, got {type(rec).__name__}")
        if not isinstance(img, str) or not img:
            raise NegationClipError(f"{path}: item {i}: missing image path (string)")
        cap = _text(rec, path, i, "json.caption", "caption")
        neg = _text(rec, path, i, "sop_data.negative-prompt", "negative_prompt", "negative-prompt")
        items.append(CcNegItem(i, img, cap, neg.replace(",", "")))
    return items
