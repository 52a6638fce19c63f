from __future__ import annotations

import pytest
import torch
from PIL import Image

from negationclip.apps import negation_score as N
from negationclip.apps.diffusion import MANIFEST, negation_prompt_set, read_prompts
from negationclip.utils import JsonlWriter, NegationClipError, load_json, read_jsonl

RED, BLUE, BLACK = (255, 0, 0), (0, 0, 255), (0, 0, 0)


def stub_scorer(images, texts):
    """Known answers: red images contain Y ("... and cars"), black images lack X."""
    out = torch.zeros(len(images), len(texts))
    for i, im in enumerate(images):
        colour = im.getpixel((0, 0))
        for j, t in enumerate(texts):
            if " and " in t:
                out[i, j] = 0.9 if colour == RED else 0.1
            elif t == "a photo.":
                out[i, j] = 0.5
            elif t == "a photo of a street.":
                out[i, j] = 0.2 if colour == BLACK else 0.8
            else:
                out[i, j] = 0.5
    return out


def make_run(tmp_path):
    run = tmp_path / "run"
    (run / "images").mkdir(parents=True)
    recs = [("a", 0, RED, "cars", None), ("a", 1, BLUE, "cars", None),
            ("b", 0, BLACK, "cars", None), ("b", 1, BLUE, "cars", True), ("c", 0, BLUE, None, None)]
    with JsonlWriter(run / MANIFEST) as w:
        for pid, seed, colour, absent, nsfw in recs:
            f = f"images/{pid}_s{seed}.png"
            Image.new("RGB", (8, 8), colour).save(run / f)
            w.write({"id": pid, "seed": seed, "prompt": "a street with no cars", "file": f,
                     "present": "a street", "absent": absent, "nsfw_flagged": nsfw})
    return run


def test_clip_judge_known_answers(tmp_path):
    run = make_run(tmp_path)
    judge = N.ClipJudge(stub_scorer)
    assert judge.texts_for("cars", "a street") == ("a photo of a street and cars.", "a photo of a street.")
    s = N.score_run(run, judge).to_json()
    assert s["images"] == 3
    assert s["counts"] == {"y_absent": 2, "y_decided": 3, "x_present": 2, "x_decided": 3,
                           "both": 1, "both_decided": 3}
    assert s["negation_score"] == pytest.approx(2 / 3, abs=1e-6)
    assert s["both"] == pytest.approx(1 / 3, abs=1e-6)
    assert s["skipped"] == {"blanked by the safety checker": 1, "no 'absent' (Y) in prompt": 1}
    assert s["per_prompt"]["a"]["y_absent"] == 1 and s["per_prompt"]["b"]["x_present"] == 0
    saved = load_json(run / "negation_score.clip.json")
    assert saved["negation_score"] == s["negation_score"]

    # resumable: a second run judges nothing new and gives the same numbers
    class Boom(N.ClipJudge):
        def presence(self, *a):
            raise AssertionError("judged twice")

    again = N.score_run(run, Boom(stub_scorer)).to_json()
    assert again["counts"] == s["counts"]
    assert len(read_jsonl(run / "judgements.clip.jsonl")) == 3


def test_unreadable_image_is_counted(tmp_path):
    run = make_run(tmp_path)
    (run / "images" / "a_s0.png").write_bytes(b"not a png")
    s = N.score_run(run, N.ClipJudge(stub_scorer)).to_json()
    assert s["images"] == 2 and s["skipped"]["unreadable image"] == 1


def test_vqa_judge_parses_answers(tmp_path):
    answers = iter(["Yes.", "no", "I am not sure", "No, there is none."])

    def ask(images, questions):
        assert all(q.startswith("Does this image show ") for q in questions)
        return [next(answers) for _ in questions]

    judge = N.VqaJudge(ask)
    ims = [Image.new("RGB", (4, 4))] * 4
    assert judge.presence(ims, ["cars"] * 4, [None] * 4) == [1.0, 0.0, None, 0.0]


def test_scorer_shape_checked():
    judge = N.ClipJudge(lambda ims, txts: torch.zeros(1, 1))
    with pytest.raises(NegationClipError, match="shape"):
        judge.presence([Image.new("RGB", (4, 4))], ["cars"], ["a street"])


def test_clip_judge_from_bundle_runs():
    from negationclip.models import tiny_clip_bundle

    judge = N.ClipJudge.from_bundle(tiny_clip_bundle(seed=0))
    p = judge.presence([Image.new("RGB", (40, 40), RED)] * 2, ["cars", "a dog"], ["a street", None])
    assert len(p) == 2 and all(0.0 <= v <= 1.0 for v in p)


def test_shipped_prompt_set():
    prompts = read_prompts(negation_prompt_set())
    assert len(prompts) == 40
    for p in prompts:
        assert p.present and p.absent
        assert any(w in p.prompt.split() for w in ("no", "not", "without")), p.prompt


def test_vqa_judge_through_the_openai_backend(tmp_path):
    """The VQA judge on the generation stage's openai backend, against a loopback server:
    the question carries the image, answers are parsed, garbage is undecided (not 'absent')."""
    from negationclip.generate.fakeserver import FakeOpenAIServer

    def script(n, body):
        content = body["messages"][-1]["content"]
        text = " ".join(p.get("text", "") for p in content if isinstance(p, dict))
        assert any(p.get("type") == "image_url" for p in content)  # the image went along
        if "cars" in text:
            return ("text", "Yes, there are cars.")
        if "a street" in text:
            return ("text", "no")
        return ("text", "purple monkey dishwasher")

    run = make_run(tmp_path)
    with FakeOpenAIServer(script=script) as srv:
        judge = N.VqaJudge.from_backend("openai", "tiny-vlm", url=srv.url, timeout=5.0,
                                        api_key_env="NEGCLIP_TEST_KEY")
        assert judge.presence([Image.new("RGB", (8, 8))] * 2, ["cars", "a dog"], [None, None]) == [1.0, None]
        s = N.score_run(run, judge).to_json()
    assert s["counts"]["y_absent"] == 0 and s["counts"]["y_decided"] == 3
    assert s["counts"]["x_present"] == 0 and s["counts"]["x_decided"] == 3


def test_clip_judge_encodes_each_image_once(tmp_path):
    seen = []

    def counting(images, texts):
        seen.append(len(images))
        return stub_scorer(images, texts)

    run = make_run(tmp_path)
    s = N.score_run(run, N.ClipJudge(counting)).to_json()
    assert seen == [3] and s["counts"]["y_decided"] == 3  # 3 images, 6 questions, one encoding
