"""`negationclip explore` without a browser: the negation rule, the search engine against an
independent ranking, the page handlers and every kind of bad input."""

import json
import re

import pytest
import torch

from negationclip.apps.explore import Explorer, demo_sources, list_images, remove_negation
from negationclip.cli import main
from negationclip.models import ImageEmbeddingCache, open_image, save, tiny_clip_bundle
from negationclip.utils import NegationClipError


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Twelve small distinct images (one in a subfolder) and a broken file."""
    import numpy as np
    from PIL import Image

    torch.set_num_threads(1)
    d = tmp_path_factory.mktemp("imgs")
    rng = np.random.default_rng(0)
    for i in range(12):
        sub = d / "sub" if i == 11 else d
        sub.mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).resize((40, 40)).save(sub / f"im{i:02d}.png")
    (d / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    (d / "notes.txt").write_text("not an image")
    return d


@pytest.fixture(scope="module")
def bundles():
    return {"a": tiny_clip_bundle(seed=0), "b": tiny_clip_bundle(seed=1)}


# --- the negation rule --------------------------------------------------------------------------

def test_remove_negation_examples():
    cases = {
        "a street with no cars": "a street with cars",
        "A star without a dot": "A star with a dot",
        "a star but not a dot": "a star and a dot",
        "not a cat": "a cat",
        "there are no dogs in this picture of a cat": "there are dogs in this picture of a cat",
        "a cat, and there is no dog": "a cat, and there is a dog",
        "a cat; the picture does not contain a dog": "a cat; the picture contains a dog",
        "the room doesn't have a window": "the room has a window",
        "a cat, lacking any dogs": "a cat, with dogs",
        "a cat in a picture free of dogs": "a cat in a picture with dogs",
        "cats; dogs are missing": "cats; dogs are present",
        "the sky isn't blue": "the sky is blue",
    }
    for q, want in cases.items():
        assert remove_negation(q) == want, q
    assert remove_negation("a red square next to a circle") is None
    assert remove_negation("nothing to see") is None or "no" not in remove_negation("nothing to see").split()


def test_remove_negation_covers_every_negworld_phrasing():
    """Every NegWorld template (training and held-out), filled in, loses its negation
    (NegWorld's own negation detector is the judge) and keeps both objects."""
    from negationclip.data.negworld import HELDOUT_PAIR_TEMPLATES, TRAIN_PAIR_TEMPLATES, contains_negation

    for t in TRAIN_PAIR_TEMPLATES + HELDOUT_PAIR_TEMPLATES:
        q = t.format(pos="a red star", neg="blue dot", neg_pl="blue dots", a_neg="a blue dot")
        out = remove_negation(q)
        assert out is not None and not contains_negation(out), (q, out)
        assert "red star" in out and "blue dot" in out, (q, out)


# --- search ---------------------------------------------------------------------------------------

def _reference_top(bundle, paths, query, k):
    """Independent ranking: encode every readable image and the text, sort by cosine."""
    from negationclip.models import encode_images, encode_text

    ok = []
    for p in paths:
        try:
            open_image(p)
            ok.append(p)
        except NegationClipError:
            pass
    img = encode_images(bundle, ok, show_progress=False)
    t = encode_text(bundle, [query], show_progress=False)[0]
    scores = (img @ t).tolist()
    order = sorted(range(len(ok)), key=lambda i: -scores[i])[:k]
    return [ok[i] for i in order], [scores[i] for i in order]


def test_list_images_recursive_and_sorted(folder):
    paths = list_images(folder)
    assert [p.name for p in paths] == ["broken.png"] + [f"im{i:02d}.png" for i in range(11)] + ["im11.png"]
    assert paths[-1].parent.name == "sub"


def test_search_matches_the_python_api_and_counts_skips(folder, bundles, tmp_path):
    logs = []
    ex = Explorer.open(bundles, folder, cache=ImageEmbeddingCache(tmp_path / "c"), log=logs.append)
    assert list(ex.skipped) == [str(folder / "broken.png")]
    assert "broken.png" in ex.skipped[str(folder / "broken.png")]
    assert any("skipped 1 of 13 images" in m for m in logs)
    q = "a red star without a blue dot"
    hits = ex.search(q, k=5)
    for name, b in bundles.items():
        want_paths, want_scores = _reference_top(b, list_images(folder), q, 5)
        assert [h.path for h in hits[name]] == want_paths
        assert [h.rank for h in hits[name]] == [1, 2, 3, 4, 5]
        assert [h.score for h in hits[name]] == pytest.approx(want_scores, abs=1e-5)
    # a second explorer reads the embeddings from the cache: same answers, nothing recomputed
    ex2 = Explorer.open(bundles, folder, cache=ImageEmbeddingCache(tmp_path / "c"), log=logs.append)
    assert [h.path for h in ex2.search(q, 5)["a"]] == [h.path for h in hits["a"]]
    with pytest.raises(NegationClipError, match="type a query"):
        ex.search("   ")
    assert len(ex.search(q, k=100)["a"]) == 12   # k larger than the folder: all readable images


def test_bad_inputs(folder, bundles, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(NegationClipError, match="no images there"):
        Explorer.open(bundles, empty, cache=ImageEmbeddingCache(False))
    with pytest.raises(NegationClipError, match="no such folder"):
        Explorer.open(bundles, tmp_path / "nope", cache=ImageEmbeddingCache(False))
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "x.jpg").write_bytes(b"junk")
    with pytest.raises(NegationClipError, match="none of the 1 images could be read"):
        Explorer.open(bundles, broken, cache=ImageEmbeddingCache(False))
    # one model fails to load: recorded, the other keeps working
    logs = []
    ex = Explorer.open({"a": bundles["a"], "bad": str(tmp_path / "no-model")}, folder,
                       cache=ImageEmbeddingCache(False), log=logs.append)
    assert ex.model_names == ["a"] and "bad" in ex.load_errors
    assert any(m.startswith("error: model 'bad' failed to load") for m in logs)
    with pytest.raises(NegationClipError, match="no model could be loaded"):
        Explorer.open({"bad": str(tmp_path / "no-model")}, folder, cache=ImageEmbeddingCache(False))


def test_cli_errors_exit_2_with_a_message(folder, tmp_path, capsys):
    pytest.importorskip("gradio")
    empty = tmp_path / "empty"
    empty.mkdir()
    save(tiny_clip_bundle(seed=0), tmp_path / "m")
    cases = [
        (["--model", f"a={tmp_path / 'm'}", "--images", str(empty)], "no images there"),
        (["--model", f"a={tmp_path / 'nope'}", "--images", str(folder)], "no model could be loaded"),
        (["--images", str(folder)], "give --model"),
        (["--model", f"a={tmp_path / 'm'}"], "give --images"),
        (["--model", f"a={tmp_path / 'm'}", "--images", str(folder), "--top-k", "0"], "--top-k"),
        (["--demo", str(tmp_path)], "no report.json there"),
    ]
    for argv, msg in cases:
        assert main(["explore", *argv, "--cache-dir", "none"]) == 2, argv
        err = capsys.readouterr().err
        last = err.strip().splitlines()[-1]
        assert last.startswith("error: ") and msg in last and "Traceback" not in err, (argv, err)


# --- page handlers (plain functions; the browser test drives the real page) ----------------------

def test_page_handlers(folder, bundles, tmp_path):
    pytest.importorskip("gradio")
    from negationclip.apps.explore.page import ExplorePage

    ex = Explorer.open({**bundles, "bad": str(tmp_path / "no-model")}, folder,
                       cache=ImageEmbeddingCache(False), log=lambda m: None)
    page = ExplorePage(ex, top_k=3)
    q = "a circle without a square"
    out = page.search(q, 3, True)
    shown = re.findall(r'data-model="(\w+)" data-kind="(\w+)" data-rank="(\d)" data-image="([^"]+)"', out)
    aff = remove_negation(q)
    for name, b in bundles.items():
        for kind, text in (("query", q), ("affirmed", aff)):
            want = [p.relative_to(folder).as_posix() for p in _reference_top(b, list_images(folder), text, 3)[0]]
            assert [s[3] for s in shown if s[0] == name and s[1] == kind] == want
    assert out.count("data:image/png;base64,") == 12
    assert "negation removed" in out and aff in out
    msg = page.search("", 3, False)
    assert 'nc-error' in msg and "type a query" in msg
    assert "no negation found" in page.search("a red circle", 3, True)
    assert page.toggle("", 3, True) == "" and page.toggle(q, 3, True) == out
    notes = page.notices()
    assert "1 of 13 images skipped" in notes and "model &#x27;bad&#x27; failed to load" in notes
    # results tab
    assert "no such file" in page.results(str(tmp_path / "nope.json"))
    (tmp_path / "bad.json").write_text("{oops")
    assert "nc-error" in page.results(str(tmp_path / "bad.json"))
    (tmp_path / "r.json").write_text(json.dumps({"results": {"a": {"valse": {"accuracy": 0.5}}}}))
    assert 'data-model="a"' in page.results(str(tmp_path / "r.json"))


def test_demo_sources(tmp_path):
    from negationclip.data.negworld import WorldConfig, build_world

    run = tmp_path / "run"
    build_world(run / "world", WorldConfig(images=12, seed=5), show_progress=False)
    (run / "report.json").write_text(json.dumps({"config": {"base": "/some/base"}}))
    with pytest.raises(NegationClipError, match="fine-tuned model is missing"):
        demo_sources(run)
    save(tiny_clip_bundle(seed=0), run / "finetune" / "best")
    models, paths, rep = demo_sources(run)
    assert models == {"base": "/some/base", "fine-tuned": str(run / "finetune" / "best")}
    test_files = [im["file_name"] for im in json.loads((run / "world" / "captions_test.json").read_text())["images"]]
    assert [p.name for p in paths] == test_files and all(p.is_file() for p in paths)
    assert rep == run / "report.json"
