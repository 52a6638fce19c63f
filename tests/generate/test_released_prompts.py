"""The LLM roles speak the released NegationCLIP code by default.

Everything "released" here is a port written in this file from parkquasar/NegationCLIP
``src/data_generation.py`` (not from the package):
- ``generate_with_llama`` l.52-74: sampling (max_new_tokens=256, do_sample, temperature 0.6,
  top_p 0.9) and the answer rule ``.strip().rstrip('.')``;
- ``get_candidate_object`` l.78-107: the proposer's system and user turns;
- ``is_object_in_image`` l.110-144: the LLaVA prompt, max_new_tokens=10 (greedy), and the
  verdict ``"yes" in response.split("ASSISTANT:")[-1].strip().lower()``;
- ``generate_negated_caption`` l.147-182: the rewriter's system turn, two few-shot pairs and
  user turn;
- ``main`` l.212-220: per caption, propose, verify, rewrite when the answer has no "yes".
Over an OpenAI-compatible chat API the port sends these messages with the same sampling
(greedy = temperature 0, top-p 1.0); the LLaVA prompt's Vicuna preamble becomes the system
turn and ``USER: <image>\\n<question>`` a user turn holding the image, then the question.
"""

import base64
import io
import json
import threading
from collections import Counter

import numpy as np
import pytest
from PIL import Image

from negationclip.data.coco import load_coco_captions
from negationclip.generate import BackendOptions, read_ledger, read_records, run_p1
from negationclip.generate.backends.base import ProposeTask, RewriteTask, VerifyTask
from negationclip.generate.backends.llm import LLMProposer, LLMRewriter, LLMVerifier
from negationclip.generate.backends.openai_compat import OpenAIChat
from negationclip.generate.fakeserver import FakeOpenAIServer

MODEL = "tiny"


# --- the port (src/data_generation.py) --------------------------------------------------------
def port_messages_propose(caption):  # l.97-105
    prompt = (f"Name an object that is not mentioned in the caption, but is "
              f"likely to be in the image corresponding to the caption '{caption}'.")
    return [{"role": "system", "content": "You are a helpful chatbot that answers with only one word."},
            {"role": "user", "content": prompt}]


def port_messages_rewrite(original_caption, absent_object):  # l.162-180
    examples = [
        {"caption": "a woman riding a horse in a field", "object": "hat",
         "updated_caption": "a woman not wearing a hat riding a horse in a field"},
        {"caption": "a child playing with a ball in the park", "object": "tree",
         "updated_caption": "a child playing with a ball in the park with no tree"},
    ]
    messages = [{"role": "system", "content": "You are a helpful chatbot that generates a concise caption."}]
    for ex in examples:
        messages.append({"role": "user", "content": f"Add the absence of the {ex['object']} to the caption '{ex['caption']}'."})
        messages.append({"role": "assistant", "content": ex["updated_caption"]})
    messages.append({"role": "user", "content": f"Add the absence of the {absent_object} to the caption '{original_caption}'."})
    return messages


def port_llava_prompt(object_name):  # l.126-130, sent as is to the LLaVA processor
    return ("A chat between a curious human and an artificial intelligence assistant. "
            "The assistant gives helpful, detailed, and polite answers to the human's questions. "
            f"USER: <image>\nIs there {object_name} in this image? Answer only with 'yes' or 'no'. ASSISTANT:")


def port_body_llama(messages):  # generate_with_llama's sampling, l.63-71
    return {"model": MODEL, "messages": messages, "max_tokens": 256, "temperature": 0.6, "top_p": 0.9}


def port_body_llava(object_name, image="<IMAGE>"):  # l.126-138 over a chat API
    preamble, rest = port_llava_prompt(object_name).split(" USER: ")
    question = rest.split("<image>\n", 1)[1].rsplit(" ASSISTANT:", 1)[0]
    return {"model": MODEL, "max_tokens": 10, "temperature": 0.0, "top_p": 1.0,
            "messages": [{"role": "system", "content": preamble},
                         {"role": "user", "content": [{"type": "image_url", "image_url": {"url": image}},
                                                      {"type": "text", "text": question}]}]}


def port_answer(text):  # generate_with_llama l.73-74 (after decoding)
    return text.strip().rstrip(".")


def port_present(response):  # is_object_in_image l.140-144
    answer = response.split("ASSISTANT:")[-1].strip().lower()
    return "yes" in answer


