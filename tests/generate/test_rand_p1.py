"""Rand-P1 with an LLM proposer sends the paper's prompt, verbatim (NegationCLIP
``src/data_generation.py``, ``get_candidate_object`` with ``use_random=True``: l.94-105)."""

import threading

import pytest

from negationclip.generate import BackendOptions, read_ledger, read_records, run_p1
from negationclip.generate.fakeserver import FakeOpenAIServer
from negationclip.utils import NegationClipError

# written from the released file, not from the package
RELEASED_RANDOM = [
    {"role": "system", "content": "You are a helpful chatbot that answers with only one word."},
    {"role": "user", "content": "Name a random object."},
]


def _opts(srv):
    return BackendOptions("openai", model="tiny", url=srv.url, concurrency=4, timeout=5.0,
                          max_retries=1, backoff=0.01, api_key_env="NEGCLIP_TEST_KEY")


def _recording_server():
    bodies, lock = [], threading.Lock()

    def script(n, body):
        with lock:
            bodies.append(body)
        return None

    return FakeOpenAIServer(script=script), bodies


@pytest.mark.parametrize("source", ["auto", "llm"])
def test_llm_rand_p1_sends_the_released_prompt(train, tmp_path, source):
    srv, bodies = _recording_server()
    out = tmp_path / "r.jsonl"
    with srv:
        o = _opts(srv)
        run_p1(train["captions"], out, images=train["images"], proposer=o, verifier=o,
               rewriter=o, random_objects=True, random_source=source, limit=12, progress=False)
    asked = [b for b in bodies if b["messages"] == RELEASED_RANDOM]
    _, led = read_ledger(out)
    assert len(led) == 12 and len(asked) == 12  # one call per caption, as in the released loop
    # the paper's sampling (Llama 3: temperature 0.6, top-p 0.9)
    assert all(b["temperature"] == 0.6 and b["top_p"] == 0.9 for b in asked)
    # no other proposer prompt was sent (the contextual one names the caption)
    assert not any("NOT mentioned" in str(b["messages"][0]["content"]) for b in bodies)
    recs = read_records(out)
    # the fake server's answers as the released code keeps them (generate_with_llama l.74:
    # .strip().rstrip('.'), case untouched)
    answers = {"Umbrella", "Giraffe", "kite", "Toaster", "surfboard"}
    assert recs and all(r.pipeline == "Rand-P1" and r.object in answers for r in recs)
    assert all(r.backends["proposer"]["backend"] == "openai" for r in recs)


def test_uniform_categories_is_an_explicit_option(train, tmp_path):
    srv, bodies = _recording_server()
    out = tmp_path / "u.jsonl"
    with srv:
        o = _opts(srv)
        run_p1(train["captions"], out, images=train["images"], proposer=o, verifier=o,
               rewriter=o, random_objects=True, random_source="categories", limit=12,
               progress=False)
    assert bodies and not any(b["messages"] == RELEASED_RANDOM for b in bodies)
    _, led = read_ledger(out)
    assert all(e["calls"].get("proposer", 0) == 0 for e in led.values())


def test_llm_source_needs_an_llm_proposer(train, tmp_path):
    with pytest.raises(NegationClipError, match="random-source llm"):
        run_p1(train["captions"], tmp_path / "x.jsonl", instances=train["instances"],
               random_objects=True, random_source="llm", progress=False)
