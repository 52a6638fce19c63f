import json
import os
import pickle

import pytest

from negationclip.data import load_negref
from negationclip.evaluate.refcocog_build import (
    BuildConfig,
    build_negrefcocog,
    has_negation,
    safe_load_pickle,
    write_negrefcocog,
)
from negationclip.utils import NegationClipError


def _instances(path):
    obj = {
        "images": [
            {"id": 1, "file_name": "COCO_train2014_000000000001.jpg", "width": 100, "height": 80},
            {"id": 2, "file_name": "COCO_train2014_000000000002.jpg", "width": 50, "height": 50},
        ],
        "categories": [{"id": 1, "name": "dog"}, {"id": 2, "name": "cat"}],
        "annotations": [
            {"id": 11, "image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20], "area": 400},
            {"id": 12, "image_id": 1, "category_id": 1, "bbox": [50, 20, 45, 40], "area": 1800},
            {"id": 13, "image_id": 1, "category_id": 2, "bbox": [0, 0, 5, 5], "area": 25},
            {"id": 14, "image_id": 1, "category_id": 1, "bbox": [90, 70, 2, 2], "area": 4},
            {"id": 15, "image_id": 2, "category_id": 1, "bbox": [0, 0, 10, 10], "area": 100},
        ],
    }
    path.write_text(json.dumps(obj))
    return path


def _sent(text):
    return {"sent": text, "raw": text.capitalize() + ".", "tokens": text.split()}


def _refs(path, protocol=2):
    refs = [
        {"ref_id": 1, "ann_id": 11, "image_id": 1, "category_id": 1, "split": "train",
         "file_name": "COCO_train2014_000000000001_11.jpg", "sent_ids": {1, 2, 3},
         "sentences": [_sent("the dog with no collar"), _sent("the brown dog"),
                       _sent("the dog that isn't sleeping")]},
        {"ref_id": 2, "ann_id": 15, "image_id": 2, "category_id": 1, "split": "train",
         "file_name": "x.jpg", "sent_ids": [4], "sentences": [_sent("a dog without a leash")]},
        {"ref_id": 3, "ann_id": 12, "image_id": 1, "category_id": 1, "split": "val",
         "file_name": "y.jpg", "sent_ids": (5, 6),
         "sentences": [_sent("nobody is walking this dog"), _sent("a dog near a knot")]},
    ]
    path.write_bytes(pickle.dumps(refs, protocol=protocol))
    return path


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_builder_writes_exactly_the_expected_records(tmp_path, protocol):
    refs = _refs(tmp_path / "refs(umd).p", protocol)
    inst = _instances(tmp_path / "instances.json")
    records, stats = build_negrefcocog(refs, inst, BuildConfig(min_box_area=10, expand_ratio=0.5))
    # ann 11 [10,10,20,20] grows by 0.5*size/2 per side -> [5,5,30,30];
    # ann 12 [50,20,45,40] -> x 38.75..106.25 clipped at 100, y 10..70 -> [38.75,10,61.25,60];
    # ann 14 (area 4) is below min_box_area and never a P-; ann 15 has no P- (skipped).
    p1, p2 = [5.0, 5.0, 30.0, 30.0], [38.75, 10.0, 61.25, 60.0]
    img = "COCO_train2014_000000000001.jpg"
    expected = [
        {"image": img, "phrase": "the dog with no collar", "ref_bbox": p1, "bbox_list": [p1, p2]},
        {"image": img, "phrase": "the dog that isn't sleeping", "ref_bbox": p1, "bbox_list": [p1, p2]},
        {"image": img, "phrase": "nobody is walking this dog", "ref_bbox": p2, "bbox_list": [p2, p1]},
    ]
    assert records == expected
    assert stats.negated_sentences == 4 and stats.records == 3
    assert stats.skipped["no_negative"] == 1
    out = tmp_path / "NegRefCOCOg.json"
    write_negrefcocog(records, out)
    back = load_negref(out)
    assert [(r.image, r.phrase, r.ref_bbox, r.bbox_list) for r in back] == \
        [(r["image"], r["phrase"], r["ref_bbox"], r["bbox_list"]) for r in expected]


def test_builder_split_filter_and_no_expansion(tmp_path):
    refs = _refs(tmp_path / "refs.p")
    inst = _instances(tmp_path / "instances.json")
    records, _ = build_negrefcocog(refs, inst, BuildConfig(splits=("val",)))
    # without min_box_area the tiny ann 14 is a second P- -> one record per pair
    assert [r["bbox_list"] for r in records] == [
        [[50.0, 20.0, 45.0, 40.0], [10.0, 10.0, 20.0, 20.0]],
        [[50.0, 20.0, 45.0, 40.0], [90.0, 70.0, 2.0, 2.0]],
    ]
    records, _ = build_negrefcocog(refs, inst, BuildConfig(splits=("val",), pairs=False))
    assert len(records) == 1 and len(records[0]["bbox_list"]) == 3


def test_negation_cues():
    assert has_negation("the dog that isn't sleeping")
    assert has_negation("a man with no hat") and has_negation("Nothing on it")
    assert not has_negation("a knot on a notebook")
    assert not has_negation("nonetheless a dog")
    assert has_negation("neither dog")


class _Payload:
    def __init__(self, cmd):
        self.cmd = cmd

    def __reduce__(self):
        return (os.system, (self.cmd,))


class _EvalPayload:
    def __reduce__(self):
        return (eval, ("__import__('os').system('true')",))


def test_code_execution_pickle_is_refused_and_not_run(tmp_path):
    marker = tmp_path / "pwned"
    bad = tmp_path / "refs(umd).p"
    bad.write_bytes(pickle.dumps([{"ann_id": 1, "x": _Payload(f"touch {marker}")}], protocol=2))
    with pytest.raises(NegationClipError, match=r"refusing to load.*system"):
        safe_load_pickle(bad)
    assert not marker.exists()
    with pytest.raises(NegationClipError, match="refusing"):
        build_negrefcocog(bad, _instances(tmp_path / "i.json"))
    assert not marker.exists()
    bad.write_bytes(pickle.dumps(_EvalPayload(), protocol=4))
    with pytest.raises(NegationClipError, match=r"builtins\.eval"):
        safe_load_pickle(bad)


def test_plain_data_round_trips_and_garbage_is_a_clear_error(tmp_path):
    p = tmp_path / "ok.p"
    data = {"a": [1, 2.5, None, True, "x"], "b": (1, 2), "s": {1, 2}, "f": frozenset({3})}
    for proto in (0, 2, 4, 5):
        p.write_bytes(pickle.dumps(data, protocol=proto))
        assert safe_load_pickle(p) == data
    p.write_bytes(b"not a pickle at all")
    with pytest.raises(NegationClipError, match="ok.p"):
        safe_load_pickle(p)
    with pytest.raises(NegationClipError, match="not found"):
        safe_load_pickle(tmp_path / "missing.p")