# --- helpers ----------------------------------------------------------------------------------
def _recording(answer=None):
    bodies, lock = [], threading.Lock()

    def script(n, body):
        with lock:
            bodies.append(json.loads(json.dumps(body)))
        text = answer(body) if answer else None
        return None if text is None else ("text", text)  # None: the fake server's own answer

    return FakeOpenAIServer(script=script), bodies


def _pixels_from_data_url(url):
    head, data = url.split(",", 1)
    assert head.startswith("data:image/") and head.endswith(";base64")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB"))


def _without_image(body, path=None):
    """``body`` with its image replaced by a placeholder; checks the pixels against ``path``."""
    body = json.loads(json.dumps(body))
    for m in body["messages"]:
        if isinstance(m["content"], list):
            for part in m["content"]:
                if part.get("type") == "image_url":
                    if path is not None:
                        want = np.asarray(Image.open(path).convert("RGB"))  # l.125, as LLaVA sees it
                        assert np.array_equal(_pixels_from_data_url(part["image_url"]["url"]), want)
                    part["image_url"]["url"] = "<IMAGE>"
    return body


def _key(body):
    return json.dumps(body, sort_keys=True)


def _role_of(body):
    msgs = body["messages"]
    if isinstance(msgs[-1]["content"], list):
        return "verifier"
    return "rewriter" if msgs[0]["content"].endswith("concise caption.") else "proposer"


def _chat(srv, send_seed=False):
    return OpenAIChat(srv.url, MODEL, concurrency=2, timeout=5.0, max_retries=0,
                      api_key_env="NEGCLIP_TEST_KEY", send_seed=send_seed)


def _opts(srv, **kw):
    return BackendOptions("openai", model=MODEL, url=srv.url, concurrency=4, timeout=5.0,
                          max_retries=1, backoff=0.01, api_key_env="NEGCLIP_TEST_KEY", **kw)


# --- each role's request body equals the port's ------------------------------------------------
@pytest.mark.parametrize("send_seed", [False, True])
def test_role_requests_equal_the_released_port(train, send_seed):
    caps = load_coco_captions(train["captions"])
    cap = caps.captions[0]
    path = train["images"] / caps.images[cap.image_id].file_name
    srv, bodies = _recording()
    with srv:
        chat = _chat(srv, send_seed)
        try:
            LLMProposer(chat).propose([ProposeTask(cap.caption, 1, seed=7)])
            LLMVerifier(chat).verify([VerifyTask(cap.image_id, str(path), "Umbrella")])
            LLMRewriter(chat).rewrite([RewriteTask(cap.caption, obj="Umbrella", seed=9)])
        finally:
            chat.close()
    assert len(bodies) == 3
    seeds = [b.pop("seed", None) for b in bodies]
    assert seeds == ([7, 0, 9] if send_seed else [None, None, None])  # our only addition, optional
    assert bodies[0] == port_body_llama(port_messages_propose(cap.caption))
    assert _without_image(bodies[1], path) == port_body_llava("Umbrella")
    assert bodies[2] == port_body_llama(port_messages_rewrite(cap.caption, "Umbrella"))


