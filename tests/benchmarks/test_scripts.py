"""Every script in benchmarks/: a tiny run writes the protocol's JSON, bad options exit 2 with a
clear message, --help teaches with examples; summary.py --readme rewrites the markers.

Scripts are found by listing the folder (a new script is covered without editing this file)
and run in this process (``main(argv)``) at their ``--quick`` sizes with one run: the figures
mean nothing, the bookkeeping is what is checked. No timing is asserted.
"""

import json
import sys
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCH))

import _harness  # noqa: E402
import summary  # noqa: E402

SCRIPTS = sorted(p.stem for p in BENCH.glob("*.py") if not p.stem.startswith("_") and p.stem != "summary")
# beyond --quick: keep each run to seconds (the replica arms have their own test in test_harness)
EXTRA = {"generate_throughput": ["--replicas", "0"], "methods_negworld": ["--methods", "negationclip"],
         "gpu_eval": ["--dry-run"]}


@pytest.fixture(autouse=True)
def _threads():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def test_every_script_is_listed():
    # the scripts this issue converted are among those found (the list is not empty by accident)
    assert {"eval_speed", "encode_text", "train_speed", "preprocess", "explore_speed", "methods_negworld",
            "gpu_eval", "negworld_render", "generate_calls", "generate_throughput"} <= set(SCRIPTS)


def _check_protocol(got: dict) -> None:
    assert got["quick"] is True and got["protocol"]["runs"] == 1
    assert got["protocol"]["order"].startswith("interleaved")
    assert got["peak"]["gflops"] > 0 and got["peak"]["before"]["gflops"] > 0
    assert set(got["load"]) >= {"before", "after", "busy", "max_1min", "samples_1min"}
    assert got["arms"], "no arms"
    for name, arm in got["arms"].items():
        sec = arm[arm["seconds_key"]]
        assert set(sec) >= {"median", "min", "max", "runs"} and len(sec["runs"]) == 1, name
        assert sec["min"] <= sec["median"] <= sec["max"], name
        assert "fraction_of_peak" in arm and "flops" in arm, name
        if arm["flops"]:
            assert 0 < arm["fraction_of_peak"] == pytest.approx(arm["gflops_per_s"] / got["peak"]["gflops"]), name
    assert got["headline"] and {"value", "min", "max", "unit"} <= set(got["headline"])
    for r in got["ratios"]:
        assert {"median_ratio", "paired_min", "paired_max"} <= set(r)
        num, den = got["arms"][r["numerator"]][r["key"]], got["arms"][r["denominator"]][r["key"]]
        assert r["median_ratio"] == pytest.approx(num["median"] / den["median"])


@pytest.mark.slow
@pytest.mark.parametrize("script", SCRIPTS)
def test_tiny_run_writes_protocol_json(script, tmp_path):
    mod = __import__(script)
    out = tmp_path / f"{script}.json"
    assert mod.main(["--quick", "--threads", "1", "--out", str(out), *EXTRA.get(script, [])]) == 0
    got = json.loads(out.read_text())
    assert got["benchmark"] == script
    _check_protocol(got)
    if script not in ("generate_calls", "generate_throughput", "negworld_render", "preprocess", "train_scale"):
        # (those: model calls, rendering, resizing or data reading, no countable FLOPs)
        assert any(a["fraction_of_peak"] for a in got["arms"].values()), "no arm reports a fraction of peak"
    checks = got.get("checks", {})
    if script == "encode_text":
        assert checks["max_abs_diff"] < 1e-5
        assert got["arms"]["pad77"]["flops"] > got["arms"]["dynamic"]["flops"] > 0
        # the SigLIP arm runs, and dynamic padding would change SigLIP's embeddings
        assert got["arms"]["siglip"]["flops"] > 0
        assert checks["siglip_dynamic_max_abs_diff"] > 1e-3
    if script == "eval_speed":  # the roofline target: the batched pass as a fraction of peak
        t = got["targets"][0]
        assert t["what"].startswith("batched image pass") and t["op"] == ">=" and t["goal"] == 0.70
        assert t["value"] == got["arms"]["pass"]["fraction_of_peak"] > 0
        assert checks["negref_outcomes_agree"] == checks["negref_records"]
    if script == "preprocess":
        assert checks["max_abs_diff_hf"] == 0 and set(got["arms"]) == {"openai", "hf", "processor"}
    if script == "explore_speed":
        assert set(got["arms"]) == {"embed", "reopen", "query"}
        assert got["arms"]["embed"]["flops"] > 0 and got["arms"]["reopen"]["flops"] == 0  # all from the cache
        assert "worst query" in got["headline"]["beside"]
    if script == "methods_negworld":
        assert set(got["arms"]) == {"base (no training)", "negationclip"}
        assert got["arms"]["negationclip"]["flops"] > 0 and got["arms"]["negationclip"]["steps"]["median"] == 2
        assert got["readme_table"].count("\n") == 3 and "| negationclip | " in got["readme_table"]
    if script == "gpu_eval":
        assert got["dry_run"] is True and got["protocol"]["device"] == "cpu"
        assert set(got["arms"]) == {"one-crop", "batched", "ref", "ours"}
        # same crops either way: equal FLOPs, so on a CPU the ratio is the efficiency gap alone
        assert got["arms"]["one-crop"]["flops"] == got["arms"]["batched"]["flops"]
        assert checks["negref_outcomes_agree"] == checks["negref_records"]


