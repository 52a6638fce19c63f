"""NegWorld: exports load with the real-format loaders (and pycocotools), every benchmark record
is true of the scene graph, builds are deterministic, captions never negate."""

import hashlib
import json
import re

import numpy as np
import pytest
from PIL import Image

from negationclip.cli import main as cli_main
from negationclip.data import load_coco_captions, load_coco_instances, load_negref, load_valse, load_vqa
from negationclip.data.negworld import (
    CATEGORIES, COLORS, HELDOUT_CUES, HELDOUT_PAIR_TEMPLATES, TRAIN_NEGATION_CUES,
    TRAIN_PAIR_TEMPLATES, WorldConfig, WorldExport, build_world, contains_negation,
    load_negation_pairs, load_scenes, negref_box, render, sample_scene, uses_heldout_cue)
from negationclip.data.negworld.export import SPLITS, _make_pairs, assign_splits
from negationclip.data.negworld.render import bbox, encode_png
from negationclip.data.negworld.vocab import plural
from negationclip.utils import NegationClipError

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:pycocotools")

CFG = WorldConfig(images=160, seed=3)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("nw") / "world"
    build_world(root, CFG, show_progress=False)
    ex = WorldExport.open(root)
    return ex, load_scenes(ex.scenes)


def _digest(root):
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(root)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def test_deterministic_from_seed(tmp_path):
    cfg = WorldConfig(images=25, seed=11)
    build_world(tmp_path / "a", cfg, show_progress=False)
    build_world(tmp_path / "b", cfg, show_progress=False)
    build_world(tmp_path / "c", WorldConfig(images=25, seed=12), show_progress=False)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    assert _digest(tmp_path / "a") != _digest(tmp_path / "c")


def test_manifest_lists_existing_files(world):
    ex, scenes = world
    man = ex.manifest
    assert man["seed"] == 3 and man["config"]["images"] == 160
    for key, val in man["files"].items():
        for rel in (val.values() if isinstance(val, dict) else [val]):
            assert (ex.root / rel).exists(), (key, rel)
    assert man["counts"]["images"] == 160
    assert len(list(ex.images_dir.glob("*.png"))) == 160 + man["counts"]["foil_images"]


def test_coco_exports_load_with_pycocotools_and_match_pixels(world):
    from pycocotools.coco import COCO

    ex, scenes = world
    seen = set()
    for split in SPLITS:
        caps = load_coco_captions(ex.captions(split))
        inst = load_coco_instances(ex.instances(split))
        ids = set(caps.images)
        assert ids == set(inst.images) and not ids & seen  # splits by image, disjoint
        seen |= ids
        assert all(scenes[im.file_name].split == split for im in caps.images.values())
        assert all(len(v) == 5 for v in caps.captions_by_image().values())
        assert sorted(inst.categories.values()) == sorted(CATEGORIES)
        for iid, anns in inst.annotations_by_image.items():
            sc = scenes[inst.images[iid].file_name]
            assert sorted(inst.categories[a.category_id] for a in anns) == \
                sorted(o.category for o in sc.objects)
    assert len(seen) == 160
    coco = COCO(str(ex.instances("test")))
    checked = 0
    for img_id in coco.getImgIds()[:15]:
        info = coco.loadImgs(img_id)[0]
        pixels = np.asarray(Image.open(ex.images_dir / info["file_name"]))
        sc = scenes[info["file_name"]]
        for ann in coco.loadAnns(coco.getAnnIds(imgIds=[img_id])):
            mask = coco.annToMask(ann).astype(bool)
            assert abs(mask.sum() - ann["area"]) <= 0.25 * ann["area"] + 8
            obj = next(o for o in sc.objects if ann["bbox"] == bbox(o))
            inside = pixels[mask].astype(int)
            fill = np.abs(inside - np.array(COLORS[obj.color])).sum(1) < 60
            ink = np.abs(inside - 28).sum(1) < 60  # dot and border
            # the mask covers the object: its colour, plus its dark parts and anti-aliased edges
            assert fill.mean() > 0.1 and (fill | ink).mean() > 0.6, (fill.mean(), ink.mean())
            checked += 1
    assert checked > 10


def test_captions_never_negate_and_name_only_present_shapes(world):
    ex, scenes = world
    words = {c: re.compile(rf"\b({c}|{plural(c)})\b") for c in CATEGORIES}
    for split in SPLITS:
        caps = load_coco_captions(ex.captions(split))
        for c in caps.captions:
            assert not contains_negation(c.caption), c.caption
            sc = scenes[caps.images[c.image_id].file_name]
            named = {cat for cat, rx in words.items() if rx.search(c.caption.lower())}
            assert named <= sc.categories(), (c.caption, sc.categories())
            if m := re.match(r"(\w+) colorful shapes? on a light background", c.caption.lower()):
                assert ["one", "two", "three", "four"].index(m.group(1)) + 1 == len(sc.objects)
            else:
                assert named, c.caption
            m = re.search(r"\b(two|three|four) (?:\w+ )?(\w+)s on a plain", c.caption.lower())
            if m:
                cat = m.group(2) if m.group(2) in CATEGORIES else m.group(2).rstrip("e")
                assert sc.count(cat) == ["two", "three", "four"].index(m.group(1)) + 2


