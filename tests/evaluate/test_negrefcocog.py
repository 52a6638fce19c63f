import json

import numpy as np
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


def _released_loop(bundle, records, root):
    """Port of parkquasar/NegationCLIP NegRefCOCOg/negrefcocog_eval.py: the phrase encoded once,
    the image reopened for every box and cropped without clipping, one crop per forward pass,
    ``np.argmax`` (first maximum) and ``bbox_list[pred] == ref_bbox``. Also the strict/tie
    reading of the same per-box scores."""
    official, outcomes = [], []
    with torch.no_grad():
        for r in records:
            tok = bundle.tokenizer([r["phrase"]])
            t = F.normalize(text_features(bundle.model, tok.input_ids, tok.attention_mask), dim=-1)
            sims = []
            for x, y, w, h in r["bbox_list"]:
                image = Image.open(root / r["image"])
                cropped = image.crop((x, y, x + w, y + h))  # own mode: preprocess converts
                v = F.normalize(image_features(bundle.model, bundle.transform([cropped])), dim=-1)
                sims.append((v @ t.T).item())
            pred = int(np.argmax(sims))
            official.append(r["bbox_list"][pred] == r["ref_bbox"])
            ref = r["bbox_list"].index(r["ref_bbox"])
            best_other = max(s for j, s in enumerate(sims) if j != ref)
            outcomes.append("correct" if sims[ref] > best_other
                            else "tie" if sims[ref] == best_other else "wrong")
    return official, outcomes


def test_released_file_matches_released_loop_item_by_item(released, tiny_bundle, tmp_path):
    path, records, root = released
    assert len(records) == 440
    res = evaluate_negrefcocog(tiny_bundle, path, root, cache=ImageEmbeddingCache(tmp_path / "c"),
                               return_items=True)
    official, expected = _released_loop(tiny_bundle, records, root)
    assert [it["official_correct"] for it in res["items"]] == official
    assert [it["outcome"] for it in res["items"]] == expected
    assert res["total"] == 440 and res["missing_images"] == 0 and res["skipped"] == 0
    assert res["correct"] == sum(official) and res["accuracy_official"] == sum(official) / 440
    assert res["accuracy"] == res["accuracy_official"]
    assert res["correct_strict"] == expected.count("correct") and res["ties"] == expected.count("tie")
    assert res["accuracy_strict"] == pytest.approx(res["correct_strict"] / 440)
    # every image decoded once for all its boxes; duplicate boxes encoded once
    assert res["image_decodes"] == len({r["image"] for r in records})
    assert res["crops"] == len({(r["image"], tuple(b)) for r in records for b in r["bbox_list"]})
    assert res["items_per_second"] > 0 and res["clipped_boxes"] == 0
    # a second run reads every crop from the cache and gives the same answer
    again = evaluate_negrefcocog(tiny_bundle, path, root, cache=ImageEmbeddingCache(tmp_path / "c"))
    assert again["correct"] == res["correct"] and again["image_decodes"] == 0


def test_flat_images_all_ties_official_loop_scores_one(tmp_path, tiny_bundle):
    """Every crop of a flat image is the same picture: the released loop's scores are bit-equal,
    np.argmax picks the first box (the reference), accuracy 1.0; batched encoding must not
    turn ~1e-8 of noise into wins or losses."""
    root = tmp_path / "flat"
    root.mkdir()
    recs = []
    for i in range(12):
        name = f"flat{i}.png"
        Image.new("RGB", (64 + 8 * i, 48 + 4 * i), (20 * i % 256, 90, 200 - 10 * i)).save(root / name)
        boxes = [[1, 2, 20 + i, 17], [30, 10, 24, 30 - i], [5 + i, 20, 33, 25], [0, 0, 64, 48]]
        recs.append({"image": name, "phrase": f"a wall with no picture {i}", "ref_bbox": boxes[0],
                     "bbox_list": boxes})
    f = _write(tmp_path / "flat.json", recs)
    official, outcomes = _released_loop(tiny_bundle, recs, root)
    assert all(official) and set(outcomes) == {"tie"}
    res = evaluate_negrefcocog(tiny_bundle, f, root, batch_size=3)
    assert res["accuracy_official"] == 1.0 and res["ties"] == 12 and res["accuracy_strict"] == 0.0


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


def test_palette_and_alpha_images_follow_the_released_order(tmp_path, tiny_bundle):
    """negrefcocog_eval.py crops the image in its own mode and lets ``preprocess`` resize before
    converting to RGB; converting first gives other pixels for P / RGBA / L files."""
    root = tmp_path / "modes"
    root.mkdir()
    rng = np.random.default_rng(0)
    recs = []
    for i, mode in enumerate(["P", "RGBA", "L", "LA", "RGB"]):
        arr = rng.integers(0, 256, size=(61 + 7 * i, 83, 4), dtype=np.uint8)
        im = Image.fromarray(arr, "RGBA")
        im = im.convert("P", palette=Image.Palette.ADAPTIVE) if mode == "P" else im.convert(mode)
        name = f"m{i}.png"
        im.save(root / name)
        boxes = [[3, 4, 40, 37], [20, 9, 51, 44]]
        recs.append({"image": name, "phrase": f"a texture with no stripes {i}",
                     "ref_bbox": boxes[i % 2], "bbox_list": boxes})
    f = _write(tmp_path / "modes.json", recs)
    official, outcomes = _released_loop(tiny_bundle, recs, root)
    res = evaluate_negrefcocog(tiny_bundle, f, root, return_items=True)
    assert [it["official_correct"] for it in res["items"]] == official
    assert [it["outcome"] for it in res["items"]] == outcomes
    # and the per-box scores are the released loop's (not those of RGB-first crops)
    with torch.no_grad():
        for r, it in zip(recs, res["items"]):
            tok = tiny_bundle.tokenizer([r["phrase"]])
            t = F.normalize(text_features(tiny_bundle.model, tok.input_ids, tok.attention_mask), dim=-1)
            x, y, w, h = r["bbox_list"][0]
            crop = Image.open(root / r["image"]).crop((x, y, x + w, y + h))
            v = F.normalize(image_features(tiny_bundle.model, tiny_bundle.transform([crop])), dim=-1)
            assert it["scores"][0] == pytest.approx((v @ t.T).item(), abs=1e-5)