def test_pipeline_sends_what_the_released_loop_sends(train, tmp_path):
    """A P1 run on the fake server: every body equals the port's for its caption/image, in the
    numbers the released loop sends them (one proposal and, unless the answer has "yes", one
    rewrite per caption; one verification per distinct (image, object): answers are cached)."""
    objects = ["Umbrella.", "lamp", "Coffee mug.", " Vase. "]

    def answer(body):
        role = _role_of(body)
        last = body["messages"][-1]["content"]
        if role == "proposer":
            return objects[sum(map(ord, last)) % len(objects)]
        if role == "verifier":
            return "Yes." if "lamp" in last[1]["text"] else "No"
        return None  # the fake server's default rewrite

    srv, bodies = _recording(answer)
    out = tmp_path / "p1.jsonl"
    with srv:
        o = _opts(srv, send_seed=False)
        summary = run_p1(train["captions"], out, images=train["images"], proposer=o, verifier=o,
                         rewriter=o, limit=24, progress=False)
    caps = load_coco_captions(train["captions"])
    from negationclip.generate import p1_items
    items = p1_items(caps, train["images"])[:24]
    # the port's loop over the same captions and the same model answers
    want = {"proposer": Counter(), "verifier": set(), "rewriter": Counter()}
    want_records = {}
    for it in items:
        msgs = port_messages_propose(it.caption)
        obj = port_answer(answer({"messages": msgs}))
        want["proposer"][_key(port_body_llama(msgs))] += 1
        v = port_body_llava(obj)
        want["verifier"].add((it.image_path, _key(v)))
        if not port_present(answer(v)):
            r = port_messages_rewrite(it.caption, obj)
            want["rewriter"][_key(port_body_llama(r))] += 1
            want_records[it.work_id] = (obj, port_answer(srv.answer({"messages": r})))
    got = {"proposer": Counter(), "verifier": [], "rewriter": Counter()}
    paths = {it.image_id: it.image_path for it in items}
    for b in bodies:
        role = _role_of(b)
        if role == "verifier":
            # which image: the one whose pixels the body carries
            url = b["messages"][-1]["content"][0]["image_url"]["url"]
            px = _pixels_from_data_url(url)
            path = next(p for p in paths.values()
                        if np.array_equal(px, np.asarray(Image.open(p).convert("RGB"))))
            got["verifier"].append((path, _key(_without_image(b, path))))
        else:
            got[role][_key(b)] += 1
    assert got["proposer"] == want["proposer"]
    assert len(got["verifier"]) == len(set(got["verifier"])) and set(got["verifier"]) == want["verifier"]
    assert got["rewriter"] == want["rewriter"]
    recs = read_records(out)
    assert {r.work_id: (r.object, r.negated) for r in recs} == want_records
    assert summary["records"] == len(want_records) > 0
    assert all(r.prompt_version == "released-v1" and r.backends["proposer"]["prompts"] == "released"
               for r in recs)


# --- answers: the released format parses as the port does; garbage is a counted skip ----------
PROPOSALS = ["Umbrella.", "umbrella", " Lamp. ", "Coffee mug.", "traffic light", "Fire hydrant..",
             "T-shirt", "TV.", "'kite'"]
VERDICTS = ["Yes", "No", "yes.", "No.", " NO", "Yes, there is.", "No, there is no hat.",
            "no, yes", "Nope.", "There is no hat in this image."]
REWRITES = ["a man with no hat riding a horse.", "a man riding a horse with no hat",
            "A man not wearing a hat riding a horse..", "'a man riding a horse with no hat'"]
GARBAGE_PROPOSALS = ["", "   ", "I'm sorry, but I cannot name an object without more context.",
                     "Umbrella\nLamp", "The object is likely to be a small wooden bench."]
GARBAGE_VERDICTS = ["purple monkey dishwasher", "", "Maybe.", "I cannot tell from this image.",
                    "Yesterday it was."]
GARBAGE_REWRITES = ["", "  ", "Here is the updated caption:\n\na man riding a horse with no hat"]


def _answers(role_call, texts):
    it = iter(texts)
    lock = threading.Lock()

    def script(n, body):
        with lock:
            return ("text", next(it))

    with FakeOpenAIServer(script=script) as srv:
        chat = _chat(srv)
        try:
            return role_call(chat, len(texts))
        finally:
            chat.close()


def _one_by_one(make, texts):
    return [_answers(make, [t])[0] for t in texts]


def test_released_answers_parse_as_the_port(train):
    img = str(next(iter(sorted(train["images"].iterdir()))))
    props = _one_by_one(lambda c, n: LLMProposer(c).propose([ProposeTask("a cat", 1)]), PROPOSALS)
    assert [p.objects for p in props] == [[port_answer(t)] for t in PROPOSALS]
    ver = _one_by_one(lambda c, n: LLMVerifier(c).verify([VerifyTask(1, img, "hat")]), VERDICTS)
    assert [v.verdict for v in ver] == ["present" if port_present(t) else "absent" for t in VERDICTS]
    rew = _one_by_one(lambda c, n: LLMRewriter(c).rewrite([RewriteTask("a man riding a horse", obj="hat")]),
                      REWRITES)
    assert [r.negated for r in rew] == [port_answer(t) for t in REWRITES]


