"""NegWorld's scene-graph training records (``world records``): every record is true of its scene
graph, the twin differs from the positive exactly by the negated property, the phrasings use
training cues only, and the records train (crop keys, negative texts) through the normal loop."""

import numpy as np
import pytest

from negationclip.cli import main
from negationclip.data.negworld import COLORS, WorldConfig, build_world, load_scenes, negref_box
from negationclip.data.negworld.phrasing import TRAIN_NEGATION_CUES, contains_negation, uses_heldout_cue
from negationclip.data.negworld.scene_records import PART_PROPERTIES, write_scene_records
from negationclip.models.crops import KeyLoader, parse_crop_key
from negationclip.utils import read_jsonl

CFG = WorldConfig(images=120, seed=5)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("sr") / "world"
    build_world(root, CFG, show_progress=False)
    out = root.parent / "sg.jsonl"
    counts = write_scene_records(root, out, seed=1, show_progress=False,
                                 part_properties=PART_PROPERTIES)  # every kind, to check each
    return root, load_scenes(root / "scenes.json"), read_jsonl(out), counts


def _object_at(scene, box):
    """The object whose NegRef box is ``box`` (independently recomputed)."""
    hits = [o for o in scene.objects if np.allclose(negref_box(o, CFG, scene.width), box, atol=0.011)]
    assert len(hits) == 1, (scene.id, box)
    return hits[0]


def test_counts_and_train_scenes_only(world):
    root, scenes, recs, counts = world
    assert counts["parts"] == sum(r["kind"] == "part-negation" for r in recs) > 0
    assert counts["existence"] == sum(r["kind"] in ("absence", "presence-negation") for r in recs) > 0
    train = {s.id for s in scenes.values() if s.split == "train" and s.role == "scene"}
    assert {r["image_id"] for r in recs} <= train  # test scenes are never read


def test_part_records_negate_a_property_the_object_lacks_and_the_twin_has(world):
    root, scenes, recs, _ = world
    load = KeyLoader()
    kinds = set()
    for r in [r for r in recs if r["kind"] == "part-negation"]:
        path, box = parse_crop_key(r["image_file"])
        scene = scenes[path]
        o = _object_at(scene, box)
        kind, value = r["negated_property"].split(":")
        kinds.add(kind)
        if kind == "part":
            assert value not in o.parts
        else:
            assert getattr(o, kind) != value
        assert value.split()[-1] in r["negated"] and contains_negation(r["negated"])
        assert o.category in r["negated"] and o.category in r["original"]
        pos = np.asarray(load(str(root / "images" / r["image_file"])), dtype=int)
        neg = np.asarray(load(str((root / "images" / r["negative_image"]).resolve())), dtype=int)
        if kind != "size":  # same box: same pixels except where the property shows
            assert pos.shape == neg.shape and (pos != neg).any()
        if kind == "color":  # the twin shows the negated colour, the positive does not
            rgb = np.array(COLORS[value])
            assert (np.abs(neg - rgb).sum(-1) < 30).sum() > (np.abs(pos - rgb).sum(-1) < 30).sum()
        if kind == "part" and value == "dot":  # a dark dot appears
            assert (neg.sum(-1) < 120).sum() > (pos.sum(-1) < 120).sum()
    assert kinds == {"part", "color", "size"}


def test_existence_records_are_true_of_the_scene(world):
    root, scenes, recs, _ = world
    by_id = {s.id: s for s in scenes.values() if s.role == "scene"}
    absent = [r for r in recs if r["kind"] == "absence"]
    present = [r for r in recs if r["kind"] == "presence-negation"]
    assert absent and present
    for r in absent:
        s = by_id[r["image_id"]]
        assert r["object"] not in s.categories() and contains_negation(r["negated"])
        assert not contains_negation(r["affirmed"]) and r["negative_texts"] == [r["affirmed"]]
        assert (root / "images" / r["negative_image"]).resolve().is_file()
    for r in present:
        s = by_id[r["image_id"]]
        shown = [c for c in s.categories() if c in r["negated"] or c + "s" in r["negated"]]
        assert shown and not contains_negation(r["negated"])
        assert all(contains_negation(t) for t in r["negative_texts"])
        assert set(r["present_objects"]) == s.categories()


def test_phrasings_use_training_cues_only(world):
    _, _, recs, _ = world
    for r in recs:
        for t in [r.get("negated"), r.get("affirmed"), *r.get("negative_texts", [])]:
            assert t is None or not uses_heldout_cue(t)
    assert "not" in TRAIN_NEGATION_CUES


