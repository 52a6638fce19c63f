import json

import torch
import torch.nn.functional as F

from negationclip.evaluate.valse import evaluate_valse, valse_pieces
from negationclip.models import image_features, open_image, text_features

from .conftest import fabricate_image


def _one_text(bundle, text):
    tok = bundle.tokenizer([text])
    return F.normalize(text_features(bundle.model, tok.input_ids, tok.attention_mask), dim=-1)[0]


def test_existence_matches_independent_computation(benchmarks_dir, tiny_bundle, tmp_path):
    path = benchmarks_dir / "valse" / "existence.json"
    recs = json.loads(path.read_text())
    root = tmp_path / "v7w"
    for r in recs.values():
        if not (root / r["image_file"]).exists():
            fabricate_image(root / r["image_file"], 48, 40, r["image_file"])
    res = evaluate_valse(tiny_bundle, path, root, return_items=True)
    expected = {}
    with torch.no_grad():
        for key, r in recs.items():
            v = F.normalize(image_features(tiny_bundle.model,
                                           tiny_bundle.transform([open_image(root / r["image_file"])])), dim=-1)[0]
            expected[key] = float(v @ _one_text(tiny_bundle, r["caption"])) > \
                float(v @ _one_text(tiny_bundle, r["foil"]))
    got = {it["key"]: it["caption_score"] > it["foil_score"] for it in res["items"]}
    assert got == expected
    assert res["total"] == len(recs) == 534
    assert res["correct"] == sum(expected.values())
    assert res["benchmark"] == "valse-existence" and res["missing_images"] == 0
    # VALSE's validation votes filter (mturk is a dict in this piece)
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
    res = evaluate_valse(tiny_bundle, p, tmp_path / "im", max_missing=0.3, mturk_min_votes=2)
    assert res["mturk_filtered_out"] == 4  # votes 0, 1 (twice each)
    assert res["missing_images"] == 1 and res["total"] == 3  # i7 (votes 3) is missing
