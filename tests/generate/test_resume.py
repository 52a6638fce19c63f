"""A run killed with SIGKILL midway and resumed equals an uninterrupted run, record for record."""

import json
import os
import signal
import subprocess
import sys
import time

from negationclip.generate import read_records, run_p1
from negationclip.generate.fakeserver import FakeOpenAIServer
from negationclip.utils import read_jsonl


def _cli(train, srv, out, *extra):
    return [sys.executable, "-m", "negationclip.cli", "generate", "p1",
            "--captions", str(train["captions"]), "--instances", str(train["instances"]),
            "--rewriter", "openai", "--rewriter-model", "tiny", "--rewriter-url", srv.url,
            "--concurrency", "1", "--chunk-size", "2", "--affirmed", "on",
            "--out", str(out), *extra]


def _lines(path):
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def test_sigkill_then_resume_equals_uninterrupted(train, tmp_path):
    env = dict(os.environ, NEGATIONCLIP_NO_PROGRESS="1")
    full, killed = tmp_path / "full.jsonl", tmp_path / "killed.jsonl"
    with FakeOpenAIServer(latency=0.003) as srv:
        subprocess.run(_cli(train, srv, full), check=True, env=env, capture_output=True, timeout=120)
        proc = subprocess.Popen(_cli(train, srv, killed), env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        ledger = tmp_path / "killed.jsonl.ledger.jsonl"
        deadline = time.time() + 60
        while time.time() < deadline and len(read_jsonl(ledger)) < 25:
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        done_at_kill = len(read_jsonl(ledger)) - 1
        total = len(read_jsonl(tmp_path / "full.jsonl.ledger.jsonl")) - 1
        assert 0 < done_at_kill < total, "the kill did not land midway"
        r = subprocess.run(_cli(train, srv, killed, "--resume"), env=env, capture_output=True,
                           text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        assert f"items_done_before={done_at_kill} " in r.stdout + " "
    a, b = _lines(full), _lines(killed)
    assert len(a) == len(b) > 20
    assert a == b  # same records, same order, no duplicate, nothing lost
    led = [e for e in read_jsonl(ledger) if e.get("type") == "item"]
    assert len({e["work_id"] for e in led}) == len(led) == total


def test_torn_item_is_redone_not_duplicated(train, tmp_path):
    out = tmp_path / "t.jsonl"
    run_p1(train["captions"], out, instances=train["instances"], progress=False, limit=12)
    ref = out.read_text()
    # simulate a kill after an item's records were written but before its ledger line,
    # plus half a line of the next record
    led = tmp_path / "t.jsonl.ledger.jsonl"
    lines = led.read_text().splitlines(keepends=True)
    led.write_text("".join(lines[:-1]))
    with open(out, "a") as f:
        f.write('{"id": "P1:99999#0", "work_')
    summary = run_p1(train["captions"], out, instances=train["instances"], progress=False,
                     limit=12, resume=True)
    assert summary["items"] == 1 and summary["items_done_before"] == 11
    assert out.read_text() == ref
    assert len({r.id for r in read_records(out)}) == len(read_records(out))


def test_existing_output_needs_resume_or_overwrite(train, tmp_path):
    import pytest
    from negationclip.utils import NegationClipError
    out = tmp_path / "e.jsonl"
    run_p1(train["captions"], out, instances=train["instances"], progress=False, limit=3)
    with pytest.raises(NegationClipError, match="--resume"):
        run_p1(train["captions"], out, instances=train["instances"], progress=False, limit=3)
    with pytest.raises(NegationClipError, match="different settings"):
        run_p1(train["captions"], out, instances=train["instances"], progress=False, limit=3,
               resume=True, candidates=2)