def test_cli_writes_records_and_refuses_unknown_kinds(world, tmp_path, capsys):
    root = world[0]
    assert main(["world", "records", "--world", str(root), "--out", str(tmp_path / "e.jsonl"),
                 "--kinds", "existence", "--limit", "10"]) == 0
    recs = read_jsonl(tmp_path / "e.jsonl")
    assert recs and {r["kind"] for r in recs} <= {"absence", "presence-negation"}
    assert len({r["image_id"] for r in recs}) <= 10
    capsys.readouterr()
    assert main(["world", "records", "--world", str(root), "--out", str(tmp_path / "x.jsonl"),
                 "--kinds", "colours"]) == 2
    assert "unknown kind" in capsys.readouterr().err


def test_kinds_split_and_presence_fraction_keeps_the_other_records(world, tmp_path, capsys):
    from negationclip.data.negworld.scene_records import parse_kinds
    from negationclip.utils import NegationClipError

    assert parse_kinds("parts, existence") == ("parts", "absence", "presence")
    assert parse_kinds("absence,existence") == ("absence", "presence")
    with pytest.raises(NegationClipError, match="unknown kind 'colour'"):
        parse_kinds("parts,colour")
    root, _, recs, _ = world  # seed 1, every kind, every presence record
    assert main(["world", "records", "--world", str(root), "--out", str(tmp_path / "h.jsonl"),
                 "--seed", "1", "--presence-fraction", "0.5",
                 "--part-properties", "color,size,part"]) == 0
    half = read_jsonl(tmp_path / "h.jsonl")
    key = lambda r: r["id"]
    pres = [r for r in recs if r["kind"] == "presence-negation"]
    pres_half = [r for r in half if r["kind"] == "presence-negation"]
    assert 0.25 * len(pres) < len(pres_half) < 0.75 * len(pres)
    assert all(r in pres for r in pres_half)  # a subset, record for record
    assert sorted((r for r in half if r["kind"] != "presence-negation"), key=key) == \
        sorted((r for r in recs if r["kind"] != "presence-negation"), key=key)
    assert main(["world", "records", "--world", str(root), "--out", str(tmp_path / "a.jsonl"),
                 "--kinds", "absence", "--limit", "10"]) == 0
    assert {r["kind"] for r in read_jsonl(tmp_path / "a.jsonl")} == {"absence"}
    capsys.readouterr()


@pytest.mark.timeout(120)
def test_records_train_through_the_loop(world, tmp_path):
    """Crop keys load as crops (the cache and the loader agree), negative texts reach the
    loss as hard negatives even with hard_negatives none."""
    from negationclip.models import tiny_clip_bundle
    from negationclip.train import TrainConfig, finetune
    from negationclip.train.data import build_examples, read_records

    root = world[0]
    path = tmp_path / "sg.jsonl"
    write_scene_records(root, path, seed=2, limit=30, show_progress=False)
    rows, _ = build_examples(read_records(path).records, image_root=root / "images")
    pres = [e for e in rows if e.hard_texts]
    # presence rows: a true statement against its negation; absence rows: the reverse
    assert pres and all(contains_negation(e.text) != contains_negation(e.hard_texts[0]) for e in pres)
    assert any(not contains_negation(e.text) for e in pres) and any(contains_negation(e.text) for e in pres)
    res = finetune(tiny_clip_bundle(seed=0, image_size=64), path,
                   TrainConfig(max_steps=3, epochs=10, batch_size=16, lr=1e-3, val_fraction=0.0,
                               hard_negative_margin=0.2, cache_dir=str(tmp_path / "cache")),
                   tmp_path / "run", image_root=root / "images", verbose=False)
    assert res.n_train == len(rows) and not res.skipped


def test_default_part_records_leave_size_out_and_the_rest_unchanged(world, tmp_path):
    """Size twins look the same once the crop (which grows with the object) is resized: the
    default skips them, counts the skips, and writes every other record as before."""
    from negationclip.utils import NegationClipError

    root, _, every, counts = world
    out = tmp_path / "default.jsonl"
    got = write_scene_records(root, out, seed=1, show_progress=False)
    sizes = [r for r in every if r.get("negated_property", "").startswith("size:")]
    assert sizes and got["parts_skipped"] == len(sizes) == counts["parts"] - got["parts"]
    assert counts["parts_skipped"] == 0
    assert read_jsonl(out) == [r for r in every if r not in sizes]
    with pytest.raises(NegationClipError, match="part properties"):
        write_scene_records(root, tmp_path / "bad.jsonl", part_properties=("shape",))