def test_garbage_answers_are_skips_where_the_port_keeps_them(train):
    img = str(next(iter(sorted(train["images"].iterdir()))))
    props = _one_by_one(lambda c, n: LLMProposer(c).propose([ProposeTask("a cat", 1)]), GARBAGE_PROPOSALS)
    assert all(p.objects == [] and p.calls == 1 and p.error is None for p in props)
    ver = _one_by_one(lambda c, n: LLMVerifier(c).verify([VerifyTask(1, img, "hat")]), GARBAGE_VERDICTS)
    assert [v.verdict for v in ver] == ["unparseable"] * len(GARBAGE_VERDICTS)
    # the released loop reads all but "Yesterday" as "absent" and would rewrite the caption
    assert [port_present(t) for t in GARBAGE_VERDICTS] == [False] * 4 + [True]
    rew = _one_by_one(lambda c, n: LLMRewriter(c).rewrite([RewriteTask("a man riding a horse", obj="hat")]),
                      GARBAGE_REWRITES)
    assert all(r.negated is None and r.error is None for r in rew)


def test_garbage_in_a_run_is_counted(train, tmp_path):
    """Each role answers garbage for some captions: every such candidate is counted in the
    ledger under its outcome and none becomes a record."""
    def answer(body):
        role = _role_of(body)
        last = body["messages"][-1]["content"]
        text = last[1]["text"] if role == "verifier" else last
        h = sum(map(ord, text))
        if role == "proposer":
            return GARBAGE_PROPOSALS[h % 5] if h % 3 == 0 else f"Object{h % 4}."
        if role == "verifier":
            return GARBAGE_VERDICTS[h % 4] if "Object1" in text else "No"
        if "Object2" in text:
            return GARBAGE_REWRITES[h % 3]
        return None

    srv, bodies = _recording(answer)
    out = tmp_path / "g.jsonl"
    with srv:
        o = _opts(srv)
        summary = run_p1(train["captions"], out, images=train["images"], proposer=o, verifier=o,
                         rewriter=o, limit=60, progress=False)
    _, led = read_ledger(out)
    outcomes = Counter()
    for e in led.values():
        outcomes.update(e["outcomes"])
        assert e["status"] == "done"
    n_prop_garbage = sum(_role_of(b) == "proposer" and answer(b) in GARBAGE_PROPOSALS for b in bodies)
    assert outcomes["proposal_unparseable"] == n_prop_garbage > 0
    assert outcomes["verify_unparseable"] > 0 and outcomes["rewrite_unparseable"] > 0
    recs = read_records(out)
    assert all(r.object not in ("Object1", "Object2") for r in recs)
    assert sum(outcomes.values()) == len(led) == 60  # one candidate per caption, each accounted for
    assert summary["records"] == len(recs) == outcomes["accepted"] > 0


# --- the negationclip set stays an explicit option ----------------------------------------------
def test_negationclip_prompts_are_an_option(train, tmp_path):
    srv, bodies = _recording()
    out = tmp_path / "n.jsonl"
    with srv:
        o = _opts(srv)
        run_p1(train["captions"], out, images=train["images"], proposer=o, verifier=o,
               rewriter=o, limit=10, progress=False, prompts="negationclip")
    systems = {b["messages"][0]["content"] for b in bodies if b["messages"][0]["role"] == "system"}
    assert bodies and not any(s.startswith(("You are a helpful chatbot", "A chat between"))
                              for s in systems)
    assert any("numbered captions" in s for s in systems)  # grouped proposals, one call per image
    assert not any(s.startswith("You are given a caption of an image") for s in systems)
    recs = read_records(out)
    assert recs and all(r.prompt_version == "v1" and r.backends["rewriter"]["prompts"] == "negationclip"
                        for r in recs)


def test_grouped_proposals_need_the_negationclip_prompts(train, tmp_path):
    from negationclip.utils import NegationClipError

    with FakeOpenAIServer() as srv:
        o = _opts(srv)
        with pytest.raises(NegationClipError, match="--prompts negationclip"):
            run_p1(train["captions"], tmp_path / "x.jsonl", images=train["images"], proposer=o,
                   verifier=o, rewriter=o, limit=4, progress=False, propose_per="image")


# --- local models (hf): the released prompt strings and generate() arguments -----------------
class _Spy:
    """Wraps a model or processor, recording what ``generate`` / ``__call__`` receive."""

    def __init__(self, inner, answer_ids=None):
        self._inner, self.calls, self.answer_ids = inner, [], answer_ids

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def eval(self):
        self._inner.eval()
        return self

    def generate(self, **kw):
        self.calls.append(kw)
        if self.answer_ids is not None:  # answer at once (256 sampled tokens take a while)
            import torch
            ids = kw["input_ids"]
            return torch.cat([ids, torch.tensor([self.answer_ids] * len(ids))], dim=1)
        return self._inner.generate(**kw)

    def __call__(self, **kw):
        self.calls.append(kw)
        return self._inner(**kw)