@pytest.mark.parametrize("script", SCRIPTS)
@pytest.mark.parametrize("bad", [["--runs", "0"], ["--threads", "-1"], ["--runs", "two"], ["--no-such-option"],
                                 ["--out", "DIR"]])
def test_bad_option_exits_2_with_message(script, bad, tmp_path, capsys):
    mod = __import__(script)
    argv = [str(tmp_path) if a == "DIR" else a for a in bad]  # --out DIR: a folder, not a file
    with pytest.raises(SystemExit) as e:
        mod.main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "error:" in err and "Traceback" not in err
    if bad[0] == "--out":
        assert "is a folder" in err
    elif bad[0] != "--no-such-option":
        assert f"argument {bad[0]}" in err


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_has_examples(script, capsys):
    mod = __import__(script)
    with pytest.raises(SystemExit) as e:
        mod.main(["--help"])
    assert e.value.code == 0
    assert f"python benchmarks/{script}.py" in capsys.readouterr().out


def test_script_specific_bad_values(tmp_path, capsys):
    import eval_speed
    import methods_negworld
    import train_scale

    for mod, argv, msg in [(eval_speed, ["--records", "0"], "argument --records"),
                           (eval_speed, ["--mcq-questions", "-1"], "argument --mcq-questions"),
                           (methods_negworld, ["--methods", "negationclip,nope"], "unknown 'nope'"),
                           (methods_negworld, ["--lr", "0"], "argument --lr"),
                           (train_scale, ["--sizes", "1000,x"], "argument --sizes")]:
        with pytest.raises(SystemExit) as e:
            mod.main(argv)
        err = capsys.readouterr().err
        assert e.value.code == 2 and msg in err and "Traceback" not in err, (argv, err)
    # a missing input file is a one-line error, exit 2
    assert eval_speed.main(["--negrefcocog", str(tmp_path / "missing.json")]) == 2
    assert "not found" in capsys.readouterr().err


def test_cli_turns_errors_into_exit_2(capsys):
    from negationclip.utils.errors import NegationClipError

    def bad_input(argv):
        raise NegationClipError("data.json, row 3: no phrase")

    def bad_disk(argv):
        raise PermissionError(13, "Permission denied", "/ro/out.json")

    assert _harness.cli(bad_input) == 2 and capsys.readouterr().err == "error: data.json, row 3: no phrase\n"
    assert _harness.cli(bad_disk) == 2 and "error: /ro/out.json: Permission denied" in capsys.readouterr().err
    assert _harness.cli(lambda argv: 0) == 0


def test_auto_backward_charges_trainable_towers():
    from negationclip.models import image_features, text_features, tiny_clip_bundle

    m = tiny_clip_bundle(seed=0).model
    for p in m.vision_model.parameters():
        p.requires_grad_(False)
    c = _harness.FlopCounter(m, auto_backward=True)
    ids = torch.randint(0, 1000, (2, 9))
    px = torch.randn(2, 3, 32, 32)
    image_features(m, px)  # frozen tower: forward only
    text_features(m, ids, torch.ones_like(ids))  # trains: forward + backward
    assert c.flops == _harness.vision_flops(m.config, 2) + 3 * _harness.text_flops(m.config, 2, 9)
    c.reset()
    with torch.no_grad():  # evaluation: forward only
        text_features(m, ids, torch.ones_like(ids))
    assert c.flops == _harness.text_flops(m.config, 2, 9)
    c.close()


