"""NegRefCOCOg evaluation: does the negated referring expression pick its own box?

For each record the phrase is encoded once and every candidate box is cropped from the image.
Official rule (``negrefcocog_eval.py`` of parkquasar/NegationCLIP): ``np.argmax`` over the box
scores, first maximum wins, and the record is correct when ``bbox_list[argmax] == ref_bbox``.
The released file lists the reference box first, so a tie counts as correct there:
``accuracy_official`` (= ``accuracy``) follows that rule with scores within ``tie_tol`` taken as
equal (the released loop encodes one crop at a time, so identical crops score bit-equal;
batching leaves ~3e-8 of noise); ``accuracy_strict`` needs the reference box above every other
box by more than ``tie_tol``; ``ties`` counts the rest of the top-tied records.

Speed: unique crops go through the shared ImageEmbeddingCache in batches, keys sorted by
image so each image is decoded once for all its boxes (the reference evaluator reopens the
image for every box and runs one crop per forward pass).
"""

from __future__ import annotations

import os
import time
from collections import Counter
from pathlib import Path
from typing import Sequence

import torch

from ..data.negref import NegRefItem, load_negref
from ..models import ClipBundle, ImageEmbeddingCache, encode_text
from ..utils import NegationClipError
from .images import CropLoader, check_missing, clip_box, crop_key, embed_keys, image_size, is_degenerate
from .metrics import TIE_TOL, choice_outcomes


def _model_name(bundle: ClipBundle, name: str | None) -> str:
    return name or str((bundle.provenance or {}).get("source", "model"))


def evaluate_negrefcocog(bundle: ClipBundle, path: str | os.PathLike | Sequence[NegRefItem],
                         image_root: str | os.PathLike, *, cache: ImageEmbeddingCache | None = None,
                         batch_size: int = 64, max_missing: float = 0.05,
                         missing_out: str | os.PathLike | None = None, limit: int | None = None,
                         model_name: str | None = None, return_items: bool = False,
                         tie_tol: float = TIE_TOL) -> dict:
    """Accuracy of ``bundle`` on NegRefCOCOg (a released-format file or loaded items).

    Returns ``{"benchmark", "model", "accuracy" (= "accuracy_official"), "accuracy_strict",
    "correct", "correct_strict", "total", "ties", "items_per_second", "missing_images",
    "skipped", "clipped_boxes", "skipped_single_box", ...}`` (records with one candidate box
    are counted and left out: there is nothing to choose); with ``return_items`` also ``items`` (per-record outcome and
    scores, for error analysis).
    """
    t0 = time.perf_counter()
    source = str(path) if isinstance(path, (str, os.PathLike)) else "<items>"
    items = load_negref(path) if isinstance(path, (str, os.PathLike)) else list(path)
    if limit is not None:
        items = items[:limit]
    root = Path(image_root)

    # Validate boxes and find image sizes (header only) before any encoding.
    sizes: dict[str, tuple[int, int]] = {}
    missing: dict[str, str] = {}
    for im in dict.fromkeys(str(root / it.image) for it in items):
        try:
            sizes[im] = image_size(im)
        except NegationClipError as e:
            missing[im] = str(e)
    clipped = 0
    keys_per_item: list[list[str]] = []
    for i, it in enumerate(items):
        img = str(root / it.image)
        for j, box in enumerate(it.bbox_list):
            if is_degenerate(box):
                raise NegationClipError(f"{source}: record {i} ({it.image}): bbox_list[{j}] "
                                        f"{box} is degenerate (width and height must be > 0)")
            if img in sizes:
                try:
                    clipped += clip_box(box, *sizes[img])[1]
                except ValueError as e:
                    raise NegationClipError(f"{source}: record {i} ({it.image}): bbox_list[{j}]: {e}") from None
        if it.ref_bbox not in it.bbox_list:
            raise NegationClipError(f"{source}: record {i}: 'ref_bbox' is not one of 'bbox_list'")
        keys_per_item.append([crop_key(img, b) for b in it.bbox_list])

    # Encode: crops of present images, grouped by image; each phrase once.
    wanted = sorted({k for ks in keys_per_item for k in ks if k.rpartition("#")[0] in sizes})
    loader = CropLoader()
    emb = embed_keys(bundle, wanted, loader, cache, batch_size=batch_size, desc="NegRefCOCOg crops")
    for k, why in emb.failed.items():
        missing.setdefault(k.rpartition("#")[0], why)
    n_images = len({str(root / it.image) for it in items})
    check_missing("negrefcocog", missing, n_images, max_missing, missing_out)
    phrases = list(dict.fromkeys(it.phrase for it in items))
    text = encode_text(bundle, phrases, batch_size=256, show_progress=False)
    tix = {p: i for i, p in enumerate(phrases)}

    correct = strict = ties = total = skipped = single = 0
    per_item = []
    by_n = Counter()
    for i, (it, ks) in enumerate(zip(items, keys_per_item)):
        if len(ks) < 2:  # nothing to choose between: counting it correct would inflate accuracy
            single += 1
            per_item.append({"index": i, "outcome": "single_box"})
            continue
        if any(k not in emb.index or not bool(emb.ok[emb.index[k]]) for k in ks):
            skipped += 1
            per_item.append({"index": i, "outcome": "missing"})
            continue
        scores = emb.rows(ks) @ text[tix[it.phrase]]
        ref = it.bbox_list.index(it.ref_bbox)
        c = choice_outcomes(scores[None, :], torch.tensor([ref]), tie_tol)
        ok, tie, pred = bool(c.strict[0]), bool(c.tie[0]), int(c.pred[0])
        official = it.bbox_list[pred] == it.ref_bbox
        total += 1
        correct += official
        strict += ok
        ties += tie
        by_n[len(ks)] += 1
        per_item.append({"index": i, "outcome": "correct" if ok else "tie" if tie else "wrong",
                         "official_correct": official, "predicted_index": pred,
                         "scores": [float(s) for s in scores], "ref_index": ref})
    elapsed = time.perf_counter() - t0
    out = {
        "benchmark": "negrefcocog", "model": _model_name(bundle, model_name),
        "accuracy": correct / total if total else None,
        "accuracy_official": correct / total if total else None,
        "accuracy_strict": strict / total if total else None, "correct": correct,
        "correct_strict": strict, "total": total, "ties": ties, "tie_tol": tie_tol,
        "items_per_second": len(items) / elapsed if elapsed > 0 else None,
        "missing_images": len(missing), "skipped": skipped, "clipped_boxes": clipped,
        "skipped_single_box": single,
        "crops": len(wanted), "image_decodes": loader.decodes, "seconds": elapsed,
        "file": source,
    }
    if return_items:
        out["items"] = per_item
    return out
