"""The self-contained HTML report: what it shows, that it needs no network, and that eval
writes it. (Rendering in a real browser: tests/apps/test_explore_browser.py.)"""

import base64
import io
import json
import re
from html.parser import HTMLParser

import numpy as np
import pytest

from negationclip.evaluate.html_report import normalise, pair_examples, render_html, write_html_report
from negationclip.utils import NegationClipError

from .conftest import fabricate_image

RESULTS = {
    "format": "negationclip-eval/1", "created": "2026-01-01T00:00:00+00:00",
    "software": {"negationclip": "0.1.0", "torch": "2.13.0", "transformers": "5.0"},
    "models": {"base": {"source": "x"}, "neg<clip>": {"source": "y"}, "broken": {"source": "z"}},
    "results": {
        "base": {"valse-existence": {"accuracy": 0.5, "correct": 3, "total": 6, "items_per_second": 12.5},
                 "retrieval": {"headline_metric": "t2i_r5", "t2i_r5": 0.25, "i2t_r1": 0.125, "total": 8}},
        "neg<clip>": {"valse-existence": {"accuracy": 0.8333333, "correct": 5, "total": 6},
                      "retrieval": {"headline_metric": "t2i_r5", "t2i_r5": 0.375, "i2t_r1": 0.0, "total": 8}},
    },
    "errors": {"broken": {"valse-existence": "model failed to load: no config.json"}},
}


class _Tables(HTMLParser):
    """Collects table rows (cell texts) and every src/href attribute."""

    def __init__(self):
        super().__init__()
        self.rows, self.urls, self._row, self._cell, self.tags = [], [], None, None, []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append(tag)
        for k in ("src", "href"):
            if k in a:
                self.urls.append(a[k])
        if tag == "tr":
            self._row = {"attrs": a, "cells": []}
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self._row["cells"].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.rows.append(self._row)
            self._row = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def _parse(text: str) -> _Tables:
    p = _Tables()
    p.feed(text)
    return p


def test_summary_detail_errors_and_no_network(tmp_path):
    path = write_html_report(RESULTS, tmp_path / "r" / "report.html", title="my <eval>")
    text = path.read_text()
    assert text.startswith("<!DOCTYPE html>") and "<title>my &lt;eval&gt;</title>" in text
    p = _parse(text)
    summary = [r for r in p.rows if "nc-model-row" in (r["attrs"].get("class") or "")]
    assert [r["attrs"]["data-model"] for r in summary] == ["base", "neg<clip>", "broken"]
    # headline per benchmark, in percent with two decimals (as results.md)
    assert summary[0]["cells"] == ["base", "50.00", "25.00"]
    assert summary[1]["cells"] == ["neg<clip>", "83.33", "37.50"]
    assert summary[2]["cells"] == ["broken", "error", "—"]
    assert "t2i_r5, %" in text
    # detail tables: every numeric metric, counts as integers
    details = [r["cells"] for r in p.rows if r["cells"] and r["cells"][0] == "base"]
    assert ["base", "50.00", "3", "6", "12.5"] in details
    assert ["base", "25.00", "12.50", "8"] in details
    assert "model failed to load: no config.json" in text
    # one SVG chart per benchmark, bar widths proportional to the values
    svgs = re.findall(r"<svg.*?</svg>", text, flags=re.S)
    assert len(svgs) == 2
    widths = [float(w) for w in re.findall(r'<rect x="\d+" y="[\d.]+" width="([\d.]+)"', svgs[0])]
    assert len(widths) == 2 and widths[1] / widths[0] == pytest.approx(0.8333333 / 0.5, rel=1e-2)
    # self-contained: nothing is fetched (SVG's xmlns is a name, not a request)
    assert p.urls == [] and "<script" not in text and "@import" not in text
    assert "neg&lt;clip&gt;" in text and "neg<clip>" not in text.replace("data-model=\"neg&lt;clip&gt;\"", "")


