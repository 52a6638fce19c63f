"""Benchmark metrics, one function each, on plain tensors of similarities.

Every argmax benchmark reports three numbers, so a figure can stand beside the published one
and its fragility is visible:

* ``accuracy_official`` (also ``accuracy``): the benchmark's own rule, the first maximum wins
  (``np.argmax`` / ``torch.argmax``), documented per benchmark. Where the file lists the answer
  first (NegRefCOCOg, NegBench, CC-Neg, SugarCREPE) a tie counts as correct.
* ``accuracy_strict``: the answer scores above every other candidate by more than the tie
  tolerance; the order in which the file lists candidates cannot help.
* ``ties``: items whose answer is within the tolerance of the best other candidate while no
  candidate beats it by more than the tolerance.

Scores within ``tol`` of each other are one tie. Batched encoding leaves gaps of ~3e-8 between
embeddings of identical inputs (the official loops encode one at a time, so theirs are
bit-equal); ``TIE_TOL`` is far above that noise and far below real score gaps in float32.
Half-precision models have noise near their epsilon, hence ``tie_tolerance(dtype)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

TIE_TOL = 1e-6
_TOL_BY_DTYPE = {"float32": TIE_TOL, "float16": 2e-3, "bfloat16": 1.6e-2}


def tie_tolerance(dtype: str | torch.dtype | None = "float32") -> float:
    """The tie tolerance for a model run in ``dtype`` (float32 unless half precision)."""
    name = str(dtype or "float32").replace("torch.", "")
    return _TOL_BY_DTYPE.get(name, TIE_TOL)


def _fraction(num: int, den: int) -> float | None:
    return (num / den) if den else None


def pairwise_accuracy(pos: torch.Tensor, neg: torch.Tensor, *, tol: float = TIE_TOL,
                      official: str = "strict") -> dict:
    """Two-way accuracy of ``pos`` (the true text/image) against ``neg``.

    ``official="strict"``: the official rule is ``pos > neg`` (VALSE's scoring); ``"first"``:
    ``argmax([pos, neg])`` with the first maximum winning, so a tie is correct (CC-Neg,
    SugarCREPE). ``accuracy_strict`` is ``pos > neg + tol``; ``ties`` is ``|pos - neg| <= tol``.
    """
    pos = torch.as_tensor(pos, dtype=torch.float64).flatten()
    neg = torch.as_tensor(neg, dtype=torch.float64).flatten()
    if pos.shape != neg.shape:
        raise ValueError(f"pairwise_accuracy: {pos.shape} vs {neg.shape}")
    if official not in ("strict", "first"):
        raise ValueError(f"pairwise_accuracy: official must be 'strict' or 'first', not {official!r}")
    strict = int((pos > neg + tol).sum())
    ties = int(((pos - neg).abs() <= tol).sum())
    total = int(pos.numel())
    correct = strict + ties if official == "first" else strict
    return {"accuracy": _fraction(correct, total), "accuracy_official": _fraction(correct, total),
            "accuracy_strict": _fraction(strict, total), "correct": correct,
            "correct_strict": strict, "ties": ties, "total": total}


@dataclass
class Choices:
    """Per-item outcome of picking one of K candidates (see the module docstring)."""

    pred: torch.Tensor  # [N] first index within tol of the maximum (the official argmax)
    strict: torch.Tensor  # [N] bool: answer above every other candidate by more than tol
    tie: torch.Tensor  # [N] bool: answer tied (within tol) with the best, none clearly above


def first_argmax(scores: torch.Tensor, tol: float = TIE_TOL) -> torch.Tensor:
    """Row-wise argmax where scores within ``tol`` of the maximum count as equal, so the first
    of them wins, as ``np.argmax`` does on bit-equal scores."""
    scores = torch.as_tensor(scores, dtype=torch.float64)
    top = scores >= scores.max(dim=1, keepdim=True).values - tol
    return top.to(torch.int8).argmax(dim=1)


def choice_outcomes(scores: torch.Tensor, answer: torch.Tensor, tol: float = TIE_TOL) -> Choices:
    """``scores`` [N, K], ``answer`` [N] of indices -> ``Choices``."""
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
    strict = right > best_other + tol
    tie = ~strict & (right >= best_other - tol)
    return Choices(first_argmax(scores, tol), strict, tie)


def choice_accuracy(scores: torch.Tensor, answer: torch.Tensor, tol: float = TIE_TOL) -> dict:
    """Multiple-choice accuracy: official (first maximum), strict, and ties."""
    c = choice_outcomes(scores, answer, tol)
    answer = torch.as_tensor(answer, dtype=torch.long)
    correct, total = int((c.pred == answer).sum()), int(answer.numel())
    strict = int(c.strict.sum())
    return {"accuracy": _fraction(correct, total), "accuracy_official": _fraction(correct, total),
            "accuracy_strict": _fraction(strict, total), "correct": correct,
            "correct_strict": strict, "ties": int(c.tie.sum()), "total": total}


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
