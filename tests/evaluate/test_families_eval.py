"""Every benchmark runs on every model family: CLIP, SigLIP and SigLIP 2 side by side."""

from __future__ import annotations

import json

from negationclip.cli import main
from tests.evaluate.test_runner_cli import setup  # noqa: F401  (the fixture: models, data)
from tests.models._siglip_fixtures import make_siglip, make_siglip2


def test_eval_cli_clip_siglip_siglip2_side_by_side(setup, tmp_path):  # noqa: F811
    sig, sig2 = make_siglip(tmp_path / "siglip"), make_siglip2(tmp_path / "siglip2")
    out = tmp_path / "out"
    argv = ["eval", "--model", f"clip={setup / 'model0'}", "--model", f"siglip={sig}",
            "--model", f"siglip2={sig2}",
            "--benchmark", "negrefcocog", "--negrefcocog", str(setup / "neg.json"),
            "--negrefcocog-images", str(setup / "imgs"), "--benchmark", "valse",
            "--valse-dir", str(setup / "valse"), "--valse-images", str(setup / "imgs"),
            "--out", str(out), "--cache-dir", str(tmp_path / "cache"), "--no-charts"]
    assert main(argv) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["errors"] == {}
    for m in ("clip", "siglip", "siglip2"):
        r = res["results"][m]["negrefcocog"]
        assert r["total"] == 4 and 0 <= r["accuracy_official"] <= 1
        assert res["results"][m]["valse:existence"]["total"] == 3
    # the image-embedding cache keeps the families apart (three vision fingerprints)
    shards = {p.parent.parent.name for p in (tmp_path / "cache").rglob("shards/*.npy")}
    assert len(shards) >= 3
