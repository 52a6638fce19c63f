"""The from-scratch pretraining (`world pretrain`) and the demo (`demo --quick`)."""

import json

import pytest
import torch

from negationclip.cli import main
from negationclip.demo import BASE_MODEL_DIR, FIELD_METRICS, METRICS
from negationclip.utils import NegationClipError


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from negationclip.data.negworld import WorldConfig, build_world

    out = tmp_path_factory.mktemp("w") / "world"
    build_world(out, WorldConfig(images=60, seed=3), show_progress=False)
    return out


def _tiny(**kw):
    from negationclip.train.pretrain import PretrainConfig

    return PretrainConfig(**{**dict(width=64, layers=1, embed_dim=32, image_size=32, patch_size=16,
                                    steps=4, batch_size=8, warmup_steps=1, checkpoint_every=2), **kw})


def test_pretrain_writes_a_loadable_model_with_its_record(world, tmp_path):
    from negationclip.models import load_clip
    from negationclip.train.pretrain import pretrain, read_record

    res = pretrain(world / "captions_train.json", world / "images", tmp_path / "m", _tiny(),
                   show_progress=False)
    assert res.steps == 4 and res.images == 45 and res.captions == 225
    b = load_clip(tmp_path / "m")
    assert b.model.config.vision_config.image_size == 32
    rec = read_record(tmp_path / "m")
    assert rec["config"]["steps"] == 4 and rec["save_dtype"] == "float16"
    assert len(rec["loss_curve"]) >= 2 and all(torch.isfinite(torch.tensor(v)) for _, v in rec["loss_curve"])
    assert not (tmp_path / "m" / "pretrain_state.pt").exists()


