"""NegWorld's exports in the field's released benchmark formats (NegBench MCQ and retrieval
CSVs, CC-Neg, SugarCREPE): every record is checked against the scene graph (right texts true,
wrong texts false) by a reading of the texts written here, independently of the package; the
files are parsed the way the released code reads them (NegBench: ``pd.read_csv`` and a list
literal in ``captions``, mirrored with csv + ast.literal_eval; CoN-CLIP: ``torch.load`` of
``image_paths`` + ``annotations``, commas dropped from the negative prompt; CLIP_benchmark's
``SugarCrepe``: ``json.load`` and ``os.path.join(root, filename)``); builds are deterministic."""

import ast
import csv
import hashlib
import json
import os
import re

import pytest

from negationclip.cli import main as cli_main
from negationclip.data import load_coco_captions
from negationclip.data.negworld import WorldConfig, WorldExport, build_world, load_scenes
from negationclip.data.negworld.vocab import CATEGORIES, COLORS
from negationclip.utils import NegationClipError

CFG = WorldConfig(images=300, seed=5, ccneg_pt=True)
SUBSETS = ("add_att", "add_obj", "replace_att", "replace_obj", "replace_rel", "swap_att", "swap_obj")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("nwf") / "world"
    build_world(root, CFG, show_progress=False)
    ex = WorldExport.open(root)
    scenes = load_scenes(ex.scenes)
    caps = load_coco_captions(ex.captions("test"))
    by_image = {caps.images[i].file_name: [c.caption for c in cs]
                for i, cs in caps.captions_by_image().items()}
    return ex, scenes, by_image


def _scene_of(ex, scenes, path):
    """NegBench / CC-Neg paths are relative to the export root and name a test scene."""
    assert (ex.root / path).is_file(), path
    sc = scenes[os.path.basename(path)]
    assert sc.split == "test" and sc.role == "scene" and path == f"images/{sc.file_name}"
    return sc


# --- an independent reading of the texts --------------------------------------------------

_CAT = "|".join(sorted(CATEGORIES, key=len, reverse=True))
_COL = "|".join(COLORS)
_NP = rf"an? (?:(small|large) )?(?:({_COL}) )?({_CAT})(?: with (a dot|a black border))?"
_NP_RE = re.compile(_NP)


def _fits(o, size, color, cat, part):
    return (o.category == cat and size in (None, o.size) and color in (None, o.color)
            and (part is None or o.has({"a dot": "dot", "a black border": "border"}[part])))


def _matches(sc, np_text):
    m = _NP_RE.fullmatch(np_text)
    assert m, np_text
    return [o for o in sc.objects if _fits(o, *m.groups())]


def _rel(rel, a, b, strict):
    """a REL b. strict: the dominant axis decides (what positives must satisfy); lenient:
    the direction alone (what negatives must fail)."""
    dx, dy = b.cx - a.cx, b.cy - a.cy
    horiz = abs(dx) >= abs(dy)
    ok = {"to the left of": dx > 0, "to the right of": dx < 0, "above": dy > 0, "below": dy < 0}[rel]
    if strict:
        ok = ok and (horiz if rel in ("to the left of", "to the right of") else not horiz)
    return ok


def _strip_frame(text):
    t = text[0].lower() + text[1:]
    assert t.endswith("."), text
    t = t[:-1]
    for pre in ("a picture of ", "a drawing of "):
        if t.startswith(pre):
            return t[len(pre):]
    if t.startswith("there is ") and t.endswith(" in the image"):
        return t[len("there is "):-len(" in the image")]
    return t


def _statement(sc, text, strict):
    """Truth of a SugarCREPE / CC-Neg caption: one NP, two NPs joined by 'and' (distinct
    objects), or NP REL NP."""
    t = _strip_frame(text)
    if m := re.fullmatch(rf"({_NP}) (to the left of|to the right of|above|below) ({_NP})", t):
        xs, ys = _matches(sc, m.group(1)), _matches(sc, m.group(7))
        return any(x is not y and _rel(m.group(6), x, y, strict) for x in xs for y in ys)
    if m := re.fullmatch(rf"({_NP}) and ({_NP})", t):
        xs, ys = _matches(sc, m.group(1)), _matches(sc, m.group(6))
        return any(x is not y for x in xs for y in ys)
    return bool(_matches(sc, t))


def _plural_to_cat(word):
    cat = word[:-2] if word.endswith("es") and word[:-2] in CATEGORIES else word[:-1]
    assert cat in CATEGORIES, word
    return cat


