import pytest
import torch

from negationclip.evaluate.metrics import (
    TIE_TOL,
    choice_accuracy,
    choice_outcomes,
    first_argmax,
    pairwise_accuracy,
    recall_at_k_i2t,
    recall_at_k_t2i,
    set_recall_at_k,
    tie_tolerance,
    top1_rate,
    topk_accuracy,
)


def test_pairwise_strict_official_and_ties():
    pos, neg = torch.tensor([0.5, 0.2, 0.3, 0.1]), torch.tensor([0.4, 0.2, 0.9, 0.1])
    r = pairwise_accuracy(pos, neg)
    assert (r["accuracy_official"], r["accuracy_strict"], r["correct"], r["ties"], r["total"]) == (0.25, 0.25, 1, 2, 4)
    first = pairwise_accuracy(pos, neg, official="first")  # a tie goes to the first (true) text
    assert first["accuracy_official"] == 0.75 and first["accuracy_strict"] == 0.25
    assert first["accuracy"] == first["accuracy_official"]


def test_batched_float_noise_is_a_tie_not_a_win():
    # identical inputs encoded in different batches differ by ~3e-8
    pos = torch.tensor([0.31, 0.31 + 3e-8, 0.31 - 3e-8])
    neg = torch.tensor([0.31 + 3e-8, 0.31, 0.31])
    r = pairwise_accuracy(pos, neg)
    assert r["ties"] == 3 and r["correct"] == 0
    assert pairwise_accuracy(pos, neg, official="first")["correct"] == 3
    assert 3e-8 < TIE_TOL < 1e-4 and tie_tolerance("bfloat16") > tie_tolerance("float32") == TIE_TOL


def test_choice_first_maximum_strict_and_ties():
    scores = torch.tensor([[0.9, 0.1, 0.2], [0.5, 0.5, 0.1], [0.1, 0.3, 0.2], [0.1, 0.2, 0.7],
                           [0.4, 0.4 + 2e-8, 0.1], [0.4 + 2e-8, 0.4, 0.4]])
    answer = torch.tensor([0, 0, 1, 0, 1, 2])
    r = choice_accuracy(scores, answer)
    # official (first maximum within tol): rows 0, 1, 2 right; row 4 picks 0; row 5 picks 0
    assert (r["correct"], r["correct_strict"], r["ties"], r["total"]) == (3, 2, 3, 6)
    assert first_argmax(scores).tolist() == [0, 0, 1, 2, 0, 0]
    c = choice_outcomes(scores, answer)
    assert c.tie.tolist() == [False, True, False, False, True, True]


def test_topk():
    logits = torch.tensor([[0.1, 0.9, 0.0], [0.8, 0.1, 0.3], [0.2, 0.1, 0.3]])
    r = topk_accuracy(logits, torch.tensor([1, 2, 1]), ks=(1, 2))
    assert r["top1"] == pytest.approx(1 / 3) and r["top2"] == pytest.approx(2 / 3)


def test_retrieval_recalls_by_hand():
    # 3 images, 5 texts; text j belongs to image owner[j]
    owner = torch.tensor([0, 0, 1, 2, 2])
    sim = torch.tensor([
        [0.1, 0.9, 0.8, 0.0, 0.0],   # image 0: its best caption (0.9) ranks 1st
        [0.7, 0.0, 0.3, 0.5, 0.2],   # image 1: its caption 0.3 ranks 3rd
        [0.0, 0.1, 0.2, 0.1, 0.05],  # image 2: best own 0.1, beaten by 0.2 -> rank 2nd
    ])
    i2t = recall_at_k_i2t(sim, owner, ks=(1, 2, 3))
    assert i2t == {"i2t_r1": pytest.approx(1 / 3), "i2t_r2": pytest.approx(2 / 3), "i2t_r3": 1.0}
    t2i = recall_at_k_t2i(sim, owner, ks=(1, 2))
    assert t2i == {"t2i_r1": pytest.approx(1 / 5), "t2i_r2": 1.0}


def test_set_recall_and_top1_rate():
    sim = torch.tensor([[0.9, 0.1, 0.5], [0.1, 0.2, 0.3]])
    assert set_recall_at_k(sim, [{2}, {2}], ks=(1, 2)) == {"r1": 0.5, "r2": 1.0}
    assert top1_rate(sim, [{0}, {0, 1}]) == 0.5
