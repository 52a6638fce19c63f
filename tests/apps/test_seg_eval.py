from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from negationclip.apps import seg_eval as E
from negationclip.utils import NegationClipError, load_json, read_jsonl

SQUARE = [[0, 0, 10, 0, 10, 10, 0, 10]]       # 100 pixels: x, y in [0, 10)
STRIP = [[0, 0, 2, 0, 2, 10, 0, 10]]          # 20 pixels: x in [0, 2)


def half_predictor(images, texts):
    """Known predictions: "...left..." -> columns [0, 5); anything else -> columns [0, 2)."""
    out = []
    for im, t in zip(images, texts):
        p = torch.zeros(im.height, im.width)
        p[:, : (5 if "left" in t else 2)] = 0.9
        out.append(p)
    return out


def write_coco(tmp_path, anns):
    (tmp_path / "images").mkdir(exist_ok=True)
    for name in ("a.png", "b.png"):
        Image.new("RGB", (20, 10), (90, 90, 90)).save(tmp_path / "images" / name)
    inst = {"images": [{"id": 1, "file_name": "a.png", "width": 20, "height": 10},
                       {"id": 2, "file_name": "b.png", "width": 20, "height": 10}],
            "categories": [{"id": 1, "name": "dog"}],
            "annotations": [{"id": i, "image_id": im, "category_id": 1, "bbox": box, "area": 1.0,
                             "segmentation": seg, "iscrowd": 0} for i, im, box, seg in anns]}
    (tmp_path / "instances.json").write_text(json.dumps(inst))
    return tmp_path / "instances.json"


