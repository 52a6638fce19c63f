"""The real-format readers and writers: released files parse, writers round-trip, bad files
give a NegationClipError naming the file and the record."""

import json

import pytest

from negationclip.data import (
    CocoAnnotation, CocoCaption, CocoImage, KarpathyImage, ValseItem, VqaItem,
    load_coco_captions, load_coco_instances, load_karpathy, load_negref, load_valse, load_vqa,
    write_coco_captions, write_coco_instances, write_karpathy, write_negref, write_valse,
    write_vqa,
)
from negationclip.utils import NegationClipError

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:pycocotools")

VALSE_PIECES = ["actant-swap", "action-replacement", "coreference-hard", "coreference-standard",
                "counting-adversarial", "counting-hard", "counting-small-quant", "existence",
                "foil-it", "plurals", "relations"]


def test_released_negref_parses_and_round_trips_byte_identical(benchmarks_dir, tmp_path):
    src = benchmarks_dir / "NegRefCOCOg.json"
    items = load_negref(src)
    assert len(items) == 440
    assert all(len(it.bbox_list) == 2 and it.ref_index == 0 for it in items)
    assert items[0].image == "COCO_train2014_000000374391.jpg"
    assert items[0].phrase == "a without hairy brown color teddy bear"
    out = tmp_path / "negref.json"
    write_negref(out, items)
    assert out.read_bytes() == src.read_bytes()
    assert load_negref(out) == items


@pytest.mark.parametrize("piece", VALSE_PIECES)
def test_released_valse_pieces_parse_and_round_trip(benchmarks_dir, tmp_path, piece):
    src = benchmarks_dir / "valse" / f"{piece}.json"
    items = load_valse(src)
    raw = json.loads(src.read_text())
    assert len(items) == len(raw) > 0
    assert all(it.piece == piece and it.caption and it.foil and it.image_file for it in items)
    assert [it.key for it in items] == list(raw)
    out = tmp_path / f"{piece}.json"
    write_valse(out, items)
    assert out.read_bytes() == src.read_bytes()


def test_valse_existence_fields(benchmarks_dir):
    items = load_valse(benchmarks_dir / "valse" / "existence.json")
    first = items[0]
    assert first.key == "existence_visual7w_2371044"
    assert first.caption == "There are no people in the picture."
    assert first.foil == "There are people in the picture."
    assert first.raw["provenance_of_foils"] == "zero_to_something"


def test_valse_tolerates_missing_optional_fields_and_names_bad_record(tmp_path):
    p = tmp_path / "piece.json"
    p.write_text(json.dumps({"a": {"image_file": "x.jpg", "caption": "c", "foil": "f"},
                             "b": {"image_file": "y.jpg", "caption": "c"}}))
    with pytest.raises(NegationClipError, match=r"piece\.json: record 'b': missing key 'foil'"):
        load_valse(p)
    p.write_text(json.dumps({"a": {"image_file": "x.jpg", "caption": "c", "foil": "f"}}))
    (item,) = load_valse(p)
    assert item.dataset == "" and item.piece == "piece"
    out = tmp_path / "out.json"
    write_valse(out, [item, ValseItem("k2", "z.jpg", "cap", "foil", "negworld", raw={"x": 1})])
    again = load_valse(out)
    assert [(i.key, i.caption, i.foil, i.dataset) for i in again] == [
        ("a", "c", "f", ""), ("k2", "cap", "foil", "negworld")]
    assert again[1].raw["x"] == 1


def test_negref_errors_name_file_and_record(tmp_path):
    p = tmp_path / "neg.json"
    p.write_text(json.dumps([{"image": "a.jpg", "phrase": "p", "ref_bbox": [0, 0, 1, 1],
                              "bbox_list": [[0, 0, 1, 1]]},
                             {"image": "a.jpg", "phrase": "p", "ref_bbox": [0, 0, 1],
                              "bbox_list": [[0, 0, 1, 1]]}]))
    with pytest.raises(NegationClipError, match=r"neg\.json: record 1: ref_bbox should be 4 numbers"):
        load_negref(p)
    p.write_text('[{"image": "a.jpg",\n "phrase": }]')
    with pytest.raises(NegationClipError, match=r"neg\.json:2:\d+: malformed JSON"):
        load_negref(p)


def _coco_fixture():
    images = [CocoImage(1, "a.png", 64, 48), CocoImage(7, "b.png", 32, 32)]
    caps = [CocoCaption(10, 1, "a red square"), CocoCaption(11, 7, "a blue circle"),
            CocoCaption(12, 1, "a square on the left")]
    anns = [CocoAnnotation(100, 1, 3, [1.0, 2.0, 10.0, 12.0], 120.0,
                           [[1.0, 2.0, 11.0, 2.0, 11.0, 14.0, 1.0, 14.0]], 0),
            CocoAnnotation(101, 7, 1, [5.0, 5.0, 4.0, 4.0], 16.0,
                           [[5.0, 5.0, 9.0, 5.0, 9.0, 9.0, 5.0, 9.0]], 0)]
    return images, caps, anns