def test_pretrain_killed_resumes_to_the_same_weights(world, tmp_path):
    from safetensors.torch import load_file

    from negationclip.train.pretrain import pretrain

    pretrain(world / "captions_train.json", world / "images", tmp_path / "a", _tiny(),
             save_dtype="float32", show_progress=False)

    def kill(step):
        if step == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        pretrain(world / "captions_train.json", world / "images", tmp_path / "b", _tiny(),
                 save_dtype="float32", show_progress=False, on_step=kill)
    assert (tmp_path / "b" / "pretrain_state.pt").exists()
    res = pretrain(world / "captions_train.json", world / "images", tmp_path / "b", _tiny(),
                   save_dtype="float32", show_progress=False)
    assert res.resumed_from == 2
    a, b = load_file(tmp_path / "a" / "model.safetensors"), load_file(tmp_path / "b" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # another configuration must not silently continue that state
    with pytest.raises(KeyboardInterrupt):
        pretrain(world / "captions_train.json", world / "images", tmp_path / "c", _tiny(),
                 show_progress=False, on_step=kill)
    with pytest.raises(NegationClipError, match="different configuration"):
        pretrain(world / "captions_train.json", world / "images", tmp_path / "c", _tiny(lr=1e-4),
                 show_progress=False)


def test_pretrain_cli_bad_input_is_one_clear_line(tmp_path, capsys):
    rc = main(["world", "pretrain", "--out", str(tmp_path / "m")])
    assert rc == 2 and capsys.readouterr().err.startswith("error: world pretrain: give either")
    rc = main(["world", "pretrain", "--world", str(tmp_path), "--out", str(tmp_path / "m")])
    err = capsys.readouterr().err
    assert rc == 2 and "manifest.json" in err and len(err.strip().splitlines()) == 1


def test_demo_help_teaches_every_option(capsys):
    with pytest.raises(SystemExit):
        main(["demo", "--help"])
    out = capsys.readouterr().out
    for opt in ("--out", "--quick", "--ablation", "--compare", "--seed", "--base", "--steps", "examples:"):
        assert opt in out


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.skipif(not (BASE_MODEL_DIR / "config.json").exists(), reason="no shipped base model")
def test_demo_quick_reports_before_and_after(tmp_path):
    assert main(["demo", "--quick", "--out", str(tmp_path / "d")]) == 0
    rep = json.loads((tmp_path / "d" / "report.json").read_text())
    assert set(rep) >= {"before", "after", "wall_seconds", "config"}
    for side in ("before", "after"):
        assert set(rep[side]) == set(METRICS) | set(FIELD_METRICS)  # the six + the field's formats
        assert all(isinstance(rep[side][k], float) and 0.0 <= rep[side][k] <= 1.0
                   for k in METRICS + FIELD_METRICS)
    # the field's formats ran through their plug-ins on the world's own files
    det = rep["details"]["before"]
    assert det["negbench-mcq:negbench_mcq"]["total"] > 0 and det["ccneg"]["total"] > 0
    assert det["negbench-retrieval:negbench_negated_retrieval"]["images"] > 0
    assert rep["before"]["negbench_mcq_total"] == det["negbench-mcq:negbench_mcq"]["total_accuracy"]
    assert rep["config"]["quick"] is True and rep["wall_seconds"] > 0
    # the fine-tuned model is a different model: its text weights moved, and its scores differ
    assert rep["details"]["finetune"]["text_weight_change"] > 0
    assert rep["before"] != rep["after"]
    assert rep["details"]["generation"]["P1"]["records"] > 0
    assert rep["details"]["generation"]["P2"]["records"] > 0
    md = (tmp_path / "d" / "report.md").read_text()
    assert "What the base model got wrong" in md and "| metric | base | fine-tuned |" in md
    assert md.count("```json") == 3
    assert "NegBench MCQ, total" in md and "SugarCREPE mean" in md
    for png in ("metrics.png", "field.png", "pairs.png"):
        assert (tmp_path / "d" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    html = (tmp_path / "d" / "report.html").read_text()   # self-contained: the 8 grid pairs inline
    assert 'data-model="base"' in html and 'data-model="fine-tuned"' in html
    assert html.count('src="data:image/png;base64,') == 16 and "http://" not in html.replace('xmlns="http://', "")
    from negationclip.apps.explore import demo_sources   # what `explore --demo` opens

    models, images, _ = demo_sources(tmp_path / "d")
    assert set(models) == {"base", "fine-tuned"} and images and all(p.is_file() for p in images)


def test_scene_negatives_put_the_negated_object_into_the_same_scene(world, tmp_path):
    import numpy as np

    from negationclip.data.negworld.counterfactual import add_scene_negatives
    from negationclip.generate import run_p1
    from negationclip.models import open_image
    from negationclip.utils import read_jsonl

    run_p1(world / "captions_train.json", tmp_path / "p1.jsonl", instances=world / "instances_train.json",
           images=world / "images", progress=False)
    counts = add_scene_negatives(tmp_path / "p1.jsonl", world, tmp_path / "p1cf.jsonl",
                                 show_progress=False)
    recs = read_jsonl(tmp_path / "p1cf.jsonl")
    assert counts["records"] == len(recs) > 0
    assert counts["with_negative_image"] == sum(1 for r in recs if r.get("negative_image")) > 0
    # a caption that names every object but Y leaves only a named object to turn into Y
    import re

    from negationclip.data.negworld import load_scenes

    scenes = load_scenes(world / "scenes.json")
    all_named = sum(1 for r in recs if r.get("negative_image") and all(
        re.search(rf"\b{o.category}(?:s|es)?\b", r["original"], re.IGNORECASE)
        for o in scenes[r["image_file"]].objects if o.category != r["object"]))
    assert counts["named_replaced"] == all_named > 0
    for r in recs[:20]:
        if not r.get("negative_image"):
            continue
        a = np.asarray(open_image(world / "images" / r["image_file"]))
        b = np.asarray(open_image(world / "images" / r["negative_image"]))
        assert a.shape == b.shape and (a != b).any()  # same scene, one object changed
        assert (a == b).mean() > 0.5


def test_p2_existence_records_get_scene_negatives_without_overwriting_p1s(world, tmp_path):
    from negationclip.data.negworld.counterfactual import add_scene_negatives, negated_object
    from negationclip.generate import run_p1, run_p2
    from negationclip.utils import read_jsonl

    run_p1(world / "captions_train.json", tmp_path / "p1.jsonl", instances=world / "instances_train.json",
           images=world / "images", progress=False)
    run_p2(world / "vqa_questions_train.json", world / "vqa_annotations_train.json",
           world / "captions_train.json", tmp_path / "p2.jsonl", progress=False)
    add_scene_negatives(tmp_path / "p1.jsonl", world, tmp_path / "p1cf.jsonl", show_progress=False)
    p1 = {r["negative_image"]: (world / "images" / r["negative_image"]).read_bytes()
          for r in read_jsonl(tmp_path / "p1cf.jsonl")}
    off = add_scene_negatives(tmp_path / "p2.jsonl", world, tmp_path / "p2off.jsonl",
                              show_progress=False)
    assert off["with_negative_image"] == 0  # by default P2 records get none
    counts = add_scene_negatives(tmp_path / "p2.jsonl", world, tmp_path / "p2cf.jsonl",
                                 questions=True, show_progress=False)
    recs = read_jsonl(tmp_path / "p2cf.jsonl")
    exists = [r for r in recs if r["question"].lower().startswith(("is there", "are there"))]
    others = [r for r in recs if r not in exists]
    assert exists and others
    # an existence question names the shape ("Is there a hexagon ...?" -> hexagon)
    for r in exists:
        shape = negated_object(r, questions=True)
        assert shape and shape in r["question"] and r.get("negative_image")
    assert not any(r.get("negative_image") for r in others)  # attributes: no shape to put in
    assert counts["with_negative_image"] == len(exists) and counts["no_object"] == len(others)
    # one folder for both files: P2's images have their own names, P1's are untouched
    assert not set(p1) & {r["negative_image"] for r in exists}
    assert all((world / "images" / k).read_bytes() == v for k, v in p1.items())


def test_demo_compare_flag_reaches_the_config(monkeypatch, tmp_path):
    import negationclip.demo as demo

    seen = {}
    monkeypatch.setattr(demo, "run_demo", lambda cfg: seen.setdefault("cfg", cfg))
    assert main(["demo", "--quick", "--compare", "--out", str(tmp_path / "d")]) == 0
    assert seen["cfg"].compare is True and seen["cfg"].quick is True
    seen.clear()
    assert main(["demo", "--out", str(tmp_path / "e")]) == 0
    assert seen["cfg"].compare is False


def test_demo_method_option_flags_reach_the_train_config(monkeypatch, tmp_path):
    import negationclip.demo as demo

    seen = {}
    monkeypatch.setattr(demo, "run_demo", lambda cfg: seen.setdefault("cfg", cfg))
    assert main(["demo", "--out", str(tmp_path / "d"), "--prototype-weight", "0.5",
                 "--keep-weight", "3", "--hinge-weight", "100", "--hinge-margin", "0.4",
                 "--original-ratio", "0.6"]) == 0
    tc = demo.train_config(seen["cfg"])
    assert (tc.hard_negative_weight, tc.hard_negative_margin, tc.original_ratio) == (100.0, 0.4, 0.6)
    assert tc.method == "negationclip"
    assert tc.method_options == {"prototype_weight": 0.5, "keep_weight": 3.0}
    default = demo.train_config(demo.DemoConfig())  # the recipe's
    assert default.method_options == {"prototype_weight": 1.0, "keep_weight": 10.0}
    assert (default.hard_negative_weight, default.train_vision) == (75.0, "none")
    seen.clear()
    assert main(["demo", "--out", str(tmp_path / "p"), "--prototype-weight", "0",
                 "--keep-weight", "0"]) == 0
    assert demo.train_config(seen["cfg"]).method_options == {}  # 0 turns a term off
    assert main(["demo", "--out", str(tmp_path / "e"), "--keep-weight", "-1"]) == 2


def test_field_inputs_name_the_world_files(world):
    from negationclip.data.negworld import WorldExport
    from negationclip.demo import FIELD_SPECS, field_inputs
    from negationclip.evaluate.registry import registry

    w = WorldExport.open(world)
    inputs = field_inputs(w)
    reg = registry()
    units = {k for plugin in dict.fromkeys(s[2] for s in FIELD_SPECS) for k in reg[plugin].plan(inputs)}
    assert units == {"negbench-mcq:negbench_mcq", "negbench-retrieval:negbench_retrieval",
                     "negbench-retrieval:negbench_negated_retrieval", "ccneg", "sugarcrepe"}


def test_targets_are_issue_13s_and_the_recipe_paragraph_follows_the_config():
    import dataclasses

    from negationclip.demo import DemoConfig, recipe_paragraph, targets, train_config

    before = {"retrieval_i2t_r1": 0.033, "retrieval_t2i_r1": 0.025}
    after = {"negation_balanced": 0.75, "negation_heldout_phrasing": 0.699, "negref": 0.55,
             "valse_existence": 0.70, "retrieval_i2t_r1": 0.014, "retrieval_t2i_r1": 0.004}
    t = targets(before, after)
    assert {k: v["met"] for k, v in t.items()} == {
        "negation_balanced": True, "negation_heldout_phrasing": False, "negref": True,
        "valse_existence": True, "retrieval_i2t_r1": True, "retrieval_t2i_r1": False}
    cfg = DemoConfig()
    c = {**dataclasses.asdict(cfg), "finetune": train_config(cfg).to_dict()}
    text = recipe_paragraph(c)
    c["scene_records"] = "parts,existence"
    text = recipe_paragraph(c)
    assert f"{cfg.steps} steps of batch {cfg.batch_size}" in text and "scene-graph" in text
    assert "crop" in text and "presence negation" in text
    c["scene_records"] = ""
    assert "--scene-records none" in recipe_paragraph(c) and "crop" not in recipe_paragraph(c)
    c.update(scene_records="parts,absence,presence", scene_presence_fraction=0.5,
             train_vision="none")
    text = recipe_paragraph(c)
    assert "for 50% of the scenes" in text and "Text tower only" in text
    c["train_vision"] = "last-1"
    assert "--train-vision last-1" in recipe_paragraph(c)
    assert "Text tower only" not in recipe_paragraph(c)
    text = recipe_paragraph(c)
    assert "--prototype-weight 1.0" in text and "--keep-weight 10.0" in text
    assert "not size" in text  # the default part records leave size out, and say why
    c["scene_part_properties"] = "color,size,part"
    c["finetune"] = {**c["finetune"], "method_options": {}}
    text = recipe_paragraph(c)
    assert "not size" not in text and "prototype" not in text and "keep term" not in text


def test_demo_options_reach_the_config(monkeypatch, tmp_path, capsys):
    import negationclip.demo as demo

    seen = {}
    monkeypatch.setattr(demo, "run_demo", lambda cfg: seen.setdefault("cfg", cfg))
    assert main(["demo", "--out", str(tmp_path / "d"), "--scene-records", "parts,existence",
                 "--presence-fraction", "0.25", "--train-vision", "last-2",
                 "--part-properties", "color, size,part"]) == 0
    cfg = seen["cfg"]
    assert (cfg.scene_records, cfg.scene_presence_fraction, cfg.train_vision) == \
        ("parts,absence,presence", 0.25, "last-2")
    assert cfg.scene_part_properties == "color,size,part"
    seen.clear()
    assert main(["demo", "--out", str(tmp_path / "e"), "--scene-records", "none"]) == 0
    assert seen["cfg"].scene_records == ""
    for bad in (["--scene-records", "parts,colour"], ["--presence-fraction", "1.5"],
                ["--train-vision", "first-1"], ["--part-properties", "color,shape"]):
        capsys.readouterr()
        assert main(["demo", "--out", str(tmp_path / "f"), *bad]) == 2
        assert "error:" in capsys.readouterr().err
