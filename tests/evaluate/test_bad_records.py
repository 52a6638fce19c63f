"""Records that used to crash or silently skew a benchmark: NegRefCOCOg items with one box,
malformed RefCOCOg refs fields, instances outside their image."""

import json
import pickle

import pytest

from negationclip.evaluate.negrefcocog import evaluate_negrefcocog
from negationclip.evaluate.refcocog_build import BuildConfig, build_negrefcocog
from negationclip.utils import NegationClipError

from .conftest import fabricate_for_boxes


def test_one_box_records_are_counted_and_left_out(tmp_path, tiny_bundle):
    recs = [
        {"image": "a.jpg", "phrase": "the dog with no collar", "ref_bbox": [0, 0, 10, 10],
         "bbox_list": [[0, 0, 10, 10]]},
        {"image": "a.jpg", "phrase": "the cat that is not asleep", "ref_bbox": [0, 0, 10, 10],
         "bbox_list": [[0, 0, 10, 10], [10, 10, 12, 12]]},
    ]
    (tmp_path / "neg.json").write_text(json.dumps(recs))
    fabricate_for_boxes(tmp_path / "img", recs)
    res = evaluate_negrefcocog(tiny_bundle, tmp_path / "neg.json", tmp_path / "img")
    assert res["skipped_single_box"] == 1
    assert res["total"] == 1  # a one-box record is not a free "correct"


def _instances(path, boxes):
    path.write_text(json.dumps({
        "images": [{"id": 1, "file_name": "i.jpg", "width": 100, "height": 80}],
        "categories": [{"id": 1, "name": "dog"}],
        "annotations": [{"id": 10 + k, "image_id": 1, "category_id": 1, "bbox": b,
                         "area": b[2] * b[3]} for k, b in enumerate(boxes)]}))
    return path


def _refs(path, refs):
    path.write_bytes(pickle.dumps(refs, protocol=2))
    return path


def _ref(ann_id=10, sentences=None):
    return {"ref_id": 1, "ann_id": ann_id, "image_id": 1, "category_id": 1, "split": "train",
            "sentences": sentences if sentences is not None else [{"sent": "the dog with no ball"}]}


@pytest.mark.parametrize("ref,msg", [
    (_ref(sentences=5), r"refs\[0\]: 'sentences' must be a list, got int"),
    (_ref(ann_id=[1, 2]), r"refs\[0\]: 'ann_id' must be an integer, got list"),
    (_ref(ann_id="10"), r"'ann_id' must be an integer, got str"),
])
def test_malformed_refs_fields_are_named(tmp_path, ref, msg):
    inst = _instances(tmp_path / "inst.json", [[0, 0, 20, 20], [30, 30, 20, 20]])
    with pytest.raises(NegationClipError, match=msg):
        build_negrefcocog(_refs(tmp_path / "refs.p", [ref]), inst)


def test_boxes_outside_the_image_are_skipped_and_counted(tmp_path):
    # ann 10: reference inside; 11: a negative fully outside (x beyond width); 12: inside;
    # ann 13 as a reference lies outside (negative y)
    inst = _instances(tmp_path / "inst.json",
                      [[0, 0, 20, 20], [150, 10, 20, 20], [40, 30, 20, 20], [10, -50, 20, 20]])
    refs = _refs(tmp_path / "refs.p", [_ref(10), {**_ref(13), "ref_id": 2}])
    records, stats = build_negrefcocog(refs, inst, BuildConfig())
    s = stats.as_dict()["skipped"]
    assert s["negative_box_outside_image"] == 2  # anns 11 and 13, negatives of ref 10
    assert s["reference_box_outside_image"] == 1
    for r in records:
        for x, y, w, h in r["bbox_list"]:
            assert w >= 1 and h >= 1 and x >= 0 and y >= 0 and x + w <= 100 and y + h <= 80
    assert [r["bbox_list"][1] for r in records] == [[40.0, 30.0, 20.0, 20.0]]
