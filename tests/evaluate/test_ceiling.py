"""The text-only ceiling: the fit reaches the logistic optimum, the query features say exactly
what a query states, the model's own row equals the negation-pairs benchmark, and the command
reports a clear error for a world it cannot use."""

import json

import pytest
import torch

from negationclip.cli import main as cli_main
from negationclip.data.negworld import WorldConfig, build_world
from negationclip.data.negworld.vocab import CATEGORIES, COLORS
from negationclip.evaluate.ceiling import (CeilingConfig, fit_direction, format_ceiling,
                                           query_features, text_only_ceiling)
from negationclip.evaluate.negation_pairs import evaluate_negation_pairs
from negationclip.models import tiny_clip_bundle
from negationclip.utils import NegationClipError


def test_fit_reaches_the_regularised_logistic_optimum():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(300, 8, generator=g, dtype=torch.float64) + 0.3
    l2 = 1e-2
    w = fit_direction(x, l2)
    # first-order optimality of mean(log(1 + exp(-x w))) + l2 |w|^2, written out here
    grad = (-(torch.sigmoid(-(x @ w)))[:, None] * x).mean(0) + 2 * l2 * w
    assert grad.abs().max() < 1e-6
    # and it separates what a separating direction separates
    u = torch.randn(8, generator=g, dtype=torch.float64)
    sep = x * torch.sign(x @ u)[:, None]
    assert ((sep @ fit_direction(sep, 1e-6)) > 0).all()


def test_query_features_name_what_the_query_states():
    phi = query_features("A small red square with a dot and two circles, lacking any stars.", "star")
    cats, cols = list(CATEGORIES), sorted(COLORS)
    k = len(CATEGORIES)
    assert phi[:k] == [float(c == "star") for c in cats]
    assert phi[k:2 * k] == [float(c in ("square", "circle")) for c in cats]
    assert phi[2 * k:2 * k + len(cols)] == [float(c == "red") for c in cols]
    assert phi[2 * k + len(cols):] == [1.0, 0.0, 1.0, 0.0, 1.0]  # small, large, dot, border, const


@pytest.fixture(scope="module")
def small_world(tmp_path_factory):
    root = tmp_path_factory.mktemp("ceil") / "w"
    build_world(root, WorldConfig(images=160, seed=9), show_progress=False)
    return root


def test_ceiling_rows_and_model_row_equal_the_benchmark(small_world):
    torch.manual_seed(0)
    bundle = tiny_clip_bundle(seed=1)
    cfg = CeilingConfig(l2_grid=(1e-3, 1e-1), max_iter=50)
    r = text_only_ceiling(bundle, small_world, config=cfg, show_progress=False)
    bench = evaluate_negation_pairs(bundle, small_world / "negation_pairs.json", split="test")
    assert r["test_pairs"] == bench["total"] and r["model_accuracy"] == pytest.approx(bench["accuracy"])
    assert set(r["scorers"]) == {"query-features", "negated-object", "mean-direction",
                                 "negated-object-oracle"}
    for row in r["scorers"].values():
        assert 0.0 <= row["accuracy"] <= 1.0 and row["total"] == r["test_pairs"]
    fitted = {k: v for k, v in r["scorers"].items() if k != "negated-object-oracle"}
    best = max(fitted, key=lambda k: fitted[k]["val_accuracy"])  # chosen on val, not test
    assert r["ceiling_scorer"] == best and r["ceiling"] == fitted[best]["accuracy"]
    assert r["train_pairs"] > r["test_pairs"] > 0 and r["val_pairs"] > 0
    assert r["scorers"]["query-features"]["l2"] in cfg.l2_grid
    again = text_only_ceiling(bundle, small_world, config=cfg, show_progress=False)
    assert again["scorers"] == r["scorers"]  # deterministic
    assert "ceiling:" in format_ceiling(r)


def test_cli_writes_json_and_names_bad_worlds(small_world, tmp_path, capsys, monkeypatch):
    import negationclip.models as models

    monkeypatch.setattr(models, "load_clip", lambda *a, **k: tiny_clip_bundle(seed=2))
    out = tmp_path / "c.json"
    assert cli_main(["ceiling", "--model", "tiny", "--world", str(small_world),
                     "--out", str(out), "--max-train-pairs", "60"]) == 0
    r = json.loads(out.read_text())
    assert r["train_pairs"] == 60 and "ceiling" in capsys.readouterr().out
    assert cli_main(["ceiling", "--model", "tiny", "--world", str(tmp_path / "nowhere")]) == 2
    assert "manifest.json" in capsys.readouterr().err
    tiny = tmp_path / "tiny"
    build_world(tiny, WorldConfig(images=12, seed=1), show_progress=False)
    with pytest.raises(NegationClipError, match="too few"):
        text_only_ceiling(tiny_clip_bundle(), tiny, show_progress=False)
