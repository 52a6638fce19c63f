"""The openai backend against a scripted OpenAI-compatible server on 127.0.0.1."""

import json
import shutil

import pytest

from negationclip.generate import BackendOptions, read_ledger, read_records, run_p1, run_stats
from negationclip.generate.fakeserver import FakeOpenAIServer
from negationclip.utils import NegationClipError


def _opts(srv, **kw):
    base = dict(model="tiny", url=srv.url, concurrency=4, timeout=0.4, max_retries=3,
                backoff=0.01, max_consecutive_failures=50, api_key_env="NEGCLIP_TEST_KEY")
    base.update(kw)
    return BackendOptions("openai", **base)


def _has_image(body):
    c = body["messages"][-1]["content"]
    return isinstance(c, list)


def test_retries_timeouts_and_garbage(train, tmp_path):
    seen_verify = []

    def script(n, body):
        if n in (0, 1, 2):
            return ("status", 429)
        if n == 4:
            return ("sleep", 0.8)  # longer than the client timeout: retried
        if n == 6:
            return ("status", 503)
        if _has_image(body):
            seen_verify.append(n)
            if len(seen_verify) % 3 == 0:
                return ("text", "purple monkey dishwasher")
        return None

    out = tmp_path / "o.jsonl"
    with FakeOpenAIServer(script=script) as srv:
        o = _opts(srv)
        summary = run_p1(train["captions"], out, images=train["images"], proposer=o,
                         verifier=o, rewriter=o, limit=30, progress=False, chunk_size=8)
        assert srv.statuses[429] == 3 and srv.statuses[503] == 1
    header, led = read_ledger(out)
    assert len(led) == 30 and all(e["status"] == "done" for e in led.values())
    s = run_stats([out])
    assert s["outcomes"]["verify_unparseable"] > 0  # garbage is counted, not taken as "no"
    recs = read_records(out)
    assert summary["records"] == len(recs) == s["outcomes"]["accepted"]
    garbage = {tuple(json.loads(c["k"])[1:]) for c in
               map(json.loads, (tmp_path / "o.jsonl.vcache.jsonl").read_text().splitlines())
               if c["v"] == "unparseable"}
    assert garbage and not any((r.image_id, r.object) in garbage for r in recs)
    assert all(r.backends["verifier"] == {"backend": "openai", "model": "tiny",
                                          "prompts": "released"} for r in recs)
    assert all(r.prompt_version == "released-v1" for r in recs)


def test_api_key_is_sent_but_never_written(train, tmp_path, monkeypatch, capsys):
    secret = "sk-test-0123456789abcdef"
    monkeypatch.setenv("NEGCLIP_TEST_KEY", secret)
    out = tmp_path / "k.jsonl"
    with FakeOpenAIServer() as srv:
        o = _opts(srv)
        run_p1(train["captions"], out, instances=train["instances"], rewriter=o, limit=5,
               progress=False)
        assert srv.auth_headers and all(h == f"Bearer {secret}" for h in srv.auth_headers)
    captured = capsys.readouterr()
    for path in tmp_path.iterdir():
        assert secret not in path.read_text()
    assert secret not in captured.out + captured.err


def test_dead_server_fails_the_run_clearly(train, tmp_path):
    with FakeOpenAIServer(script=lambda n, b: ("status", 500)) as srv:
        o = _opts(srv, max_retries=1, max_consecutive_failures=3)
        with pytest.raises(NegationClipError, match="consecutive requests failed"):
            run_p1(train["captions"], tmp_path / "d.jsonl", instances=train["instances"],
                   rewriter=o, progress=False)
    # nothing is lost: the run can be resumed once the server is back
    with FakeOpenAIServer() as srv:
        summary = run_p1(train["captions"], tmp_path / "d.jsonl", instances=train["instances"],
                         rewriter=_opts(srv), progress=False, resume=True)
    assert summary["items_error"] == 0 and summary["records"] > 0


def test_refused_connection_is_a_clear_error(train, tmp_path):
    o = BackendOptions("openai", model="m", url="http://127.0.0.1:9/v1", timeout=0.3,
                       max_retries=0, backoff=0.01, max_consecutive_failures=2)
    with pytest.raises(NegationClipError, match="127.0.0.1:9"):
        run_p1(train["captions"], tmp_path / "x.jsonl", instances=train["instances"],
               rewriter=o, progress=False)


def test_missing_and_truncated_images_are_skipped_and_listed(train, tmp_path):
    imgs = tmp_path / "images"
    shutil.copytree(train["images"], imgs)
    files = sorted(p.name for p in imgs.iterdir())
    (imgs / files[0]).unlink()
    data = (imgs / files[1]).read_bytes()
    (imgs / files[1]).write_bytes(data[: len(data) // 2])
    out = tmp_path / "m.jsonl"
    with FakeOpenAIServer() as srv:
        o = _opts(srv)
        run_p1(train["captions"], out, images=imgs, proposer=o, verifier=o, rewriter=o,
               progress=False)
    s = run_stats([out])
    recs = read_records(out)
    from negationclip.data.coco import load_coco_captions
    used = {im.file_name for im in load_coco_captions(train["captions"]).images.values()}
    bad = {files[0], files[1]} & used
    assert bad and s["outcomes"]["image_missing"] > 0
    assert {p.split("/")[-1].split(":")[0] for p in s["missing_images"]} >= bad or \
        all(any(b in m for m in s["missing_images"]) for b in bad)
    assert not any(r.image_file in bad for r in recs)


def test_p2_through_the_openai_rewriter(train, tmp_path):
    from negationclip.generate import run_p2

    out = tmp_path / "p2.jsonl"
    with FakeOpenAIServer() as srv:
        summary = run_p2(train["questions"], train["annotations"], train["captions"], out,
                         rewriter=_opts(srv), affirmed=True, progress=False)
    recs = read_records(out)
    assert recs and summary["calls_rewriter"] == 2 * summary["items"]  # + the affirmed call
    # the released code has no P2 prompt: P2 speaks negationclip's
    assert all(r.backends == {"rewriter": {"backend": "openai", "model": "tiny",
                                           "prompts": "negationclip"}} for r in recs)
    assert all(r.prompt_version == "v1" for r in recs)
    assert all(r.affirmed is None or " not " not in f" {r.affirmed} " for r in recs)
    s = run_stats([out])
    assert s["outcomes"]["accepted"] == len(recs)
    # questions the "model" could not rewrite are counted, not dropped silently
    assert sum(s["outcomes"].values()) == summary["items"]