def test_negation_word_detector():
    assert contains_negation("a cat with no hat") and contains_negation("It isn't red")
    assert contains_negation("a square lacking a dot") and contains_negation("free of stars")
    assert not contains_negation("a red square next to a knotted rope")  # "not" inside a word
    assert uses_heldout_cue("a cat but not a dog") and not uses_heldout_cue("a cat, not red")
    assert all(contains_negation(f"a square {c} a dot") for c in HELDOUT_CUES + TRAIN_NEGATION_CUES)
    assert not set(TRAIN_NEGATION_CUES) & set(HELDOUT_CUES)


def _answer(q, sc):
    """Ground-truth answer of a NegWorld VQA question, from the scene graph."""
    q = q.rstrip("?")
    if m := re.fullmatch(r"Is there an? (?:(\w+) )?(\w+)(?: in the picture)?", q):
        col, cat = m.groups()
        ok = any(o.category == cat and (col is None or o.color == col) for o in sc.objects)
        return "yes" if ok else "no"
    if m := re.fullmatch(r"What color is the (\w+)", q):
        return next(o.color for o in sc.objects if o.category == m.group(1))
    if m := re.fullmatch(r"How many (\w+) are there", q):
        return str(sum(plural(o.category) == m.group(1) for o in sc.objects))
    if m := re.fullmatch(r"Does the (\w+) have (a dot|a black border)", q):
        o = next(o for o in sc.objects if o.category == m.group(1))
        return "yes" if o.has("dot" if m.group(2) == "a dot" else "border") else "no"
    m = re.fullmatch(r"Is the (\w+) (\w+)", q)
    assert m, q
    o = next(o for o in sc.objects if o.category == m.group(1))
    return "yes" if m.group(2) in (o.color, o.size) else "no"


def test_vqa_answers_match_scene_graph_and_about_half_no(world):
    ex, scenes = world
    yes = no = 0
    for split in SPLITS:
        caps = load_coco_captions(ex.captions(split))
        for it in load_vqa(*ex.vqa(split)):
            sc = scenes[caps.images[it.image_id].file_name]
            if m := re.search(r"\bthe (?!picture)(\w+)", it.question):
                assert sc.count(m.group(1)) == 1, it.question  # "the X" is never ambiguous
            assert it.majority_answer == _answer(it.question, sc), (it.question, sc.objects)
            if it.answer_type == "yes/no":
                yes += it.majority_answer == "yes"
                no += it.majority_answer == "no"
    assert 0.35 < no / (yes + no) < 0.65


_PART_RE = re.compile(r"(?:the|an?) (\w+) (?:without a (dot|black border)|with no (dot|border)|"
                      r"that has no (dot|border)|that does not have a (dot|black border))")
_ATTR_RE = re.compile(r"(?:the|an?) (\w+) (?:that|which) is not (\w+)")


def test_negref_records_true_of_scene_graph(world):
    ex, scenes = world
    items = load_negref(ex.negref)
    assert len(items) >= 10
    for it in items:
        sc = scenes[it.image]
        assert sc.split == "test" and sc.role == "scene"
        boxes = {tuple(negref_box(o, CFG, sc.width)): o for o in sc.objects}
        pos = boxes[tuple(it.ref_bbox)]
        negs = [boxes[tuple(b)] for b in it.bbox_list if b != it.ref_bbox]
        assert it.ref_index == 0 and negs
        if m := _PART_RE.fullmatch(it.phrase):
            cat = m.group(1)
            part = "border" if "border" in it.phrase else "dot"
            holds = lambda o: o.has(part)  # noqa: E731
        else:
            m = _ATTR_RE.fullmatch(it.phrase)
            assert m, it.phrase
            cat, value = m.groups()
            holds = lambda o: value in (o.color, o.size)  # noqa: E731
        assert pos.category == cat and all(o.category == cat for o in negs)
        assert not holds(pos) and all(holds(o) for o in negs), it.phrase
        # the phrase picks out exactly one object of the image
        assert [o for o in sc.objects if o.category == cat and not holds(o)] == [pos]


def test_valse_existence_true_of_scene_graph(world):
    ex, scenes = world
    items = load_valse(ex.valse_existence)
    assert len(items) == ex.manifest["counts"]["split_images"]["test"]
    provs = set()
    for it in items:
        sc = scenes[it.image_file]
        assert sc.split == "test" and it.piece == "valse_existence"
        cat = it.raw["negworld_object"]
        provs.add(it.raw["provenance_of_foils"])
        if " no " in f" {it.caption} ":
            assert cat not in sc.categories() and it.raw["answer"] == 0
            assert " no " in f" {it.caption} " and " no " not in f" {it.foil} "
        else:
            assert sc.count(cat) == it.raw["answer"] > 0 and " no " in f" {it.foil} "
        assert cat in it.caption or plural(cat) in it.caption
    assert provs == {"zero_to_something", "something_to_zero"}