def _ccneg_negative(sc, text):
    """Truth of a CC-Neg negative prompt after CoN-CLIP's comma removal."""
    t = text[0].lower() + text[1:-1]
    assert text.endswith(".") and "," not in t
    pats = [(rf"({_NP}) but no (\w+)", 6, True), (rf"({_NP}) and there are no (\w+)", 6, True),
            (rf"({_NP}) without an? ({_CAT})", 6, False), (rf"({_NP}) but not an? ({_CAT})", 6, False),
            (r"a picture with no (\w+)", 1, True), (r"there are no (\w+) here", 1, True),
            (rf"a plain background without an? ({_CAT})", 1, False)]
    for pat, g, is_plural in pats:
        if m := re.fullmatch(pat, t):
            cat = _plural_to_cat(m.group(g)) if is_plural else m.group(g)
            kept = bool(_matches(sc, m.group(1))) if g == 6 else True
            return kept and cat not in sc.categories()
    raise AssertionError(f"unexpected CC-Neg negative prompt: {text!r}")


_MCQ = [(re.compile(r"This image features an? (\w+) and an? (\w+)\."), "positive"),
        (re.compile(r"This image features an? (\w+), but not an? (\w+)\."), "hybrid"),
        (re.compile(r"This image features an? (\w+)\."), "positive"),
        (re.compile(r"This image does not feature an? (\w+)\."), "negative")]


def _mcq_option(sc, text):
    """(type, truth) of a NegBench option, from its template."""
    cats = sc.categories()
    for rx, kind in _MCQ:
        if m := rx.fullmatch(text):
            g = m.groups()
            assert all(c in CATEGORIES for c in g), text
            if kind == "negative":
                return kind, g[0] not in cats
            if kind == "hybrid":
                return kind, g[0] in cats and g[1] not in cats
            return kind, all(c in cats for c in g)
    raise AssertionError(f"not a NegBench template: {text!r}")


# --- NegBench -----------------------------------------------------------------------------

