"""NegBench (Alhamoud et al., CVPR 2025) on its released CSVs: multiple choice and (negated)
retrieval, with the metrics of m1k2zoo/negbench ``benchmarks/src/evaluation/mcq.py`` and
``retrieval.py``.

Multiple choice (``evaluate_model`` there): the prediction is ``argmax`` over the options of
cosine(image, caption), first maximum wins (here: the first option within ``tie_tol`` of the
best, since batched encoding is not bit-equal to per-batch encoding); keys as released:
``total_accuracy``, ``positive_accuracy``, ``negative_accuracy``, ``hybrid_accuracy``
(None where NegBench gives NaN: no question of that type), ``most_common_wrong_answer_type``,
``wrong_answer_percentages``, ``predictions_by_type``, ``wrong_answers_by_question_type``.
The wrong-answer type is looked up by the predicted option's index, with the released maps:
``{1: hybrid, 2: positive, 3: negative}``, or for the synthetic set ``{0: positive, 1: hybrid,
2: hybrid, 3: negative}`` (where, as released, ``wrong_answer_percentages["hybrid"]`` is
index 2's share: the dict comprehension keeps the last of the two; ``wrong_answer_counts`` by
index is given beside). That lookup assumes the released layout (correct answer at index 0);
for files with other answer positions the breakdown is None and says why. Binary files
(``evaluate_binary_mcq_model``): ``total_accuracy`` only. Every MCQ result also carries
``accuracy_official`` (= ``total_accuracy``), ``accuracy_strict`` and ``ties``.

Retrieval (``evaluate_model`` in ``retrieval.py``): one gallery entry per row, only the row's
own image is positive for its captions; ``image_retrieval_recall@k`` (per caption: is its
image in the top k, ``torch.topk``) and ``text_retrieval_recall@k`` (per row: is any of its
captions in the top k), k = 1, 5.

Missing images are a counted miss (``missing_images``, the list in ``missing_out``); their rows
are left out; too many fail the benchmark (``max_missing``).
"""

from __future__ import annotations

import os
import time
from collections import Counter
from pathlib import Path
from typing import Sequence

import torch

from ..data.negbench import TEMPLATES, McqItem, RetrievalItem, load_negbench_mcq, load_negbench_retrieval
from ..models import ClipBundle, ImageEmbeddingCache, encode_text
from ..utils import NegationClipError
from .images import ImageResolver, check_missing, embed_keys, load_whole
from .metrics import TIE_TOL, choice_outcomes
from .negrefcocog import _model_name

WRONG_ANSWER_TYPES = {"default": {1: "hybrid", 2: "positive", 3: "negative"},
                      "synthetic": {0: "positive", 1: "hybrid", 2: "hybrid", 3: "negative"}}


def mcq_mapping_for(path: str | os.PathLike | None, mapping: str = "auto") -> str:
    """``synthetic`` for NegBench's synthetic MCQ file (by name, as its loader keys it), else
    ``default``; an explicit ``mapping`` wins."""
    if mapping != "auto":
        if mapping not in WRONG_ANSWER_TYPES:
            raise NegationClipError(f"wrong-answer mapping {mapping!r}: choose auto, "
                                    f"{', '.join(WRONG_ANSWER_TYPES)}")
        return mapping
    return "synthetic" if path is not None and "synthetic" in Path(path).stem.lower() else "default"


def _images(bundle, written: Sequence[str], resolver: ImageResolver, cache, batch_size: int,
            desc: str, bench: str, max_missing: float, missing_out):
    paths = [resolver(p) for p in written]
    emb = embed_keys(bundle, paths, load_whole, cache, batch_size=batch_size, desc=desc)
    check_missing(bench, emb.failed, len(emb.keys), max_missing, missing_out)
    ok = [bool(emb.ok[emb.index[p]]) for p in paths]
    return paths, emb, ok


def _text_index(bundle, texts: Sequence[str]) -> tuple[torch.Tensor, dict[str, int]]:
    uniq = list(dict.fromkeys(texts))
    return encode_text(bundle, uniq, show_progress=len(uniq) > 2048), {t: i for i, t in enumerate(uniq)}


