"""Benchmark metrics, one function each, on plain tensors of similarities.

Ties are never silently resolved: a pairwise or multiple-choice item whose correct score only
equals the best wrong score is counted as a tie, not as correct, because the order in which a
file lists candidates must not decide a model's score (NegRefCOCOg lists the answer first, so
"first maximum wins" would count every tie as a success).
"""

from __future__ import annotations

from typing import Sequence

import torch


def _fraction(num: int, den: int) -> float | None:
    return (num / den) if den else None


def pairwise_accuracy(pos: torch.Tensor, neg: torch.Tensor) -> dict:
    """Fraction of items with ``pos > neg`` (strict); equal scores are reported as ``ties``."""
    pos = torch.as_tensor(pos, dtype=torch.float64).flatten()
    neg = torch.as_tensor(neg, dtype=torch.float64).flatten()
    if pos.shape != neg.shape:
        raise ValueError(f"pairwise_accuracy: {pos.shape} vs {neg.shape}")
    correct = int((pos > neg).sum())
    ties = int((pos == neg).sum())
    total = int(pos.numel())
    return {"accuracy": _fraction(correct, total), "correct": correct, "ties": ties,
            "total": total}


def choice_outcomes(scores: torch.Tensor, answer: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per item: (correct, tie) booleans for picking ``answer`` among the K candidates of a row.

    Correct means the answer's score is strictly above every other candidate; tie means it
    equals the best other candidate. ``scores`` is [N, K], ``answer`` [N] of indices.
    """
    scores = torch.as_tensor(scores, dtype=torch.float64)
    answer = torch.as_tensor(answer, dtype=torch.long)
    if scores.ndim != 2 or scores.shape[0] != answer.shape[0]:
        raise ValueError(f"choice_outcomes: scores {tuple(scores.shape)}, answer {tuple(answer.shape)}")
    if scores.shape[1] < 2:
        raise ValueError("choice_outcomes: need at least two candidates per item")
    right = scores.gather(1, answer[:, None]).squeeze(1)
    others = scores.clone()
    others.scatter_(1, answer[:, None], float("-inf"))
    best_other = others.max(dim=1).values
    return right > best_other, right == best_other


def choice_accuracy(scores: torch.Tensor, answer: torch.Tensor) -> dict:
    """Multiple-choice accuracy with strict maxima; ties counted apart (see module docstring)."""
    ok, tie = choice_outcomes(scores, answer)
    correct, ties, total = int(ok.sum()), int(tie.sum()), int(ok.numel())
    return {"accuracy": _fraction(correct, total), "correct": correct, "ties": ties,
            "total": total, "accuracy_ties_as_correct": _fraction(correct + ties, total)}


def topk_accuracy(logits: torch.Tensor, labels: torch.Tensor, ks: Sequence[int] = (1, 5)) -> dict:
    """Classification top-k accuracy (``top1``, ``top5``, ...) as fractions."""
    logits = torch.as_tensor(logits)
    labels = torch.as_tensor(labels, dtype=torch.long)
    n, c = logits.shape
    out: dict = {"total": int(n)}
    if n == 0:
        return out | {f"top{k}": None for k in ks}
    kmax = min(max(ks), c)
    top = logits.topk(kmax, dim=1).indices
    hit = top == labels[:, None]
    for k in ks:
        out[f"top{k}"] = float(hit[:, :min(k, c)].any(dim=1).float().mean())
    return out


def recall_at_k_i2t(sim: torch.Tensor, text_image: torch.Tensor,
                    ks: Sequence[int] = (1, 5, 10)) -> dict:
    """Image->text recall: an image is a hit at K if any of its captions ranks in its top K.

    ``sim`` is [n_images, n_texts]; ``text_image[j]`` is the image index of caption ``j``.
    The rank of an image's best caption is the number of texts scoring strictly higher, so
    ties go in the model's favour exactly as in the usual CLIP retrieval code.
    """
    sim = torch.as_tensor(sim, dtype=torch.float32)
    text_image = torch.as_tensor(text_image, dtype=torch.long)
    n_img = sim.shape[0]
    own = text_image[None, :] == torch.arange(n_img)[:, None]  # [I, T]
    best_own = sim.masked_fill(~own, float("-inf")).max(dim=1).values
    rank = (sim > best_own[:, None]).sum(dim=1)
    return {f"i2t_r{k}": float((rank < k).float().mean()) if n_img else None for k in ks}


def recall_at_k_t2i(sim: torch.Tensor, text_image: torch.Tensor,
                    ks: Sequence[int] = (1, 5, 10)) -> dict:
    """Text->image recall: a caption is a hit at K if its image ranks in its top K."""
    sim = torch.as_tensor(sim, dtype=torch.float32)
    text_image = torch.as_tensor(text_image, dtype=torch.long)
    n_txt = sim.shape[1]
    own = sim.gather(0, text_image[None, :]).squeeze(0)  # [T]
    rank = (sim > own[None, :]).sum(dim=0)
    return {f"t2i_r{k}": float((rank < k).float().mean()) if n_txt else None for k in ks}


def set_recall_at_k(sim: torch.Tensor, positives: Sequence[set[int]],
                    ks: Sequence[int] = (1, 5, 10)) -> dict:
    """Query->gallery recall when several gallery items are correct: hit at K if any of the
    top-K items is a positive. ``sim`` is [n_queries, n_gallery]."""
    sim = torch.as_tensor(sim, dtype=torch.float32)
    q, n = sim.shape
    out: dict = {}
    if q == 0:
        return {f"r{k}": None for k in ks}
    kmax = min(max(ks), n)
    top = sim.topk(kmax, dim=1).indices.tolist()
    for k in ks:
        hits = sum(1 for row, pos in zip(top, positives) if any(i in pos for i in row[:k]))
        out[f"r{k}"] = hits / q
    return out


def top1_rate(sim: torch.Tensor, members: Sequence[set[int]]) -> float | None:
    """Fraction of queries whose top-1 gallery item is in ``members[q]`` (e.g. how often a
    negated query retrieves an image that contains the very object it negates)."""
    sim = torch.as_tensor(sim, dtype=torch.float32)
    if sim.shape[0] == 0:
        return None
    top = sim.argmax(dim=1).tolist()
    return sum(1 for t, m in zip(top, members) if t in m) / sim.shape[0]
