"""The benchmark protocol (benchmarks/_harness.py) and the scripts' --quick smoke runs.

No timing is asserted: the scripts measure, these tests check the bookkeeping (FLOPs from
shapes against torch's own counter, medians and ratios from given per-run numbers, the busy
flag from given load averages, the JSON and the summary table)."""

import json
import sys
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCH))

import _harness  # noqa: E402
import summary  # noqa: E402


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def tiny_bundle():
    from negationclip.models import tiny_clip_bundle

    return tiny_clip_bundle(seed=0)


def test_flop_formulas_equal_torch_flop_counter(tiny_bundle):
    from negationclip.models import image_features, text_features

    m = tiny_bundle.model
    m.set_attn_implementation("eager")  # torch's counter sees attention as bmm (not SDPA on CPU)
    try:
        with FlopCounterMode(display=False) as fc:
            image_features(m, torch.randn(3, 3, 32, 32))
        assert _harness.vision_flops(m.config, 3) == fc.get_total_flops()
        ids = torch.randint(0, 1000, (5, 11))
        with FlopCounterMode(display=False) as fc:
            text_features(m, ids, torch.ones_like(ids))
        assert _harness.text_flops(m.config, 5, 11) == fc.get_total_flops()
        # the hooks see the shapes each forward really runs
        counter = _harness.FlopCounter(m)
        image_features(m, torch.randn(2, 3, 32, 32))
        text_features(m, ids[:, :7], torch.ones_like(ids[:, :7]))
        assert counter.flops == _harness.vision_flops(m.config, 2) + _harness.text_flops(m.config, 5, 7)
        assert counter.calls == {"vision": 1, "text": 1}
        counter.close()
    finally:
        m.set_attn_implementation("sdpa")


def test_vit_b32_figures():
    from negationclip.models import vit_b32_config

    c = vit_b32_config()
    assert 8.7e9 < _harness.vision_flops(c) < 8.9e9  # the "about 8.8 GFLOP"
    assert 5.9e9 < _harness.text_flops(c, 1, 77) < 6.0e9


@pytest.fixture
def fixed_machine(monkeypatch):
    monkeypatch.setattr(_harness, "matmul_peak", lambda *a, **k: {"gflops": 100.0, "n": 1, "reps": 1,
                                                                   "dtype": "float32", "threads": 1})
    loads = iter([[0.2, 0.1, 0.1]] * 3 + [[3.0, 1.0, 0.5]] + [[0.3, 0.2, 0.1]] * 10)
    monkeypatch.setattr(_harness, "load_average", lambda: next(loads))


def test_bench_interleaves_and_reports(fixed_machine, tmp_path):
    order = []
    a_ms, b_ms = iter([99, 40, 50, 60]), iter([99, 10, 30, 20])  # first of each: warm-up

    def arm(name, it):
        def run():
            order.append(name)
            return {"ms_per_step": next(it)}
        return run

    b = _harness.Bench("t", threads=1, runs=3)
    b.measure([_harness.Arm("a", arm("a", a_ms), "A", flops=1e9, seconds_key="ms_per_step"),
               _harness.Arm("b", arm("b", b_ms), "B", seconds_key="ms_per_step")])
    assert order == ["a", "b"] * 4
    b.conclude()
    r = b.ratio("a/b", "a", "b", key="ms_per_step")
    assert r["median_ratio"] == pytest.approx(50 / 20)
    assert (r["paired_min"], r["paired_max"]) == (pytest.approx(50 / 30), pytest.approx(4.0))
    b.target("fraction", b.arms["a"]["fraction_of_peak"], ">=", 0.7)
    out = b.write(tmp_path / "t.json")
    got = json.loads((tmp_path / "t.json").read_text())
    assert got["arms"]["a"]["ms_per_step"] == {"median": 50, "min": 40, "max": 60, "runs": [40, 50, 60]}
    assert got["arms"]["a"]["fraction_of_peak"] == pytest.approx(1e9 / 0.05 / 1e9 / 100)  # 20 of 100
    assert got["arms"]["b"]["fraction_of_peak"] is None  # no FLOPs known
    assert got["targets"][0]["met"] is False
    # one sampled 1-minute load average (3.0) above max(threads, 2) + 0.5: flagged busy
    assert got["load"]["busy"] is True and got["load"]["max_1min"] == 3.0
    assert out["protocol"]["order"].startswith("interleaved")


def test_quiet_run_is_not_busy(monkeypatch, tmp_path):
    monkeypatch.setattr(_harness, "matmul_peak", lambda *a, **k: {"gflops": 1.0})
    monkeypatch.setattr(_harness, "load_average", lambda: [1.9, 1.0, 1.0])  # our own 2 threads
    b = _harness.Bench("q", threads=2, runs=1)
    b.measure([_harness.Arm("a", lambda: None)])
    assert b.conclude().load["busy"] is False


def test_summary_table(fixed_machine, tmp_path, capsys):
    assert summary.main(["--results", str(tmp_path)]) == 2  # nothing there yet
    b = _harness.Bench("x", threads=1, runs=1)
    b.measure([_harness.Arm("a", lambda: {"v": 2.0}), _harness.Arm("b", lambda: {"v": 1.0})])
    b.conclude()
    r = b.ratio("a/b", "a", "b", key="v")
    b.set_headline("a over b", r["median_ratio"], r["paired_min"], r["paired_max"], "x")
    b.write(tmp_path / "x.json")
    assert summary.main(["--results", str(tmp_path)]) == 0
    md = (tmp_path / "summary.md").read_text()
    assert "a over b: **2x**" in md and "**busy**" in md
    assert json.loads((tmp_path / "summary.json").read_text())["benchmarks"][0]["benchmark"] == "x"
    readme = tmp_path / "README.md"
    readme.write_text("Speed: <!-- bench:x -->old<!-- /bench -->.\n<!-- bench-summary:start -->\nold\n"
                      "<!-- bench-summary:end -->\nrest\n")
    assert summary.main(["--results", str(tmp_path), "--readme", str(readme)]) == 0
    text = readme.read_text()
    assert "Speed: <!-- bench:x -->**2x** [2-2] (median of 1 interleaved runs" in text
    assert "busy machine)<!-- /bench -->." in text and "old" not in text and text.endswith("end -->\nrest\n")


def test_replica_arms_kill_a_server_and_lose_nothing(tmp_path):
    mod = __import__("generate_throughput")
    out = tmp_path / "rep.json"
    assert mod.main(["--quick", "--only-replicas", "--threads", "1", "--replicas-out", str(out)]) == 0
    got = json.loads(out.read_text())
    checks = got["record_checks"]
    many = [c for c in checks if c["kill"]]
    assert many and all(c["killed"] for c in many)  # a server died in every 4-server run
    assert all(c["lost"] == c["doubled"] == c["unexpected"] == 0 and c["records"] > 0 for c in checks)
    assert got["targets"][1]["met"] is True
