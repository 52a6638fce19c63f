"""`negationclip compare`: every method from the same base on NegWorld, one table."""

import json

import pytest

from negationclip.cli import main
from negationclip.demo import BASE_MODEL_DIR, FIELD_METRICS, METRICS


def test_compare_help_and_bad_method(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["compare", "--help"])
    out = capsys.readouterr().out
    for opt in ("--methods", "--quick", "--steps", "--train-vision", "--ceiling", "--no-ceiling",
                "examples:"):
        assert opt in out
    assert main(["compare", "--methods", "negationclip,clip-bnl", "--out", str(tmp_path)]) == 2
    assert "unknown method(s) ['clip-bnl']" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.skipif(not (BASE_MODEL_DIR / "config.json").exists(), reason="no shipped base model")
def test_compare_quick_writes_one_row_per_method(tmp_path):
    from negationclip.compare import CompareConfig, run_compare

    rep = run_compare(CompareConfig(out=str(tmp_path / "c"), methods=("negationclip", "conclip", "tng"),
                                    quick=True, quick_images=150, quick_steps=3, quick_batch_size=32,
                                    threads=1))
    saved = json.loads((tmp_path / "c" / "compare.json").read_text())
    assert list(saved["methods"]) == ["negationclip", "conclip", "tng"]
    for r in saved["methods"].values():
        assert set(r["metrics"]) == set(METRICS) | set(FIELD_METRICS) and r["steps"] == 3
        assert all(0.0 <= r["metrics"][k] <= 1.0 for k in METRICS + FIELD_METRICS)
    # different objectives give different models
    assert saved["methods"]["conclip"]["metrics"] != saved["methods"]["tng"]["metrics"]
    assert set(saved["base"]) == set(METRICS) | set(FIELD_METRICS) and rep["base"] == saved["base"]
    assert saved["ceiling"] is None  # off by default with --quick
    md = (tmp_path / "c" / "compare.md").read_text()
    assert "| base | - |" in md and "| conclip | none |" in md and "| tng | none |" in md
    assert "## The field's formats" in md and "`negbench_mcq_total`" in md
    for png in ("compare.png", "compare_field.png"):
        assert (tmp_path / "c" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_compare_ceiling_default_follows_quick():
    from negationclip.compare import CompareConfig

    assert CompareConfig().wants_ceiling() and not CompareConfig(quick=True).wants_ceiling()
    assert CompareConfig(quick=True, ceiling=True).wants_ceiling()
    assert not CompareConfig(ceiling=False).wants_ceiling()
