import json

import pytest
import torch

from negationclip.models import ClipTokenizer
from negationclip.train.data import (TokenTable, build_examples, epoch_batches, read_records,
                                     shard, split_examples)
from negationclip.utils import NegationClipError


def test_reads_generation_jsonl(dataset):
    root, recs = dataset
    rep = read_records(root / "p1.jsonl")
    assert len(rep.records) == len(recs)
    r = rep.records[3]
    assert (r.image, r.negated, r.original, r.affirmed) == (
        recs[3]["image"], recs[3]["negated"], recs[3]["original"], recs[3]["affirmed"])
    assert r.where.endswith("p1.jsonl:4")


def test_reads_released_coco_layout_and_plain_coco(tmp_path):
    coco = {"images": [{"id": 7, "file_name": "COCO_train2014_000000000007.jpg"}],
            "annotations": [{"id": 1, "image_id": 7, "caption": "a dog on a sofa",
                             "updated_caption": "a dog on a sofa with no cushion"},
                            {"id": 2, "image_id": 7, "caption": "a brown dog"}]}
    p = tmp_path / "negationclip_captions_train2014.json"
    p.write_text(json.dumps(coco))
    recs = read_records(p).records
    assert [(r.image, r.negated, r.original) for r in recs] == [
        ("COCO_train2014_000000000007.jpg", "a dog on a sofa with no cushion", "a dog on a sofa"),
        ("COCO_train2014_000000000007.jpg", None, "a brown dog")]
    ex, _ = build_examples(recs, image_root=tmp_path, mix="negated")
    assert [e.text for e in ex] == ["a dog on a sofa with no cushion"]
    ex, _ = build_examples(recs, image_root=tmp_path, mix="original")
    assert [e.text for e in ex] == ["a dog on a sofa", "a brown dog"]
    # plain COCO captions: no negated text -> a clear hint instead of an empty run
    plain = read_records(p).records[1:]
    with pytest.raises(NegationClipError, match="mix 'original'"):
        build_examples(plain, image_root=tmp_path, mix="negated")


def test_bad_records_name_file_and_line(tmp_path):
    p = tmp_path / "bad.jsonl"
    p.write_text(json.dumps({"image": "a.png", "negated": "x with no y"}) + "\n"
                 + json.dumps({"negated": "no image field"}) + "\n")
    with pytest.raises(NegationClipError, match=r"bad.jsonl:2: record has no 'image'"):
        read_records(p)
    p.write_text(json.dumps({"image_file": "a.png", "negated": "x with no y"}) + "\n"
                 + json.dumps({"image_file": None, "negated": "P2 record without a file"}) + "\n")
    rep = read_records(p)
    assert [r.image for r in rep.records] == ["a.png"]
    assert rep.skipped["without an image file name"] == 1
    q = tmp_path / "coco.json"
    q.write_text(json.dumps({"images": [], "annotations": [{"image_id": 3, "caption": "c"}]}))
    with pytest.raises(NegationClipError, match=r"annotations\[0\].*image_id 3"):
        read_records(q)
    r = tmp_path / "skip.jsonl"
    r.write_text(json.dumps({"image": "a.png", "negated": ""}) + "\n")
    assert read_records(r).skipped["without caption text"] == 1


def test_mix_and_hard_negatives(dataset):
    root, recs = dataset
    recs = read_records(root / "p1.jsonl").records
    n = len(recs)
    neg, _ = build_examples(recs, image_root=root / "images", mix="negated")
    assert len(neg) == n and all(e.kind == "negated" and not e.hard_texts for e in neg)
    both, _ = build_examples(recs, image_root=root / "images", mix="both")
    assert len(both) == 2 * n and sum(e.kind == "original" for e in both) == n
    ratio, _ = build_examples(recs, image_root=root / "images", mix="ratio", original_ratio=0.5)
    assert len(ratio) == n + n // 2
    hard, _ = build_examples(recs, image_root=root / "images", hard_negatives="both")
    assert hard[0].hard_texts == (recs[0].original, recs[0].affirmed)
    aff, _ = build_examples(recs, image_root=root / "images", hard_negatives="affirmed")
    assert aff[5].hard_texts == (recs[5].affirmed,)
    assert neg[0].image == str((root / "images" / recs[0].image).resolve())


