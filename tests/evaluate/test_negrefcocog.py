import json

import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from negationclip.evaluate.negrefcocog import evaluate_negrefcocog
from negationclip.models import ImageEmbeddingCache, image_features, text_features
from negationclip.utils import NegationClipError

from .conftest import fabricate_for_boxes, fabricate_image


@pytest.fixture(scope="module")
def released(benchmarks_dir, tmp_path_factory):
    path = benchmarks_dir / "NegRefCOCOg.json"
    records = json.loads(path.read_text())
    root = tmp_path_factory.mktemp("coco_train2014")
    fabricate_for_boxes(root, records)
    return path, records, root


def _reference_outcomes(bundle, records, root):
    """Independent per-box computation: reopen the image for every box, one crop per forward."""
    outcomes = []
    with torch.no_grad():
        for r in records:
            tok = bundle.tokenizer([r["phrase"]])
            t = F.normalize(text_features(bundle.model, tok.input_ids, tok.attention_mask), dim=-1)[0]
            scores = []
            for x, y, w, h in r["bbox_list"]:
                im = Image.open(root / r["image"]).convert("RGB")
                left, top = max(0, x), max(0, y)
                right, bottom = min(im.width, x + w), min(im.height, y + h)
                crop = im.crop((left, top, right, bottom))
                v = F.normalize(image_features(bundle.model, bundle.transform([crop])), dim=-1)[0]
                scores.append(float(v @ t))
            ref = r["bbox_list"].index(r["ref_bbox"])
            best_other = max(s for j, s in enumerate(scores) if j != ref)
            outcomes.append("correct" if scores[ref] > best_other
                            else "tie" if scores[ref] == best_other else "wrong")
    return outcomes


def test_released_file_matches_per_box_reference_item_by_item(released, tiny_bundle, tmp_path):
    path, records, root = released
    assert len(records) == 440
    res = evaluate_negrefcocog(tiny_bundle, path, root, cache=ImageEmbeddingCache(tmp_path / "c"),
                               return_items=True)
    expected = _reference_outcomes(tiny_bundle, records, root)
    got = [it["outcome"] for it in res["items"]]
    assert got == expected
    assert res["total"] == 440 and res["missing_images"] == 0 and res["skipped"] == 0
    assert res["correct"] == expected.count("correct") and res["ties"] == expected.count("tie")
    assert res["accuracy"] == pytest.approx(res["correct"] / 440)
    # every image decoded once for all its boxes; duplicate boxes encoded once
    assert res["image_decodes"] == len({r["image"] for r in records})
    assert res["crops"] == len({(r["image"], tuple(b)) for r in records for b in r["bbox_list"]})
    assert res["items_per_second"] > 0 and res["clipped_boxes"] == 0
    # a second run reads every crop from the cache and gives the same answer
    again = evaluate_negrefcocog(tiny_bundle, path, root, cache=ImageEmbeddingCache(tmp_path / "c"))
    assert again["correct"] == res["correct"] and again["image_decodes"] == 0


def _write(path, records):
    path.write_text(json.dumps(records))
    return path


def test_missing_images_counted_then_fatal_over_threshold(tmp_path, tiny_bundle):
    recs = [{"image": f"im{i}.jpg", "phrase": f"a dog with no hat {i}",
             "ref_bbox": [0, 0, 10, 10], "bbox_list": [[0, 0, 10, 10], [10, 5, 20, 20]]}
            for i in range(10)]
    root = tmp_path / "imgs"
    for r in recs[:9]:
        fabricate_image(root / r["image"], 40, 30, r["image"])
    f = _write(tmp_path / "neg.json", recs)
    res = evaluate_negrefcocog(tiny_bundle, f, root, max_missing=0.2,
                               missing_out=tmp_path / "missing.txt")
    assert res["missing_images"] == 1 and res["skipped"] == 1 and res["total"] == 9
    assert "im9.jpg" in (tmp_path / "missing.txt").read_text()
    with pytest.raises(NegationClipError, match=r"1 of 10 images missing.*missing2\.txt"):
        evaluate_negrefcocog(tiny_bundle, f, root, max_missing=0.05,
                             missing_out=tmp_path / "missing2.txt")
    assert (tmp_path / "missing2.txt").exists()


def test_box_outside_image_is_clipped_and_counted_degenerate_is_an_error(tmp_path, tiny_bundle):
    root = tmp_path / "imgs"
    fabricate_image(root / "a.jpg", 40, 30, "a")
    recs = [{"image": "a.jpg", "phrase": "no cat", "ref_bbox": [0, 0, 10, 10],
             "bbox_list": [[0, 0, 10, 10], [30, 20, 50, 50]]}]
    res = evaluate_negrefcocog(tiny_bundle, _write(tmp_path / "a.json", recs), root)
    assert res["clipped_boxes"] == 1 and res["total"] == 1
    recs.append({"image": "a.jpg", "phrase": "no dog", "ref_bbox": [0, 0, 10, 10],
                 "bbox_list": [[0, 0, 10, 10], [5, 5, 0, 12]]})
    with pytest.raises(NegationClipError, match=r"b\.json: record 1 \(a\.jpg\): bbox_list\[1\].*degenerate"):
        evaluate_negrefcocog(tiny_bundle, _write(tmp_path / "b.json", recs), root)
    recs[1]["bbox_list"][1] = [100, 100, 5, 5]
    with pytest.raises(NegationClipError, match=r"record 1 .*outside the 40x30 image"):
        evaluate_negrefcocog(tiny_bundle, _write(tmp_path / "c.json", recs), root)
