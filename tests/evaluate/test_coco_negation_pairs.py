import json
import re

import pytest
import torch
import torch.nn.functional as F

from negationclip.data import load_coco_instances
from negationclip.evaluate.negation_pairs import evaluate_negation_pairs
from negationclip.evaluate.coco_negation import build_coco_negation, evaluate_coco_negation
from negationclip.models import encode_text, image_features, open_image

from .conftest import fabricate_image

CATS = ["dog", "cat", "car", "apple"]
PRESENT = {1: {"dog", "cat"}, 2: {"dog", "car"}, 3: {"cat"}, 4: {"apple", "dog"}, 5: {"car", "cat"}}


def _instances(tmp_path):
    cid = {c: i + 1 for i, c in enumerate(CATS)}
    anns, n = [], 0
    for iid, names in PRESENT.items():
        for c in sorted(names):
            n += 1
            anns.append({"id": n, "image_id": iid, "category_id": cid[c], "bbox": [1, 1, 5, 5]})
    obj = {"images": [{"id": i, "file_name": f"{i}.png", "width": 24, "height": 24} for i in PRESENT]
           + [{"id": 9, "file_name": "empty.png", "width": 24, "height": 24}],
           "categories": [{"id": cid[c], "name": c} for c in CATS], "annotations": anns}
    p = tmp_path / "instances.json"
    p.write_text(json.dumps(obj))
    for i in PRESENT:
        fabricate_image(tmp_path / "img" / f"{i}.png", 24, 24, str(i))
    return p


def _truth(option: str, present: set[str]) -> bool:
    """Judge an option sentence against the objects in the image, from its wording alone."""
    o = option.rstrip(".").lower()
    m = re.search(r"(?:features|there is|includes) (?:an? )?(\w+) (?:but|and) (?:not|no) (?:an? )?(\w+)", o)
    if m:
        return m.group(1) in present and m.group(2) not in present
    m = re.search(r"(?:does not feature|there is no|does not include) (?:an? )?(\w+)", o)
    if m:
        return m.group(1) not in present
    m = re.search(r"(?:features|there is|includes) (?:an? )?(\w+)", o)
    return m.group(1) in present


def test_built_questions_have_exactly_one_true_option(tmp_path):
    inst = load_coco_instances(_instances(tmp_path))
    ids, questions, queries, skipped = build_coco_negation(inst, seed=3)
    assert ids == sorted(PRESENT) and skipped["no_objects"] == 1
    assert len(questions) == 3 * len(PRESENT)
    for q in questions:
        present = PRESENT[ids[q.image]]
        truth = [_truth(o, present) for o in q.options]
        assert truth.count(True) == 1 and truth[q.answer], (q, truth)
        assert q.present in present and q.absent not in present
    for qr in queries:
        x, y = re.match(r"a photo with (\w+) but no (\w+)", qr.text).groups()
        assert qr.positives == {k for k, i in enumerate(ids) if x in PRESENT[i] and y not in PRESENT[i]}
        assert qr.contains_negated == {k for k, i in enumerate(ids) if {x, y} <= PRESENT[i]}
    # deterministic in the seed
    assert build_coco_negation(inst, seed=3)[1] == questions


def test_coco_negation_mcq_matches_manual_scores(tmp_path, tiny_bundle):
    p = _instances(tmp_path)
    res = evaluate_coco_negation(tiny_bundle, p, tmp_path / "img", seed=3)
    inst = load_coco_instances(p)
    ids, questions, _, _ = build_coco_negation(inst, seed=3)
    correct = 0
    with torch.no_grad():
        for q in questions:
            im = open_image(tmp_path / "img" / f"{ids[q.image]}.png")
            v = F.normalize(image_features(tiny_bundle.model, tiny_bundle.transform([im])), dim=-1)[0]
            s = encode_text(tiny_bundle, q.options) @ v
            correct += int(all(s[q.answer] > s[j] for j in range(4) if j != q.answer))
    assert res["correct_strict"] == correct and res["total"] == 15
    assert res["correct_strict"] <= res["correct"] <= res["correct_strict"] + res["ties"]
    assert res["mcq_negation_total"] == res["mcq_affirmation_total"] == res["mcq_hybrid_total"] == 5
    assert 0.0 <= res["retrieval_neg_r1"] <= res["retrieval_neg_r5"] <= 1.0
    assert res["missing_images"] == 0


def test_negation_pairs_against_manual(tmp_path, tiny_bundle):
    recs = []
    for i in range(6):
        for name in (f"s{i}.png", f"s{i}_foil.png"):
            fabricate_image(tmp_path / "images" / name, 20, 20, name)
        recs.append({"id": str(i), "text": f"a room with no lamp {i}", "image": f"images/s{i}.png",
                     "foil_image": f"images/s{i}_foil.png", "negated_object": "lamp",
                     "heldout_phrasing": i % 3 == 0, "template": "no" if i % 2 else "without",
                     "split": "test" if i < 5 else "val"})
    p = tmp_path / "negation_pairs.json"
    p.write_text(json.dumps(recs))
    res = evaluate_negation_pairs(tiny_bundle, p, split="test")
    assert res["total"] == 5 and res["heldout_total"] == 2 and res["trained_phrasing_total"] == 3
    wins = []
    with torch.no_grad():
        for r in recs[:5]:
            t = encode_text(tiny_bundle, [r["text"]])[0]
            a, b = (F.normalize(image_features(tiny_bundle.model, tiny_bundle.transform(
                [open_image(tmp_path / r[k])])), dim=-1)[0] @ t for k in ("image", "foil_image"))
            wins.append(bool(a > b))
    assert res["correct"] == sum(wins)
    held = [w for w, r in zip(wins, recs) if r["heldout_phrasing"]]
    assert res["heldout_accuracy"] == pytest.approx(sum(held) / len(held))
    assert set(res["per_template"]) == {"no", "without"}