def _read_csv(path):
    """What ``pd.read_csv(path)`` gives a reader (the released ``CsvMCQDataset`` /
    ``CsvImageCaptionDataset``): header row, then one dict per row."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    return rows[0], [dict(zip(rows[0], r, strict=True)) for r in rows[1:]]


def test_negbench_mcq_true_option_first_and_wrong_ones_false(world):
    ex, scenes, _ = world
    header, rows = _read_csv(ex.negbench_mcq)
    # create_mcq.py's column order
    assert header == ["correct_answer", "caption_0", "caption_1", "caption_2", "caption_3",
                      "correct_answer_template", "image_path"]
    assert len(rows) >= 30
    per_image = {}
    for r in rows:
        sc = _scene_of(ex, scenes, r["image_path"])
        per_image[sc.file_name] = per_image.get(sc.file_name, 0) + 1
        assert int(r["correct_answer"]) == 0
        kinds, truths = zip(*(_mcq_option(sc, r[f"caption_{i}"]) for i in range(4)))
        assert truths == (True, False, False, False), (r, sc.objects)
        assert kinds[0] == r["correct_answer_template"]
        # the wrong-answer order mcq.py's mapping {1: hybrid, 2: positive, 3: negative} assumes
        assert kinds[1:] == ("hybrid", "positive", "negative")
        assert len(set(r[f"caption_{i}"] for i in range(4))) == 4
    assert max(per_image.values()) <= 3  # one question per absent object, at most three
    # every test scene with two or more categories asks questions; the others none
    multi = {f for f, s in scenes.items() if s.split == "test" and s.role == "scene"
             and len(s.categories()) >= 2}
    assert set(per_image) == multi
    assert {r["correct_answer_template"] for r in rows} == {"positive", "negative", "hybrid"}
    assert ex.manifest["counts"]["negbench_mcq"] == len(rows)


def test_negbench_retrieval_lists_the_test_captions(world):
    ex, scenes, by_image = world
    header, rows = _read_csv(ex.negbench_retrieval)
    assert header == ["filepath", "captions"]
    seen = []
    for r in rows:
        sc = _scene_of(ex, scenes, r["filepath"])
        caps = ast.literal_eval(r["captions"])  # NegBench calls eval() on this cell
        assert isinstance(caps, list) and all(isinstance(c, str) for c in caps)
        assert caps == by_image[sc.file_name]
        seen.append(sc.file_name)
    assert sorted(seen) == sorted(by_image) and len(set(seen)) == len(seen)


def test_negbench_negated_retrieval_negations_true(world):
    ex, scenes, by_image = world
    header, rows = _read_csv(ex.negbench_negated_retrieval)
    assert header == ["filepath", "captions"]
    assert len(rows) == len(by_image)
    first = last = 0
    for r in rows:
        sc = _scene_of(ex, scenes, r["filepath"])
        caps = ast.literal_eval(r["captions"])
        originals = by_image[sc.file_name]
        assert len(caps) == len(originals)
        for cap, orig in zip(caps, originals):
            m = (re.fullmatch(r"There is no (\w+) in the image\. (.+)", cap)
                 or re.fullmatch(r"(.+?)\.? There is no (\w+) in the image\.", cap))
            assert m, cap
            if cap.startswith("There is no "):
                cat, rest = m.groups()
                first += 1
            else:
                rest, cat = m.groups()
                last += 1
            assert cat in CATEGORIES and cat not in sc.categories(), (cap, sc.categories())
            o = orig.strip()
            assert rest.lower() in (o.lower(), o.rstrip(".").lower()), (rest, orig)
    assert first and last  # both orders, as NegBench's templated captions


# --- CC-Neg -------------------------------------------------------------------------------

def test_ccneg_caption_true_negated_caption_false(world):
    ex, scenes, by_image = world
    lines = ex.ccneg.read_text(encoding="utf-8").splitlines()
    recs = [json.loads(x) for x in lines]
    assert len(recs) == len(by_image)
    kinds = set()
    for r in recs:
        assert set(r) == {"image_path", "json", "sop_data"}
        sc = _scene_of(ex, scenes, r["image_path"])
        caption = r["json"]["caption"]
        negative = r["sop_data"]["negative-prompt"].replace(",", "")  # as CoN-CLIP reads it
        assert _statement(sc, caption, strict=True), (caption, sc.objects)
        assert not _ccneg_negative(sc, negative), (negative, sc.objects)
        kinds.add("," in r["sop_data"]["negative-prompt"])
    assert kinds == {True, False}  # commas occur, so a reader must drop them as released


def test_ccneg_pt_has_the_released_layout(world):
    torch = pytest.importorskip("torch")
    ex, _, _ = world
    data = torch.load(ex.ccneg_pt, weights_only=True)
    assert set(data) == {"image_paths", "annotations"}
    recs = [json.loads(x) for x in ex.ccneg.read_text(encoding="utf-8").splitlines()]
    # CoN-CLIP's CCNegEvalDataset: the last num_ccneg_eval_samples items
    paths, annos = data["image_paths"][-40000:], data["annotations"][-40000:]
    assert paths == [r["image_path"] for r in recs]
    assert [a["json"]["caption"] for a in annos] == [r["json"]["caption"] for r in recs]
    assert [a["sop_data"]["negative-prompt"] for a in annos] == \
        [r["sop_data"]["negative-prompt"] for r in recs]


# --- SugarCREPE ---------------------------------------------------------------------------

def test_sugarcrepe_positive_true_negative_false(world):
    ex, scenes, _ = world
    root = ex.images_dir
    for name in SUBSETS:
        path = ex.sugarcrepe(name)
        assert path == ex.root / "sugarcrepe" / f"{name}.json"
        ann = json.load(open(path))  # CLIP_benchmark's SugarCrepe
        assert list(ann) == [str(i) for i in range(len(ann))] and len(ann) >= 5, name
        assert ex.manifest["counts"]["sugarcrepe"][name] == len(ann)
        for key, d in ann.items():
            assert set(d) == {"filename", "caption", "negative_caption"}
            assert os.path.isfile(os.path.join(root, d["filename"]))
            sc = scenes[d["filename"]]
            assert sc.split == "test" and sc.role == "scene"
            pos, neg = d["caption"], d["negative_caption"]
            assert pos != neg
            assert _statement(sc, pos, strict=True), (name, pos, sc.objects)
            assert not _statement(sc, neg, strict=False), (name, neg, sc.objects)
            _check_subset_edit(name, pos, neg)


def _check_subset_edit(name, pos, neg):
    """The negative is the kind of edit the subset names."""
    p, n = _strip_frame(pos), _strip_frame(neg)
    pc, nc = set(re.findall(_CAT, p)), set(re.findall(_CAT, n))
    if name == "add_obj":
        assert n.startswith(p + " and ") and len(nc - pc) == 1
    elif name == "replace_obj":
        assert len(pc - nc) == 1 and len(nc - pc) == 1
    elif name == "add_att":
        assert len(n.split()) > len(p.split()) and pc == nc
    elif name == "replace_att":
        assert pc == nc and len(p.split()) == len(n.split())
    elif name == "replace_rel":
        rel = r" (to the left of|to the right of|above|below) "
        assert re.sub(rel, " R ", p) == re.sub(rel, " R ", n) and p != n
    elif name == "swap_att":
        pcols, ncols = re.findall(_COL, p), re.findall(_COL, n)
        assert len(pcols) == 2 and ncols == pcols[::-1]
    elif name == "swap_obj":
        assert re.findall(_CAT, n) == re.findall(_CAT, p)[::-1]


# --- manifest, determinism, older exports ---------------------------------------------------

def test_manifest_lists_the_field_files(world):
    ex, _, _ = world
    files = ex.manifest["files"]
    for key in ("negbench_mcq", "negbench_retrieval", "negbench_negated_retrieval", "ccneg",
                "ccneg_pt"):
        assert (ex.root / files[key]).is_file()
    assert sorted(files["sugarcrepe"]) == sorted(SUBSETS)
    assert ex.sugarcrepe_dir == ex.root / "sugarcrepe"


def _digest(root, names):
    h = hashlib.sha256()
    for name in names:
        h.update((root / name).read_bytes())
    return h.hexdigest()


def test_field_files_deterministic_from_seed(tmp_path):
    names = ["negbench_mcq.csv", "negbench_retrieval.csv", "negbench_negated_retrieval.csv",
             "ccneg.jsonl", "ccneg.pt"] + [f"sugarcrepe/{s}.json" for s in SUBSETS]
    for d, seed in (("a", 4), ("b", 4), ("c", 6)):
        build_world(tmp_path / d, WorldConfig(images=60, seed=seed, ccneg_pt=True), show_progress=False)
    assert _digest(tmp_path / "a", names) == _digest(tmp_path / "b", names)
    assert _digest(tmp_path / "a", names) != _digest(tmp_path / "c", names)


def test_no_ccneg_pt_by_default_and_older_exports_say_so(tmp_path, capsys):
    assert cli_main(["world", "build", "--out", str(tmp_path / "w"), "--images", "30"]) == 0
    ex = WorldExport.open(tmp_path / "w")
    assert not (ex.root / "ccneg.pt").exists() and ex.ccneg.is_file()
    with pytest.raises(NegationClipError, match="ccneg_pt"):
        ex.ccneg_pt
    del ex.manifest["files"]["negbench_mcq"]  # as in an export made before these files
    with pytest.raises(NegationClipError, match="rebuild"):
        ex.negbench_mcq
    with pytest.raises(NegationClipError, match="sugarcrepe entry 'nope'"):
        ex.sugarcrepe("nope")


def test_csv_bytes_equal_what_pandas_writes(world):
    """Byte-compatible with the released files, which pandas wrote (``to_csv(index=False)``)."""
    pd = pytest.importorskip("pandas")
    ex, _, _ = world
    for path in (ex.negbench_mcq, ex.negbench_retrieval, ex.negbench_negated_retrieval):
        df = pd.read_csv(path)
        assert df.to_csv(index=False).encode("utf-8") == path.read_bytes(), path
    df = pd.read_csv(ex.negbench_mcq)
    assert str(df["correct_answer"].dtype) == "int64"


def test_the_package_readers_take_the_exports(world):
    """The released-format readers of ``negationclip.data`` read NegWorld's files as they are and
    see the same records as the parse above (the CLI's ``eval --benchmark negbench-mcq ...``
    runs on them)."""
    torch = pytest.importorskip("torch")  # noqa: F841 (ccneg.pt)
    from negationclip.data.ccneg import load_ccneg
    from negationclip.data.negbench import load_negbench_mcq, load_negbench_retrieval
    from negationclip.data.sugarcrepe import load_sugarcrepe, sugarcrepe_files

    ex, _, _ = world
    _, rows = _read_csv(ex.negbench_mcq)
    items = load_negbench_mcq(ex.negbench_mcq)
    assert [(i.image_path, i.captions, i.correct_answer, i.template) for i in items] == \
        [(r["image_path"], [r[f"caption_{k}"] for k in range(4)], 0, r["correct_answer_template"])
         for r in rows]
    for path in (ex.negbench_retrieval, ex.negbench_negated_retrieval):
        _, rows = _read_csv(path)
        assert [(i.image_path, i.captions) for i in load_negbench_retrieval(path)] == \
            [(r["filepath"], ast.literal_eval(r["captions"])) for r in rows]
    recs = [json.loads(x) for x in ex.ccneg.read_text(encoding="utf-8").splitlines()]
    want = [(r["image_path"], r["json"]["caption"], r["sop_data"]["negative-prompt"].replace(",", ""))
            for r in recs]
    for path in (ex.ccneg, ex.ccneg_pt):
        assert [(i.image_path, i.caption, i.negative) for i in load_ccneg(path)] == want
    files = sugarcrepe_files(ex.sugarcrepe_dir)
    assert sorted(files) == sorted(SUBSETS)
    for name, path in files.items():
        ann = json.load(open(path))
        assert [(i.key, i.filename, i.caption, i.negative_caption) for i in load_sugarcrepe(path)] == \
            [(k, d["filename"], d["caption"], d["negative_caption"]) for k, d in ann.items()]