def test_coco_round_trip_and_pycocotools(tmp_path):
    from pycocotools.coco import COCO

    images, caps, anns = _coco_fixture()
    cp, ip = tmp_path / "captions.json", tmp_path / "instances.json"
    write_coco_captions(cp, images, caps)
    write_coco_instances(ip, images, {1: "circle", 3: "square"}, anns)
    c = load_coco_captions(cp)
    assert c.images[7] == images[1] and c.captions == caps
    assert [x.caption for x in c.captions_by_image()[1]] == ["a red square", "a square on the left"]
    inst = load_coco_instances(ip)
    assert inst.categories == {1: "circle", 3: "square"}
    assert inst.annotations_by_image[1] == [anns[0]]
    assert inst.category_names_in_image(1) == {"square"} and inst.category_id("circle") == 1
    coco = COCO(str(ip))
    assert coco.getAnnIds(imgIds=[1]) == [100]
    assert coco.annToMask(coco.anns[100]).sum() > 0
    capcoco = COCO(str(cp))
    assert len(capcoco.getAnnIds(imgIds=[1])) == 2


def test_coco_structural_errors(tmp_path):
    p = tmp_path / "captions.json"
    p.write_text(json.dumps({"images": [{"id": 1, "file_name": "a", "width": 2, "height": 2}],
                             "annotations": [{"id": 1, "image_id": 1, "caption": "x"},
                                             {"id": 2, "image_id": 1}]}))
    with pytest.raises(NegationClipError, match=r"captions\.json: annotations\[1\]: missing key 'caption'"):
        load_coco_captions(p)
    p.write_text(json.dumps({"images": [], "annotations": [{"id": 1, "image_id": 5, "caption": "x"}]}))
    with pytest.raises(NegationClipError, match=r"annotations\[0\]: image_id 5 is not in 'images'"):
        load_coco_captions(p)
    p.write_text(json.dumps({"annotations": []}))
    with pytest.raises(NegationClipError, match=r"missing top-level key 'images'"):
        load_coco_captions(p)
    p.write_text(json.dumps({"images": [{"id": "1", "file_name": "a", "width": 2, "height": 2}],
                             "annotations": []}))
    with pytest.raises(NegationClipError, match=r"images\[0\]: 'id' should be int, got str"):
        load_coco_captions(p)
    ip = tmp_path / "instances.json"
    ip.write_text(json.dumps({"images": [{"id": 1, "file_name": "a", "width": 2, "height": 2}],
                              "categories": [{"id": 1, "name": "cat"}],
                              "annotations": [{"id": 1, "image_id": 1, "category_id": 9,
                                               "bbox": [0, 0, 1, 1]}]}))
    with pytest.raises(NegationClipError, match=r"category_id 9 is not in 'categories'"):
        load_coco_instances(ip)
    raw = json.loads(ip.read_text())
    raw["annotations"][0].update(category_id=1, area="big")
    ip.write_text(json.dumps(raw))
    with pytest.raises(NegationClipError, match=r"annotations\[0\]: 'area' should be int or float, got str"):
        load_coco_instances(ip)


def test_karpathy_round_trip(tmp_path):
    items = [KarpathyImage(42, "COCO_val2014_000000000042.jpg", "val2014", "test", ["A dog.", "A cat."]),
             KarpathyImage(7, "COCO_train2014_000000000007.jpg", "train2014", "restval", ["Two cups."])]
    p = tmp_path / "dataset_coco.json"
    write_karpathy(p, items)
    assert load_karpathy(p) == items
    raw = json.loads(p.read_text())
    assert raw["images"][1]["sentences"][0]["sentid"] == 2
    p.write_text(json.dumps({"images": [{"filename": "x", "split": "train", "sentences": [{}], "cocoid": 1}]}))
    with pytest.raises(NegationClipError, match=r"images\[0\]\.sentences\[0\]: missing key 'raw'"):
        load_karpathy(p)


def test_vqa_round_trip_majority_and_errors(tmp_path):
    items = [VqaItem(1, 5, "Is there a star?", ["no"] * 7 + ["yes"] * 3, "no", "yes/no", "is there a"),
             VqaItem(2, 5, "What color is the square?", ["red", "red", "blue", "blue"], "blue",
                     "other", "what color is the")]
    q, a = tmp_path / "q.json", tmp_path / "a.json"
    write_vqa(q, a, items)
    got = load_vqa(q, a)
    assert got == items
    assert got[0].majority_answer == "no"
    assert got[1].majority_answer == "blue"  # tie broken by multiple_choice_answer
    raw = json.loads(a.read_text())
    raw["annotations"] = raw["annotations"][:1]
    a.write_text(json.dumps(raw))
    with pytest.raises(NegationClipError, match=r"q\.json: questions\[1\]: question_id 2 has no annotation"):
        load_vqa(q, a)
