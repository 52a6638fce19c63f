import json

import torch
import torch.nn.functional as F

from negationclip.evaluate.valse import evaluate_valse, valse_pieces
from negationclip.models import image_features, open_image, text_features

from .conftest import fabricate_image


def _one_text(bundle, text):
    tok = bundle.tokenizer([text])
    return F.normalize(text_features(bundle.model, tok.input_ids, tok.attention_mask), dim=-1)[0]


def test_existence_matches_valse_rule(benchmarks_dir, tiny_bundle, tmp_path):
    """VALSE's rule, ported from Heidelberg-NLP/VALSE lxmert_valse_eval.py: keep items with
    ``foil['mturk']['caption'] >= 2`` and count ``score(caption) > score(foil)`` (strict)."""
    path = benchmarks_dir / "valse" / "existence.json"
    recs = json.loads(path.read_text())
    root = tmp_path / "v7w"
    for r in recs.values():
        if not (root / r["image_file"]).exists():
            fabricate_image(root / r["image_file"], 48, 40, r["image_file"])
    res = evaluate_valse(tiny_bundle, path, root, return_items=True)
    count = pairwise_acc = every = 0
    detected = {}
    with torch.no_grad():
        for key, foil in recs.items():
            v = F.normalize(image_features(tiny_bundle.model,
                                           tiny_bundle.transform([open_image(root / foil["image_file"])])), dim=-1)[0]
            won = float(v @ _one_text(tiny_bundle, foil["caption"])) > \
                float(v @ _one_text(tiny_bundle, foil["foil"]))
            detected[key] = won
            every += won
            if foil["mturk"]["caption"] >= 2:  # valid examples only (validated by mturkers)
                pairwise_acc += won
                count += 1
    assert count == 505
    got = {it["key"]: it["caption_score"] > it["foil_score"] for it in res["items"]}
    assert got == detected
    assert res["total"] == 505 and res["invalid_items"] == 29
    assert res["correct"] == pairwise_acc and res["accuracy_official"] == pairwise_acc / count
    assert res["accuracy"] == res["accuracy_official"] == res["accuracy_strict"]
    assert res["all_items"]["total"] == 534 and res["all_items"]["correct"] == every
    assert res["benchmark"] == "valse:existence" and res["missing_images"] == 0
    assert res["valid_filter"] == "mturk caption votes >= 2"
    # all items as the main figure, or another vote threshold
    allitems = evaluate_valse(tiny_bundle, path, root, mturk_min_votes=None)
    assert allitems["total"] == 534 and allitems["correct"] == every
    strict = evaluate_valse(tiny_bundle, path, root, mturk_min_votes=3)
    assert strict["total"] == sum(1 for r in recs.values() if r["mturk"]["caption"] >= 3)


def test_piece_order_existence_first(benchmarks_dir):
    pieces = valse_pieces(benchmarks_dir / "valse")
    assert pieces[0].stem == "existence" and len(pieces) >= 2


def test_mturk_as_string_and_missing_image(tmp_path, tiny_bundle):
    recs = {f"k{i}": {"image_file": f"i{i}.jpg", "caption": "There are no dogs.",
                      "foil": "There are dogs.", "mturk": "{'foil': 0, 'caption': %d, 'other': 0}" % (i % 4)}
            for i in range(8)}
    p = tmp_path / "plurals.json"
    p.write_text(json.dumps(recs))
    for i in range(7):
        fabricate_image(tmp_path / "im" / f"i{i}.jpg", 20, 20, str(i))
    res = evaluate_valse(tiny_bundle, p, tmp_path / "im", max_missing=0.3)
    assert res["invalid_items"] == 4  # votes 0, 1 (twice each)
    assert res["missing_images"] == 1 and res["total"] == 3  # i7 (votes 3) is missing
    assert res["all_items"]["total"] == 7


def test_file_without_votes_scores_every_item(tmp_path, tiny_bundle):
    recs = {f"k{i}": {"image_file": f"i{i}.jpg", "caption": "There are no dogs.",
                      "foil": "There are dogs."} for i in range(3)}
    p = tmp_path / "existence.json"
    p.write_text(json.dumps(recs))
    for i in range(3):
        fabricate_image(tmp_path / "im" / f"i{i}.jpg", 20, 20, str(i))
    res = evaluate_valse(tiny_bundle, p, tmp_path / "im")
    assert res["total"] == 3 and res["valid_filter"].startswith("unavailable")