def test_decode_mask_formats():
    m = E.decode_mask(SQUARE, 10, 20)
    assert m.shape == (10, 20) and m.sum() == 100 and m[:, :10].all()
    from pycocotools import mask as M

    rle = M.encode(np.asfortranarray(m.astype(np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")  # as stored in JSON
    assert (E.decode_mask(rle, 10, 20) == m).all()
    pc = [[[[0, 0], [10, 0], [10, 10], [0, 10]]], [[[15, 0], [20, 0], [20, 10], [15, 10]]]]
    assert E.decode_mask(pc, 10, 20, "phrasecut").sum() == 150


def test_refcocog_negated_filter_and_known_ious(tmp_path):
    inst = write_coco(tmp_path, [(11, 1, [0, 0, 10, 10], SQUARE), (12, 2, [0, 0, 2, 10], STRIP)])
    refs = [{"ref_id": 1, "ann_id": 11, "image_id": 1, "split": "val", "category_id": 1,
             "sentences": [{"sent_id": 5, "sent": "the dog on the left with no collar"},
                           {"sent_id": 6, "sent": "the brown dog"}]},
            {"ref_id": 2, "ann_id": 12, "image_id": 2, "split": "val", "category_id": 1,
             "sentences": [{"sent_id": 7, "sent": "a dog that is not sitting"}]},
            {"ref_id": 3, "ann_id": 12, "image_id": 2, "split": "train", "category_id": 1,
             "sentences": [{"sent_id": 8, "sent": "not in val"}]}]
    (tmp_path / "refs(umd).p").write_bytes(pickle.dumps(refs, protocol=2))
    samples, stats = E.load_refcocog(tmp_path / "refs(umd).p", inst, tmp_path / "images")
    assert [s.key for s in samples] == ["ref1:5", "ref2:7"]
    assert stats.to_json() == {"expressions": 3, "kept": 2, "skipped": {"not negated": 1}}
    out = E.evaluate_segmentation(half_predictor, samples, tmp_path / "eval", load_stats=stats)
    # sample 1: pred 50 px inside a 100 px square -> IoU 0.5; sample 2: exact 20 px -> 1.0
    assert out["n"] == 2
    assert out["mIoU"] == pytest.approx(0.75)
    assert out["cIoU"] == pytest.approx((50 + 20) / (100 + 20), abs=1e-6)
    assert out["P@0.5"] == 1.0 and out["P@0.9"] == 0.5
    assert out["negated"]["n"] == 2 and out["affirmative"]["n"] == 0
    assert load_json(tmp_path / "eval" / E.SUMMARY)["mIoU"] == out["mIoU"]
    # resume: nothing is predicted again, the numbers are the same
    again = E.evaluate_segmentation(lambda *a: pytest.fail("re-predicted"), samples, tmp_path / "eval")
    assert again["mIoU"] == out["mIoU"] and len(read_jsonl(tmp_path / "eval" / E.RESULTS)) == 2
    # all expressions, and a JSON refs file
    (tmp_path / "refs.json").write_text(json.dumps(refs))
    allx, _ = E.load_refcocog(tmp_path / "refs.json", inst, tmp_path / "images", filter="all")
    assert sorted(s.negated for s in allx) == [False, True, True]


def test_refcocog_pickle_with_code_is_refused(tmp_path):
    import os

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    (tmp_path / "refs.p").write_bytes(pickle.dumps([Evil()]))
    inst = write_coco(tmp_path, [])
    with pytest.raises(NegationClipError, match="refusing"):
        E.load_refcocog(tmp_path / "refs.p", inst, tmp_path / "images")


def test_phrasecut(tmp_path):
    (tmp_path / "images").mkdir()
    Image.new("RGB", (20, 10)).save(tmp_path / "images" / "7.jpg")
    tasks = [{"task_id": "7__1", "image_id": 7, "phrase": "left dog",
              "Polygons": [[[[0, 0], [10, 0], [10, 10], [0, 10]]]]},
             {"task_id": "7__2", "image_id": 7, "phrase": "grass", "Polygons": []}]
    (tmp_path / "refer_test.json").write_text(json.dumps(tasks))
    samples, stats = E.load_phrasecut(tmp_path / "refer_test.json", tmp_path / "images")
    assert len(samples) == 1 and stats.skipped == {"no polygons": 1}
    out = E.evaluate_segmentation(half_predictor, samples, tmp_path / "o")
    assert out["mIoU"] == pytest.approx(0.5)
    (tmp_path / "bad.json").write_text(json.dumps([{"task_id": 1}]))
    with pytest.raises(NegationClipError, match=r"bad.json: task 0 needs"):
        E.load_phrasecut(tmp_path / "bad.json", tmp_path / "images")


def test_negref_matching_and_failures(tmp_path):
    inst = write_coco(tmp_path, [(1, 1, [0, 0, 10, 10], SQUARE), (2, 1, [12, 0, 8, 10], [[12, 0, 20, 0, 20, 10, 12, 10]]),
                                 (3, 2, [0, 0, 2, 10], STRIP)])
    items = [{"image": "a.png", "phrase": "the dog on the left without a collar",
              "ref_bbox": [0, 0, 11, 10], "bbox_list": [[0, 0, 11, 10], [11, 0, 9, 10]]},
             {"image": "b.png", "phrase": "a dog not sitting", "ref_bbox": [0, 0, 2, 10],
              "bbox_list": [[0, 0, 2, 10]]},
             {"image": "missing.png", "phrase": "no dog", "ref_bbox": [0, 0, 2, 2], "bbox_list": [[0, 0, 2, 2]]}]
    (tmp_path / "negref.json").write_text(json.dumps(items))
    samples, stats = E.load_negref_instances(tmp_path / "negref.json", inst, tmp_path / "images")
    assert [s.mask(10, 20).sum() for s in samples] == [100, 20]
    assert stats.skipped == {"image not in instances": 1}
    (tmp_path / "images" / "b.png").write_bytes(b"broken")
    out = E.evaluate_segmentation(half_predictor, samples, tmp_path / "o")
    assert out["n"] == 1 and out["failed"] == {"unreadable image": 1}
    assert "failed: unreadable image 1" in "\n".join(E.summary_lines(out))


def test_negworld_export_oracle_scores_one(tmp_path):
    """On a real NegWorld export every NegRef expression finds its exact instance mask."""
    from negationclip.data.negworld import WorldConfig
    from negationclip.data.negworld.export import build_world

    root = tmp_path / "world"
    build_world(root, WorldConfig(images=30, seed=3), show_progress=False)
    samples, stats = E.load_negref_instances(root / "negref.json", root / "instances_test.json",
                                             root / "images")
    assert samples and stats.kept == stats.expressions, stats.to_json()
    gts = {s.key: s for s in samples}

    def oracle(images, texts):
        return [torch.from_numpy(gts[k].mask(im.height, im.width).astype(np.float32))
                for im, k in zip(images, keys.pop(0))]

    keys = [[s.key for s in samples[i:i + 4]] for i in range(0, len(samples), 4)]
    out = E.evaluate_segmentation(oracle, samples, tmp_path / "o", batch_size=4)
    assert out["mIoU"] == 1.0 and out["cIoU"] == 1.0


def test_tiny_clipseg_end_to_end(clip_and_clipseg, tmp_path):
    from negationclip.apps.segmentation import load_clipseg

    _, _, clipseg_dir = clip_and_clipseg
    model, proc = load_clipseg(clipseg_dir)
    inst = write_coco(tmp_path, [(1, 1, [0, 0, 10, 10], SQUARE)])
    (tmp_path / "negref.json").write_text(json.dumps([{"image": "a.png", "phrase": "no cat",
                                                       "ref_bbox": [0, 0, 10, 10], "bbox_list": [[0, 0, 10, 10]]}]))
    samples, _ = E.load_negref_instances(tmp_path / "negref.json", inst, tmp_path / "images")
    out = E.evaluate_segmentation(E.clipseg_predictor(model, proc), samples, tmp_path / "o")
    assert out["n"] == 1 and 0.0 <= out["mIoU"] <= 1.0
