"""The rules backends on a NegWorld export, checked against the scene graphs."""

import json

from negationclip.data.coco import load_coco_instances
from negationclip.data.negworld import load_scenes, uses_heldout_cue
from negationclip.generate import read_ledger, read_records, run_p1, run_p2, run_stats
from negationclip.generate.backends.base import VerifyTask
from negationclip.generate.backends.rules import RulesVerifier
from negationclip.generate.grammar import strip_caption


def _present(world):
    return {s.file_name: {o.category for o in s.objects}
            for s in load_scenes(world / "scenes.json").values()}


def test_p1_records_never_negate_a_present_object(world, train, tmp_path):
    present = _present(world)
    out = tmp_path / "p1.jsonl"
    summary = run_p1(train["captions"], out, instances=train["instances"], progress=False,
                     candidates=2)
    recs = read_records(out)
    assert len(recs) > 50 and summary["records"] == len(recs)
    for r in recs:
        assert r.pipeline == "P1" and r.object
        assert r.object not in present[r.image_file], (r.id, r.object, present[r.image_file])
        assert r.negated != r.original
        c = strip_caption(r.original)[0]
        assert c in r.negated or c[0].lower() + c[1:] in r.negated or "not wearing" in r.negated
        assert r.affirmed and not uses_heldout_cue(r.negated) and not uses_heldout_cue(r.affirmed)
        assert r.backends["verifier"]["backend"] == "rules" and r.prompt_version
    assert len({r.id for r in recs}) == len(recs)
    # the verifier said "present" for some proposals: they were dropped, and counted
    s = run_stats([out])
    assert s["outcomes"].get("present", 0) > 0
    assert s["calls_per_accepted"] < 3


def test_rand_p1_is_random_and_still_verified(world, train, tmp_path):
    present = _present(world)
    out = tmp_path / "r.jsonl"
    run_p1(train["captions"], out, instances=train["instances"], random_objects=True, progress=False)
    recs = read_records(out)
    assert recs and all(r.pipeline == "Rand-P1" for r in recs)
    assert all(r.object not in present[r.image_file] for r in recs)
    _, led = read_ledger(out)
    assert all(e["calls"].get("proposer", 0) == 0 for e in led.values())  # no model call


def test_verification_cache_one_call_per_image_and_object(world, train, tmp_path):
    out = tmp_path / "c.jsonl"
    run_p1(train["captions"], out, instances=train["instances"], progress=False,
           propose_per="caption")
    _, led = read_ledger(out)
    verifier_calls = sum(e["calls"].get("verifier", 0) for e in led.values())
    cache = [json.loads(x) for x in (tmp_path / "c.jsonl.vcache.jsonl").read_text().splitlines()]
    keys = [tuple(json.loads(c["k"])) for c in cache]
    assert len(keys) == len(set(keys)) == verifier_calls  # never asked twice
    asked = sum(e["outcomes"].get(k, 0) for e in led.values()
                for k in ("accepted", "present", "rewrite_rejected", "unsure"))
    assert verifier_calls < asked  # the 5 captions of an image shared answers


def test_rules_verifier_unknown_is_unsure_never_absent(train):
    inst = load_coco_instances(train["instances"])
    v = RulesVerifier(inst)
    image_id = next(iter(inst.images))
    cats = inst.category_names_in_image(image_id)
    res = v.verify([VerifyTask(image_id, None, "spaceship"), VerifyTask(99999999, None, "circle"),
                    VerifyTask(image_id, None, sorted(cats)[0])])
    assert [r.verdict for r in res] == ["unsure", "unsure", "present"]


def test_p2_records(world, train, tmp_path):
    out = tmp_path / "p2.jsonl"
    summary = run_p2(train["questions"], train["annotations"], train["captions"], out,
                     progress=False)
    recs = read_records(out)
    assert recs and summary["input_skipped_answer_yes"] > 0
    from negationclip.data.vqa import load_vqa
    answers = {q.question_id: q.majority_answer for q in load_vqa(train["questions"], train["annotations"])}
    for r in recs:
        assert r.pipeline == "P2" and answers[r.question_id] == "no"
        assert " not " in f" {r.negated} " or " no " in f" {r.negated} "
        assert not uses_heldout_cue(r.negated)