def test_hf_roles_send_the_released_prompts(train):
    from negationclip.generate.backends.hf import HFChat
    from tests.generate.test_hf_backend import _llama, _llava, _tokenizer

    tok = _tokenizer()
    llama = _Spy(_llama(tok), answer_ids=tok.encode("hat", add_special_tokens=False) + [1])
    text = HFChat("tiny-llama", model=llama, tokenizer=tok, batch_size=1)
    caption = "a man riding a horse"
    LLMProposer(text).propose([ProposeTask(caption, 1)])
    LLMRewriter(text).rewrite([RewriteTask(caption, obj="hat")])
    for kw, msgs in zip(llama.calls, [port_messages_propose(caption), port_messages_rewrite(caption, "hat")]):
        # l.59-71: apply_chat_template(messages, add_generation_prompt=True), then sampling
        want = tok.apply_chat_template(msgs, add_generation_prompt=True, return_tensors="pt")
        want = want["input_ids"] if hasattr(want, "keys") else want
        assert kw["input_ids"].tolist() == want.tolist()
        assert (kw["max_new_tokens"], kw["do_sample"], kw["temperature"], kw["top_p"]) == (256, True, 0.6, 0.9)

    vmodel, proc = _llava()
    vmodel, proc = _Spy(vmodel), _Spy(proc)
    vision = HFChat("tiny-llava", vision=True, model=vmodel, processor=proc, batch_size=1)
    img = sorted(train["images"].iterdir())[0]
    LLMVerifier(vision).verify([VerifyTask(1, str(img), "Umbrella")])
    # l.126-138: the prompt string as is (no chat template), greedy, 10 new tokens
    assert proc.calls[-1]["text"] == [port_llava_prompt("Umbrella")]
    assert np.array_equal(np.asarray(proc.calls[-1]["images"][0]), np.asarray(Image.open(img).convert("RGB")))
    assert vmodel.calls[-1]["max_new_tokens"] == 10 and vmodel.calls[-1]["do_sample"] is False


@pytest.mark.parametrize("checks", [True, False])
def test_checks_off_keeps_what_the_released_loop_keeps(train, tmp_path, checks):
    """With checks off, every parsed proposal is verified and every parsed rewrite kept, as in
    the released loop (l.212-220): the records equal the port's output caption for caption."""
    def answer(body):
        role = _role_of(body)
        if role == "proposer":
            return "Star."  # named by some captions of NegWorld
        if role == "verifier":
            return "No"
        cap = body["messages"][-1]["content"].split("to the caption '", 1)[1][:-2]
        return cap + "."  # the caption unchanged: it states no absence

    srv, bodies = _recording(answer)
    out = tmp_path / "c.jsonl"
    with srv:
        o = _opts(srv)
        summary = run_p1(train["captions"], out, images=train["images"], proposer=o, verifier=o,
                         rewriter=o, limit=20, progress=False, checks=checks)
    from negationclip.generate import p1_items
    from negationclip.generate.grammar import mentions
    items = p1_items(load_coco_captions(train["captions"]), train["images"])[:20]
    port = {}
    for it in items:  # the released loop on the same answers
        obj = port_answer(answer({"messages": port_messages_propose(it.caption)}))
        if not port_present(answer(port_body_llava(obj))):
            port[it.work_id] = (obj, port_answer(answer({"messages": port_messages_rewrite(it.caption, obj)})))
    recs = {r.work_id: (r.object, r.negated) for r in read_records(out)}
    sib = {}
    for it in p1_items(load_coco_captions(train["captions"]), train["images"]):
        sib.setdefault(it.image_id, []).append(it.caption)
    named = sum(any(mentions(c, "Star") for c in sib[it.image_id]) for it in items)
    assert 0 < named < len(items)
    if checks:  # nothing negates: every rewrite rejected, named objects never verified
        assert recs == {} and summary["outcome_proposal_mentioned"] == named
        assert summary["outcome_rewrite_rejected"] == len(items) - named
    else:
        assert recs == port and len(recs) == len(items)