def test_split_by_image_keeps_images_apart(dataset):
    root, _ = dataset
    recs = read_records(root / "p1.jsonl").records
    ex, _ = build_examples(recs, image_root=root / "images", mix="both")
    train, val = split_examples(ex, 0.25, by="image", seed=1)
    assert len(train) + len(val) == len(ex) and val
    assert not {e.image for e in train} & {e.image for e in val}
    assert split_examples(ex, 0.25, by="image", seed=1) == (train, val)  # seeded


def test_token_table_equals_tokenizer():
    tok = ClipTokenizer()
    texts = ["a dog with no hat", "A &amp; B   café", "x " * 120, "a street"]
    table = TokenTable(tok, texts)
    ids, mask = table.batch(texts)
    ref = tok(texts)
    assert torch.equal(ids, ref.input_ids) and torch.equal(mask, ref.attention_mask)
    ids77, mask77 = table.batch(texts, pad_to=77)
    ref77 = tok(texts, padding="max_length")
    assert torch.equal(ids77, ref77.input_ids) and torch.equal(mask77, ref77.attention_mask)


def test_epoch_batches_deterministic_and_sharded():
    a = epoch_batches(10, 4, epoch=2, seed=3)
    assert a == epoch_batches(10, 4, epoch=2, seed=3)
    assert a != epoch_batches(10, 4, epoch=3, seed=3)
    assert sorted(i for b in a for i in b) == list(range(10))
    assert [len(b) for b in epoch_batches(9, 4, epoch=0, seed=0, min_size=2)] == [4, 4]
    b = [5, 1, 7, 2, 9]
    assert shard(b, 0, 2) + shard(b, 1, 2) == b
    groups = [0, 0, 0, 1, 1, 1, 2, 2, 2]
    for batch in epoch_batches(9, 3, epoch=0, seed=0, groups=groups):
        assert len({groups[i] for i in batch}) == 3


def test_mined_negative_images_show_the_negated_object(tmp_path):
    from negationclip.train.data import CaptionRecord, mine_negative_images, originals_by_image

    recs = [CaptionRecord("a.png", "a street with no cars", "a street", object="car"),
            CaptionRecord("b.png", None, "two cars parked on a street"),
            CaptionRecord("c.png", None, "a dog in a park"),
            CaptionRecord("d.png", "a park with no dogs", "a park", object="dog"),
            CaptionRecord("e.png", "a sky with no bird", "a blue sky", object="bird")]
    ex, _ = build_examples(recs, image_root=tmp_path, mix="both")
    mined, n = mine_negative_images(ex, originals_by_image(recs, tmp_path), seed=0)
    key = lambda f: str((tmp_path / f).resolve())
    by_text = {e.text: e.hard_image for e in mined}
    assert by_text["a street with no cars"] == key("b.png")   # plural matched
    assert by_text["a park with no dogs"] == key("c.png")
    assert by_text["a sky with no bird"] is None              # no image shows a bird
    assert by_text["a street"] is None and n == 2             # originals get none
    # only images among the rows are candidates (the validation side is never used)
    train = [e for e in ex if e.image != key("b.png")]
    mined, n = mine_negative_images(train, originals_by_image(recs, tmp_path), seed=0)
    assert {e.text: e.hard_image for e in mined}["a street with no cars"] is None


def test_mining_prefers_the_most_similar_scene(tmp_path):
    from negationclip.train.data import CaptionRecord, mine_negative_images, originals_by_image

    recs = [CaptionRecord("a.png", "a red bus on a wet street with no cars", "a red bus on a wet street",
                          object="car"),
            CaptionRecord("b.png", None, "cars in a green field"),
            CaptionRecord("c.png", None, "a red bus and two cars on a wet street"),
            CaptionRecord("d.png", None, "a car next to a tree")]
    ex, _ = build_examples(recs, image_root=tmp_path, mix="both")
    mined, _ = mine_negative_images(ex, originals_by_image(recs, tmp_path), seed=0, top=1)
    assert mined[0].hard_image == str((tmp_path / "c.png").resolve())


def test_record_negative_image_becomes_the_rows_hard_image(tmp_path):
    from negationclip.train.data import coerce_records

    recs = coerce_records([{"image": "a.png", "negated": "a cat with no hat", "original": "a cat",
                            "object": "hat", "negative_image": "a_with_hat.png"}])
    ex, _ = build_examples(recs, image_root=tmp_path, mix="both")
    assert ex[0].hard_image == str((tmp_path / "a_with_hat.png").resolve())
    assert ex[1].kind == "original" and ex[1].hard_image is None
