"""The openai backend across several replicas of one model (vLLM behind several URLs):
least-busy dispatch, failover when a replica dies mid-run, no record lost or doubled."""

import threading

import pytest

from negationclip.generate import BackendOptions, read_ledger, read_records, run_p1
from negationclip.generate.backends.base import ChatRequest
from negationclip.generate.backends.openai_compat import OpenAIChat, split_urls
from negationclip.generate.fakeserver import FakeOpenAIServer
from negationclip.utils import NegationClipError


def _opts(urls, **kw):
    base = dict(model="tiny", url=urls, concurrency=2, timeout=2.0, max_retries=3,
                backoff=0.01, max_consecutive_failures=3)
    base.update(kw)
    return BackendOptions("openai", **base)


def _ids(path):
    return [r.id for r in read_records(path)]


def test_split_urls():
    assert split_urls("http://a/v1/, http://b/v1") == ["http://a/v1", "http://b/v1"]
    assert split_urls(["http://a/v1", "http://a/v1,http://c/v1"]) == ["http://a/v1", "http://c/v1"]
    with pytest.raises(NegationClipError):
        split_urls(" , ")


def test_requests_spread_over_replicas():
    servers = [FakeOpenAIServer(latency=0.02) for _ in range(4)]
    for s in servers:
        s.__enter__()
    try:
        chat = OpenAIChat([s.url for s in servers], "m", concurrency=2, backoff=0.01)
        reqs = [ChatRequest([{"role": "user", "content": f"Name one object {i}"}])
                for i in range(80)]
        res = chat.chat(reqs)
        chat.close()
    finally:
        for s in servers:
            s.__exit__(None, None, None)
    assert all(r.text for r in res) and len(res) == 80
    counts = [s.count for s in servers]
    assert sum(counts) == 80 and min(counts) >= 10, counts  # every replica took a share
    assert [st["ok"] for st in chat.replica_stats()] == counts


def test_replica_killed_mid_run_loses_and_doubles_nothing(train, tmp_path):
    # reference: one healthy server
    with FakeOpenAIServer() as ref:
        run_p1(train["captions"], tmp_path / "ref.jsonl", instances=train["instances"],
               rewriter=_opts(ref.url), progress=False, chunk_size=8)
    servers = [FakeOpenAIServer(latency=0.005) for _ in range(3)]
    for s in servers:
        s.__enter__()
    victim = servers[1]
    killed = threading.Event()

    def kill_later():
        while victim.count < 5:
            threading.Event().wait(0.005)
        victim.__exit__(None, None, None)  # connections refused from now on
        killed.set()

    t = threading.Thread(target=kill_later, daemon=True)
    t.start()
    try:
        out = tmp_path / "multi.jsonl"
        summary = run_p1(train["captions"], out, instances=train["instances"],
                         rewriter=_opts([s.url for s in servers]), progress=False, chunk_size=8)
    finally:
        t.join(5)
        for s in servers:
            if s is not victim:
                s.__exit__(None, None, None)
    assert killed.is_set()
    assert summary["items_error"] == 0
    ids = _ids(out)
    assert len(ids) == len(set(ids))  # nothing doubled
    assert ids == _ids(tmp_path / "ref.jsonl")  # nothing lost: same records as one server
    assert [r.negated for r in read_records(out)] == \
        [r.negated for r in read_records(tmp_path / "ref.jsonl")]
    _, led = read_ledger(out)
    assert all(e["status"] == "done" for e in led.values())
    assert servers[0].count > 0 and servers[2].count > 0


def test_all_replicas_dead_is_a_clear_error(train, tmp_path):
    o = _opts("http://127.0.0.1:9/v1,http://127.0.0.1:7/v1", timeout=0.3, max_retries=1,
              max_consecutive_failures=2)
    with pytest.raises(NegationClipError, match="all 2 servers"):
        run_p1(train["captions"], tmp_path / "x.jsonl", instances=train["instances"],
               rewriter=o, progress=False)


def test_rate_limits_do_not_drop_a_replica():
    # 429 on the first 6 attempts: alive but busy; with 2 consecutive-failure tolerance the
    # replica must not be dropped, since each request still ends answered
    with FakeOpenAIServer(script=lambda n, b: ("status", 429) if n < 6 else None) as srv:
        chat = OpenAIChat(srv.url, "m", concurrency=1, backoff=0.001, max_retries=8,
                          max_consecutive_failures=2)
        res = chat.chat([ChatRequest([{"role": "user", "content": "hi"}]) for _ in range(3)])
        chat.close()
    assert all(r.text for r in res)
    assert chat.replica_stats()[0]["dead"] is None


def test_cli_takes_several_urls(train, tmp_path):
    from negationclip.cli import main

    with FakeOpenAIServer() as a, FakeOpenAIServer() as b:
        rc = main(["generate", "p1", "--captions", str(train["captions"]), "--instances",
                   str(train["instances"]), "--rewriter", "openai", "--rewriter-model", "m",
                   "--rewriter-url", a.url, "--rewriter-url", b.url, "--limit", "12",
                   "--concurrency", "2", "--out", str(tmp_path / "c.jsonl")])
        assert rc == 0 and a.count > 0 and b.count > 0