def _load(path, loader, source: str | None):
    """(name of the file, items): from a path, or from items already read (``source`` names
    their file for messages and relative image paths)."""
    if isinstance(path, (str, os.PathLike)):
        return str(path), loader(path)
    return source or "<items>", list(path)


def evaluate_negbench_mcq(bundle: ClipBundle, path: str | os.PathLike | Sequence[McqItem],
                          image_root: str | os.PathLike | None = None, *,
                          cache: ImageEmbeddingCache | None = None, batch_size: int = 64,
                          max_missing: float = 0.05, missing_out: str | os.PathLike | None = None,
                          limit: int | None = None, model_name: str | None = None,
                          mapping: str = "auto", tie_tol: float = TIE_TOL,
                          benchmark: str = "negbench-mcq", return_items: bool = False,
                          source: str | None = None) -> dict:
    """NegBench multiple choice on one released CSV (4-option or binary); ``path`` is the
    file or its rows already read (then ``source`` names the file)."""
    t0 = time.perf_counter()
    source, items = _load(path, load_negbench_mcq, source)
    if limit is not None:
        items = items[:limit]
    if not items:
        raise NegationClipError(f"{source}: no questions")
    n_opt = len(items[0].captions)
    if any(len(it.captions) != n_opt for it in items):
        raise NegationClipError(f"{source}: items with different numbers of options")
    base = Path(source).parent if source != "<items>" else None
    resolver = ImageResolver(image_root, base)
    paths, emb, ok = _images(bundle, [it.image_path for it in items], resolver, cache, batch_size,
                             f"{benchmark} images", benchmark, max_missing, missing_out)
    keep = [i for i, good in enumerate(ok) if good]
    kept = [items[i] for i in keep]
    temb, tix = _text_index(bundle, [c for it in kept for c in it.captions])
    if kept:
        img = emb.rows([paths[i] for i in keep])  # [N, D]
        opts = temb[torch.tensor([[tix[c] for c in it.captions] for it in kept])]  # [N, K, D]
        scores = torch.einsum("bf,bnf->bn", img.double(), opts.double())
    else:
        scores = torch.zeros(0, n_opt, dtype=torch.float64)
    answer = torch.tensor([it.correct_answer for it in kept], dtype=torch.long)
    c = choice_outcomes(scores, answer, tie_tol) if kept else None
    pred = c.pred.tolist() if c is not None else []
    right = [p == a for p, a in zip(pred, answer.tolist())]
    total = len(kept)
    out: dict = {"benchmark": benchmark, "model": _model_name(bundle, model_name), "file": source}
    correct = sum(right)
    strict = int(c.strict.sum()) if c is not None else 0
    out |= {"total_accuracy": correct / total if total else None,
            "accuracy": correct / total if total else None,
            "accuracy_official": correct / total if total else None,
            "accuracy_strict": strict / total if total else None,
            "correct": correct, "correct_strict": strict,
            "ties": int(c.tie.sum()) if c is not None else 0, "total": total,
            "options": n_opt}
    if n_opt == 4:
        out |= _mcq_breakdown(kept, pred, right, mcq_mapping_for(
            None if source == "<items>" else source, mapping))
    elapsed = time.perf_counter() - t0
    out |= {"tie_tol": tie_tol, "missing_images": len(emb.failed), "skipped": len(items) - total,
            "items_per_second": len(items) / elapsed if elapsed > 0 else None, "seconds": elapsed}
    if return_items:
        out["items"] = [{"row": it.row, "predicted": p, "correct_answer": it.correct_answer,
                         "scores": [float(s) for s in row]}
                        for it, p, row in zip(kept, pred, scores)]
    return out