def test_examples_are_embedded_pixels_and_unreadable_ones_counted(tmp_path):
    from PIL import Image

    fabricate_image(tmp_path / "a.png", 30, 20, "a")
    big = tmp_path / "big.jpg"
    fabricate_image(big, 600, 400, "big")
    (tmp_path / "bad.png").write_bytes(b"nope")
    ex = [{"query": "a star without a dot", "note": "held-out phrasing",
           "images": [{"path": tmp_path / "a.png", "label": "no dot", "correct": True},
                      {"path": big, "label": "has dot", "correct": False},
                      {"path": tmp_path / "bad.png", "label": "gone"}]}]
    text = render_html({"m": {"b": {"accuracy": 1.0}}}, images=ex)
    uris = re.findall(r'src="data:image/(png|jpeg);base64,([^"]+)"', text)
    assert [u[0] for u in uris] == ["png", "jpeg"]
    small = Image.open(io.BytesIO(base64.b64decode(uris[0][1]))).convert("RGB")
    assert np.array_equal(np.asarray(small), np.asarray(Image.open(tmp_path / "a.png").convert("RGB")))
    thumb = Image.open(io.BytesIO(base64.b64decode(uris[1][1])))
    assert max(thumb.size) == 192 and thumb.size[0] / thumb.size[1] == pytest.approx(1.5, rel=0.02)
    assert 'class="nc-right"' in text and 'class="nc-wrong"' in text
    assert "unreadable:" in text and "1 example image(s) could not be read" in text
    assert "held-out phrasing" in text and "“a star without a dot”" in text


def test_shapes_and_bad_input():
    bare = normalise({"a": {"x": {"accuracy": 0.1}}})
    assert bare.models == ["a"] and bare.benchmarks == ["x"]
    demo = normalise({"before": {"negref": 0.2}, "after": {"negref": 0.3},
                      "details": {"before": {"negref": {"accuracy": 0.2}}, "after": {"negref": {"accuracy": 0.3}}}})
    assert demo.results == {"base": {"negref": {"accuracy": 0.2}}, "fine-tuned": {"negref": {"accuracy": 0.3}}}
    flat = normalise({"before": {"negref": 0.2}, "after": {"negref": 0.3}})
    assert flat.results["fine-tuned"] == {"negref": {"accuracy": 0.3}}
    with pytest.raises(NegationClipError, match="f.json: expected a JSON object"):
        normalise([1, 2], "f.json")
    with pytest.raises(NegationClipError, match="f.json: not a results object.*'a'"):
        normalise({"a": {"x": 3}}, "f.json")
    assert "No results." in render_html({"results": {}, "errors": {}})


def test_pair_examples_label_each_models_choice(tmp_path):
    from types import SimpleNamespace

    pairs = [SimpleNamespace(text="a star with no dot", image="i/1.png", foil_image="i/2.png",
                             negated_object="dot", heldout_phrasing=True)]
    ex = pair_examples(tmp_path, pairs, {"base": [False], "tuned": [True]})
    assert ex[0]["images"][0] == {"path": tmp_path / "i/1.png", "correct": True,
                                  "label": "no dot — chosen by: tuned"}
    assert ex[0]["images"][1]["label"] == "has dot — chosen by: base" and ex[0]["note"] == "held-out phrasing"


def test_eval_writes_report_html(tmp_path):
    from negationclip.cli import main
    from negationclip.models import save, tiny_clip_bundle

    for seed in (0, 1):
        save(tiny_clip_bundle(seed=seed), tmp_path / f"m{seed}")
    recs = {f"e{i}": {"image_file": f"v{i}.jpg", "caption": "There are no cats.", "foil": "There are cats.",
                      "mturk": {"caption": 3}} for i in range(3)}
    (tmp_path / "existence.json").write_text(json.dumps(recs))
    for i in range(3):
        fabricate_image(tmp_path / "imgs" / f"v{i}.jpg", 20, 20, f"v{i}")
    out = tmp_path / "out"
    assert main(["eval", "--model", f"a={tmp_path / 'm0'}", "--model", f"b={tmp_path / 'm1'}",
                 "--model", f"gone={tmp_path / 'nope'}", "--benchmark", "valse",
                 "--valse-dir", str(tmp_path), "--valse-images", str(tmp_path / "imgs"),
                 "--out", str(out), "--cache-dir", "none", "--no-charts"]) == 2  # 2: a model failed
    res = json.loads((out / "results.json").read_text())
    p = _parse((out / "report.html").read_text())
    summary = {r["attrs"]["data-model"]: r["cells"] for r in p.rows
               if "nc-model-row" in (r["attrs"].get("class") or "")}
    assert set(summary) == {"a", "b", "gone"}
    for m in ("a", "b"):
        assert summary[m][1] == f"{100 * res['results'][m]['valse:existence']['accuracy_official']:.2f}"
    assert summary["gone"][1] == "error"
