"""Two writers on one --out: one is refused (naming the holder); resume and merge drop
duplicate record ids and say how many."""

import json
import os
import subprocess
import sys
import time

from negationclip.cli import main
from negationclip.generate.fakeserver import FakeOpenAIServer
from negationclip.utils import read_jsonl


def _cli(train, srv, out, *extra):
    return [sys.executable, "-m", "negationclip.cli", "generate", "p1",
            "--captions", str(train["captions"]), "--instances", str(train["instances"]),
            "--rewriter", "openai", "--rewriter-model", "tiny", "--rewriter-url", srv.url,
            "--concurrency", "1", "--chunk-size", "2", "--out", str(out), *extra]


def test_two_concurrent_writers_one_is_refused_and_nothing_is_duplicated(train, tmp_path):
    env = dict(os.environ, NEGATIONCLIP_NO_PROGRESS="1")
    out = tmp_path / "p1.jsonl"
    # a slow server keeps the first writer busy (about 60 s of work) while the second starts
    with FakeOpenAIServer(latency=0.5) as srv:
        first = subprocess.Popen(_cli(train, srv, out, "--limit", "120"), env=env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            ledger = tmp_path / "p1.jsonl.ledger.jsonl"
            deadline = time.time() + 120
            while time.time() < deadline and len(read_jsonl(ledger)) < 2:
                time.sleep(0.05)
            second = subprocess.run(_cli(train, srv, out, "--limit", "120", "--resume"), env=env,
                                    capture_output=True, text=True, timeout=300)
            assert first.poll() is None, "the first writer finished before the second started"
        finally:
            first.kill()
            first.wait()
    assert second.returncode == 2, second.stdout + second.stderr
    assert f"pid {first.pid} on " in second.stderr and "Traceback" not in second.stderr
    ids = [r["id"] for r in read_jsonl(out)]
    assert len(ids) == len(set(ids))


def _dup_file(train, tmp_path, capsys):
    out = tmp_path / "p1.jsonl"
    assert main(["generate", "p1", "--captions", str(train["captions"]), "--instances",
                 str(train["instances"]), "--limit", "12", "--out", str(out)]) == 0
    recs = read_jsonl(out)
    assert len(recs) >= 2
    # what two unlocked writers used to leave: every record twice
    out.write_text("".join(json.dumps(r) + "\n" for r in recs + recs))
    capsys.readouterr()
    return out, recs


def test_resume_drops_duplicate_records_and_counts_them(train, tmp_path, capsys):
    out, recs = _dup_file(train, tmp_path, capsys)
    assert main(["generate", "p1", "--captions", str(train["captions"]), "--instances",
                 str(train["instances"]), "--limit", "12", "--out", str(out), "--resume"]) == 0
    assert f"duplicates_dropped={len(recs)}" in capsys.readouterr().out
    assert read_jsonl(out) == recs


def test_merge_drops_duplicate_records_and_says_how_many(train, tmp_path, capsys):
    out, recs = _dup_file(train, tmp_path, capsys)
    merged = tmp_path / "merged.jsonl"
    assert main(["generate", "merge", str(out), str(out), "--out", str(merged)]) == 0
    # 2 inputs x (every record twice) = 4N records in, N kept
    assert f"({3 * len(recs)} duplicates dropped)" in capsys.readouterr().out
    assert read_jsonl(merged) == recs