def _fake_result(tmp_path: Path, name: str, value: float, **extra) -> None:
    d = {"benchmark": name, "note": "", "quick": False,
         "protocol": {"runs": 3, "warmup": 1, "order": "interleaved (A B A B ...)", "threads": 2, "device": "cpu",
                      "statistic": "median"},
         "peak": {"gflops": 100.0, "before": {"gflops": 100.0, "dtype": "float32"}, "after": {"gflops": 99.0}},
         "load": {"before": [0.5, 0.4, 0.3], "after": [1.9, 0.9, 0.5], "max_1min": 1.9, "samples_1min": [0.5, 1.9],
                  "busy_threshold": 2.5, "busy": False},
         "arms": {"a": {"label": "A", "seconds": {"median": 2.0, "min": 1.5, "max": 3.0, "runs": [1.5, 2.0, 3.0]},
                        "seconds_key": "seconds", "flops": 1.4e11, "gflops_per_s": 70.0, "fraction_of_peak": 0.7}},
         "ratios": [], "targets": [],
         "headline": {"what": "w", "value": value, "min": value - 1, "max": value + 1, "unit": "x"},
         "config": {"records": 30}, "machine": {"time_utc": "2026-11-30T07:00:00Z", "processor": "cpu", "cpu_count": 2,
                                               "torch": "2"}, **extra}
    (tmp_path / f"{name}.json").write_text(json.dumps(d))


def test_summary_readme_markers(tmp_path):
    res = tmp_path / "results"
    res.mkdir()
    _fake_result(res, "eval_speed", 2.5)
    _fake_result(res, "methods_negworld", 0.5, readme_table="| method | x |\n|---|---|\n| negationclip | 0.500 |")
    (res / "explore_speed.json").write_text(json.dumps({"benchmark": "explore_speed", "protocol": None}))  # old format
    readme = tmp_path / "README.md"
    before = ("intro <!-- bench:eval_speed -->1.2x (old)<!-- /bench --> and "
              "<!-- bench:explore_speed -->181 ms (kept)<!-- /bench -->.\n\n"
              "<!-- bench-table:methods_negworld -->\n| old | table |\n<!-- /bench-table -->\n\n"
              "<!-- bench-summary:start -->\nold table\n<!-- bench-summary:end -->\ntail\n")
    readme.write_text(before)
    assert summary.main(["--results", str(res), "--readme", str(readme)]) == 0
    text = readme.read_text()
    assert text.startswith("intro <!-- bench:eval_speed -->**2.5x** [1.5-3.5] (median of 3 interleaved runs, "
                           "2 threads; records 30; of the 100 GFLOP/s matmul peak: a 70%; load average 0.5 -> 1.9, "
                           "quiet)<!-- /bench --> and ")
    assert "<!-- bench:explore_speed -->181 ms (kept)<!-- /bench -->" in text  # no protocol result: untouched
    assert "<!-- bench-table:methods_negworld -->\n| method | x |\n|---|---|\n| negationclip | 0.500 |\n" \
           "<!-- /bench-table -->" in text and "| old | table |" not in text
    assert "old table" not in text and "| eval_speed (3 runs" in text and text.endswith("<!-- bench-summary:end -->\ntail\n")
    assert "not on the protocol" in text and "explore_speed.json" in text
    # idempotent: a second pass changes nothing
    assert summary.main(["--results", str(res), "--readme", str(readme)]) == 0
    assert readme.read_text() == text
    # the headline's "beside" text leads the phrase
    _fake_result(res, "eval_speed", 2.5, **{"headline": {"what": "w", "value": 3.0, "min": 2.0, "max": 4.0,
                                                          "unit": "ms", "beside": "worst 9 ms"}})
    assert summary.main(["--results", str(res), "--readme", str(readme)]) == 0
    assert "<!-- bench:eval_speed -->**3 ms** [2-4] (worst 9 ms; median of 3" in readme.read_text()


def test_readme_markers_name_real_benchmarks():
    """Every figure marker in the README belongs to a script here, so summary.py can refresh it."""
    import re

    text = (BENCH.parent / "README.md").read_text()
    names = re.findall(r"<!-- bench:(\w+) -->", text)
    assert len(names) == text.count("<!-- /bench -->") and names
    tables = re.findall(r"<!-- bench-table:(\w+) -->", text)
    assert len(tables) == text.count("<!-- /bench-table -->")
    known = set(SCRIPTS) | {"generate_replicas"}  # generate_throughput also writes that one
    assert set(names) | set(tables) <= known
    assert {"explore_speed", "preprocess"} <= set(names) and tables == ["methods_negworld"]
