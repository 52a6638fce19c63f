import pytest
import torch

from negationclip.evaluate.metrics import (
    choice_accuracy,
    pairwise_accuracy,
    recall_at_k_i2t,
    recall_at_k_t2i,
    set_recall_at_k,
    top1_rate,
    topk_accuracy,
)


def test_pairwise_counts_ties_apart():
    r = pairwise_accuracy(torch.tensor([0.5, 0.2, 0.3, 0.1]), torch.tensor([0.4, 0.2, 0.9, 0.1]))
    assert r == {"accuracy": 0.25, "correct": 1, "ties": 2, "total": 4}


def test_choice_strict_max_and_ties():
    scores = torch.tensor([[0.9, 0.1, 0.2], [0.5, 0.5, 0.1], [0.1, 0.3, 0.2], [0.1, 0.2, 0.7]])
    r = choice_accuracy(scores, torch.tensor([0, 0, 1, 0]))
    assert (r["correct"], r["ties"], r["total"]) == (2, 1, 4)
    assert r["accuracy_ties_as_correct"] == 0.75


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
    # columns: text 0 -> own image 0 (0.1) below 0.7 -> rank 2; text 1 rank 1; text 2: 0.3 < 0.8 -> 2;
    # text 3: own 0.1 < 0.5 -> rank 2 (0.0 below); text 4: own 0.05 < 0.2 -> rank 2
    t2i = recall_at_k_t2i(sim, owner, ks=(1, 2))
    assert t2i == {"t2i_r1": pytest.approx(1 / 5), "t2i_r2": 1.0}


def test_set_recall_and_top1_rate():
    sim = torch.tensor([[0.9, 0.1, 0.5], [0.1, 0.2, 0.3]])
    assert set_recall_at_k(sim, [{2}, {2}], ks=(1, 2)) == {"r1": 0.5, "r2": 1.0}
    assert top1_rate(sim, [{0}, {0, 1}]) == 0.5