def test_negation_pairs_true_of_scene_graph_and_balanced(world):
    ex, scenes = world
    pairs = load_negation_pairs(ex.negation_pairs)
    assert len(pairs) >= 20 and len({p.id for p in pairs}) == len(pairs)
    assert any(p.heldout_phrasing for p in pairs) and not all(p.heldout_phrasing for p in pairs)
    for p in pairs:
        assert (ex.root / p.image).is_file() and (ex.root / p.foil_image).is_file()
        true, foil = scenes[p.image.split("/")[-1]], scenes[p.foil_image.split("/")[-1]]
        assert true.split == foil.split == p.split == "test" and foil.source == true.id
        assert p.negated_object not in true.categories()
        assert p.negated_object in foil.categories()
        assert len(true.objects) == len(foil.objects)  # counts give no hint
        diff = [(a, b) for a, b in zip(true.objects, foil.objects) if a != b]
        assert len(diff) == 1 and diff[0][1].category == p.negated_object
        a, b = diff[0]
        assert (a.cx, a.cy, a.r, a.color, a.size, a.parts) == (b.cx, b.cy, b.r, b.color, b.size, b.parts)
        assert p.heldout_phrasing == uses_heldout_cue(p.text)
        assert p.template in (HELDOUT_PAIR_TEMPLATES if p.heldout_phrasing else TRAIN_PAIR_TEMPLATES)
        assert contains_negation(p.text)
        # everything the text names besides the negated object is in both images
        named = {c for c in CATEGORIES if re.search(rf"\b({c}|{plural(c)})\b", p.text.lower())}
        assert named - {p.negated_object} <= true.categories() & foil.categories()
    # the foils are only in the pair test: not in any COCO split
    coco_files = {im.file_name for s in SPLITS for im in load_coco_captions(ex.captions(s)).images.values()}
    assert not coco_files & {p.foil_image.split("/")[-1] for p in pairs}


def test_training_templates_never_use_heldout_cues():
    for t in TRAIN_PAIR_TEMPLATES:
        assert not uses_heldout_cue(t)
    for t in HELDOUT_PAIR_TEMPLATES:
        assert uses_heldout_cue(t)


def test_test_split_gives_at_least_300_pairs_at_2000_images():
    cfg = WorldConfig(images=2000, seed=0)
    splits = assign_splits(cfg, list(range(1, 2001)))
    n = 0
    for i, s in splits.items():
        if s == "test":
            n += len(_make_pairs(sample_scene(cfg, i, i), cfg, 10_000 + n))
    assert n >= 300


def test_render_and_png_encoder():
    sc = sample_scene(WorldConfig(size=48), 5, 5)
    img = render(sc)
    assert img.size == (48, 48) and img.mode == "RGB"
    import io
    back = Image.open(io.BytesIO(encode_png(img)))
    assert np.array_equal(np.asarray(back.convert("RGB")), np.asarray(img))
    assert len(np.unique(np.asarray(img).reshape(-1, 3), axis=0)) > 2  # something was drawn


def test_loaders_reject_bad_files(tmp_path, world):
    p = tmp_path / "pairs.json"
    p.write_text(json.dumps([{"id": "x", "text": "t", "image": "a", "foil_image": "b",
                              "negated_object": "star", "heldout_phrasing": "yes",
                              "template": "t", "split": "test"}]))
    with pytest.raises(NegationClipError, match=r"pairs\.json: record 0: 'heldout_phrasing' should be bool"):
        load_negation_pairs(p)
    with pytest.raises(NegationClipError, match="not a NegWorld manifest"):
        (tmp_path / "manifest.json").write_text("{}")
        WorldExport.open(tmp_path)


def test_cli_world_build(tmp_path, capsys):
    out = tmp_path / "w"
    assert cli_main(["world", "build", "--out", str(out), "--images", "12", "--seed", "2"]) == 0
    assert WorldExport.open(out).manifest["counts"]["images"] == 12
    assert cli_main(["world", "build", "--out", str(out), "--images", "12"]) == 2
    assert "already there" in capsys.readouterr().err
    other = tmp_path / "other"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    assert cli_main(["world", "build", "--out", str(other), "--images", "3"]) == 2
    assert (other / "keep.txt").read_text() == "mine"
    for bad in (["--images", "0"], ["--pairs-per-scene", "-1"], ["--heldout-fraction", "1.5"],
                ["--test-fraction", "0.7", "--val-fraction", "0.4"]):
        assert cli_main(["world", "build", "--out", str(out), "--overwrite", *bad]) == 2
        assert capsys.readouterr().err.startswith("error: ")
    assert cli_main(["world", "build", "--out", str(out), "--images", "8", "--overwrite"]) == 0