def _mcq_breakdown(items: list[McqItem], pred: list[int], right: list[bool], mapping: str) -> dict:
    """NegBench's per-type accuracies and wrong-answer breakdown (see the module docstring)."""
    by_type = Counter(it.template for it in items)
    ok_by_type = Counter(it.template for it, r in zip(items, right) if r)
    out: dict = {f"{t}_accuracy": (ok_by_type[t] / by_type[t]) if by_type[t] else None
                 for t in TEMPLATES}
    out |= {f"{t}_total": by_type[t] for t in TEMPLATES}
    out["wrong_answer_mapping"] = mapping
    to_type = WRONG_ANSWER_TYPES[mapping]
    if any(it.correct_answer != 0 for it in items):
        why = ("unavailable: NegBench looks the wrong-answer type up by option index, which "
               "needs correct_answer 0 on every row (the released layout)")
        return out | {"most_common_wrong_answer_type": None, "wrong_answer_percentages": None,
                      "predictions_by_type": None, "wrong_answers_by_question_type": None,
                      "wrong_answer_counts": None, "wrong_answer_breakdown": why}
    counts = {k: 0 for k in to_type}
    predictions = {t: 0 for t in TEMPLATES}
    by_question = {q: {t: 0 for t in TEMPLATES} for q in TEMPLATES}
    for it, p, r in zip(items, pred, right):
        if r:
            predictions[it.template] += 1
        else:
            wrong = to_type[p]
            counts[p] += 1
            predictions[wrong] += 1
            by_question[it.template][wrong] += 1
    total_wrong = sum(counts.values())
    most = max(counts, key=counts.get)
    return out | {
        "most_common_wrong_answer_type": to_type[most] if total_wrong else None,
        "wrong_answer_percentages": ({to_type[k]: v / total_wrong * 100 for k, v in counts.items()}
                                     if total_wrong else None),
        "predictions_by_type": predictions, "wrong_answers_by_question_type": by_question,
        "wrong_answer_counts": {str(k): v for k, v in counts.items()}}


def evaluate_negbench_retrieval(bundle: ClipBundle, path: str | os.PathLike | Sequence[RetrievalItem],
                                image_root: str | os.PathLike | None = None, *,
                                cache: ImageEmbeddingCache | None = None, batch_size: int = 64,
                                max_missing: float = 0.05,
                                missing_out: str | os.PathLike | None = None,
                                limit: int | None = None, model_name: str | None = None,
                                ks: Sequence[int] = (1, 5), benchmark: str = "negbench-retrieval",
                                source: str | None = None) -> dict:
    """NegBench (negated) retrieval on one released CSV; recall as ``retrieval.py``."""
    t0 = time.perf_counter()
    source, items = _load(path, load_negbench_retrieval, source)
    if limit is not None:
        items = items[:limit]
    if not items:
        raise NegationClipError(f"{source}: no rows")
    base = Path(source).parent if source != "<items>" else None
    resolver = ImageResolver(image_root, base)
    paths, emb, ok = _images(bundle, [it.image_path for it in items], resolver, cache, batch_size,
                             f"{benchmark} images", benchmark, max_missing, missing_out)
    keep = [i for i, good in enumerate(ok) if good]
    texts = [c for i in keep for c in items[i].captions]
    owner = [k for k, i in enumerate(keep) for _ in items[i].captions]
    out: dict = {"benchmark": benchmark, "model": _model_name(bundle, model_name), "file": source,
                 "images": len(keep), "texts": len(texts)}
    if keep and texts:
        temb, tix = _text_index(bundle, texts)
        scores = temb[[tix[t] for t in texts]] @ emb.rows([paths[i] for i in keep]).T  # [T, I]
        positive = torch.zeros_like(scores, dtype=torch.bool)
        positive[torch.arange(len(texts)), torch.tensor(owner)] = True
        for k in ks:
            out[f"image_retrieval_recall@{k}"] = _recall(scores, positive, k)
            out[f"text_retrieval_recall@{k}"] = _recall(scores.T, positive.T, k)
    else:
        out |= {f"{d}_retrieval_recall@{k}": None for k in ks for d in ("image", "text")}
    out["headline_metric"] = f"image_retrieval_recall@{ks[0]}"
    elapsed = time.perf_counter() - t0
    out |= {"missing_images": len(emb.failed), "skipped": len(items) - len(keep),
            "items_per_second": len(items) / elapsed if elapsed > 0 else None, "seconds": elapsed}
    return out


def _recall(scores: torch.Tensor, positive: torch.Tensor, k: int) -> float:
    """Share of queries (rows) with a positive among their top ``k`` columns (``torch.topk``;
    k is capped at the gallery size, where NegBench's topk would fail)."""
    top = torch.topk(scores, min(k, scores.shape[1]), dim=1).indices
    return float(positive.gather(1, top).any(dim=1).float().mean())
