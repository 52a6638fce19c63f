import json

import pytest

from negationclip.cli import main
from negationclip.evaluate.runner import EvalConfig, expand_benchmarks, parse_model_spec
from negationclip.models import save, tiny_clip_bundle
from negationclip.utils import NegationClipError

from .conftest import fabricate_image


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("eval")
    for seed in (0, 1):
        save(tiny_clip_bundle(seed=seed), d / f"model{seed}")
    imgs = d / "imgs"
    neg = [{"image": f"n{i}.jpg", "phrase": f"a dog with no collar {i}", "ref_bbox": [0, 0, 12, 10],
            "bbox_list": [[0, 0, 12, 10], [8, 4, 16, 16]]} for i in range(4)]
    for r in neg:
        fabricate_image(imgs / r["image"], 30, 24, r["image"])
    (d / "neg.json").write_text(json.dumps(neg))
    (d / "valse").mkdir()
    for piece in ("plurals", "existence"):
        recs = {f"{piece}{i}": {"image_file": f"v{i}.jpg", "caption": "There are no cats.",
                                "foil": "There are cats.", "mturk": {"caption": 3}} for i in range(3)}
        (d / "valse" / f"{piece}.json").write_text(json.dumps(recs))
    for i in range(3):
        fabricate_image(imgs / f"v{i}.jpg", 20, 20, f"v{i}")
    return d


def test_expand_and_specs(setup):
    cfg = EvalConfig(inputs={"valse_dir": str(setup / "valse"), "valse_images": str(setup)})
    assert expand_benchmarks(["valse"], cfg) == ["valse:existence", "valse:plurals"]
    assert expand_benchmarks(["valse:plurals", "valse-existence"], cfg) == ["valse:plurals", "valse:existence"]
    with pytest.raises(NegationClipError, match="needs --negrefcocog"):
        expand_benchmarks(["negrefcocog"], cfg)
    with pytest.raises(NegationClipError, match=r"--negrefcocog .*nope\.json: not found"):
        expand_benchmarks(["negrefcocog"], EvalConfig(inputs={"negrefcocog": str(setup / "nope.json"),
                                                              "negrefcocog_images": str(setup)}))
    with pytest.raises(NegationClipError, match="unknown benchmark 'nope'"):
        expand_benchmarks(["nope"], cfg)
    with pytest.raises(NegationClipError, match="now called 'coco-negation'"):
        expand_benchmarks(["negbench"], cfg)
    world_piece = setup / "valse_existence.json"
    world_piece.write_text((setup / "valse" / "existence.json").read_text())
    cfg2 = EvalConfig(inputs={"valse_files": [str(world_piece)], "valse_images": str(setup)})
    assert expand_benchmarks(["valse", "valse:existence"], cfg2) == ["valse:existence"]
    with pytest.raises(NegationClipError, match="no valse part 'plurals'"):
        expand_benchmarks(["valse:plurals"], cfg2)
    assert parse_model_spec("clip=openai/clip-vit-base-patch32") == ("clip", "openai/clip-vit-base-patch32")
    assert parse_model_spec("openai/clip-vit-base-patch32") == ("openai/clip-vit-base-patch32",) * 2


def test_eval_cli_two_models_report_and_resume(setup, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["eval", "--model", f"a={setup / 'model0'}", "--model", f"b={setup / 'model1'}",
            "--benchmark", "negrefcocog", "--negrefcocog", str(setup / "neg.json"),
            "--negrefcocog-images", str(setup / "imgs"), "--benchmark", "valse",
            "--valse-dir", str(setup / "valse"), "--valse-images", str(setup / "imgs"),
            "--out", str(out), "--cache-dir", str(tmp_path / "cache")]
    assert main(argv) == 0
    res = json.loads((out / "results.json").read_text())
    assert set(res["results"]) == {"a", "b"}
    for m in ("a", "b"):
        assert list(res["results"][m]) == ["negrefcocog", "valse:existence", "valse:plurals"]
        r = res["results"][m]["negrefcocog"]
        assert r["benchmark"] == "negrefcocog" and r["model"] == m and r["total"] == 4
        assert 0 <= r["accuracy_official"] <= 1 and r["correct"] == round(r["accuracy_official"] * 4)
        assert r["items_per_second"] > 0
        # one CLIP_benchmark-layout JSON per (model, benchmark)
        cb = json.loads((out / "clip_benchmark" / f"negrefcocog_{m}_en_region_selection.json").read_text())
        assert set(cb) == {"dataset", "model", "pretrained", "task", "metrics", "language"}
        assert cb["dataset"] == "negrefcocog" and cb["model"] == m
        assert cb["metrics"]["accuracy_official"] == r["accuracy_official"]
        assert (out / "clip_benchmark" / f"valse_existence_{m}_en_image_caption_selection.json").exists()
    assert res["models"]["a"]["source"] == str(setup / "model0")
    assert "torch" in res["software"] and res["errors"] == {}
    md = (out / "results.md").read_text()
    assert "| a |" in md and "negrefcocog (accuracy_official, %)" in md
    assert "| model | accuracy_official (%) | accuracy_strict (%) | ties |" in md
    assert (out / "charts" / "negrefcocog.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / "charts" / "summary.png").exists()
    # resume: nothing recomputed, same numbers
    capsys.readouterr()
    assert main(argv) == 0
    assert "already in" in capsys.readouterr().out
    assert json.loads((out / "results.json").read_text())["results"] == res["results"]


def test_missing_images_fail_one_benchmark_not_the_run(setup, tmp_path, capsys):
    out = tmp_path / "out"
    rc = main(["eval", "--model", f"a={setup / 'model0'}", "--benchmark", "negrefcocog",
               "--negrefcocog", str(setup / "neg.json"), "--negrefcocog-images", str(tmp_path),
               "--benchmark", "valse-existence", "--valse-dir", str(setup / "valse"),
               "--valse-images", str(setup / "imgs"), "--out", str(out), "--cache-dir", "none",
               "--no-charts"])
    assert rc == 2  # the contract: errors on stderr, exit 2, after the other benchmarks ran
    cap = capsys.readouterr()
    assert "a / negrefcocog: error: " in cap.err and "4 of 4 images missing" in cap.err
    assert "Traceback" not in cap.err
    res = json.loads((out / "results.json").read_text())
    assert "4 of 4 images missing" in res["errors"]["a"]["negrefcocog"]
    assert "valse:existence" in res["results"]["a"]
    assert len((out / "missing" / "negrefcocog.txt").read_text().splitlines()) == 4
    assert main(["eval", "--model", "x", "--out", str(out)]) == 2
    assert "at least one --benchmark" in capsys.readouterr().err


def test_eval_help_teaches_options(capsys):
    with pytest.raises(SystemExit):
        main(["eval", "--help"])
    text = capsys.readouterr().out
    for opt in ("--model", "--benchmark", "--max-missing", "--valse-file", "--zeroshot-templates",
                "--karpathy", "--coco-negation-instances", "--negation-pairs", "--negbench-mcq",
                "--negbench-retrieval", "--negbench-images", "--ccneg", "--ccneg-images",
                "--sugarcrepe-dir", "--sugarcrepe-images", "--list", "examples:"):
        assert opt in text


def test_eval_list(capsys):
    assert main(["eval", "--list"]) == 0
    text = capsys.readouterr().out
    for name in ("negrefcocog", "valse", "negbench-mcq", "negbench-retrieval", "ccneg",
                 "sugarcrepe", "zeroshot", "coco-retrieval", "coco-negation", "negation-pairs"):
        assert f"\n{name} " in "\n" + text
    assert "official rule: negrefcocog_eval.py" in text


def test_build_negrefcocog_cli(tmp_path):
    import pickle
    refs = [{"ann_id": 1, "split": "train", "sentences": [{"sent": "the dog without a hat"}]}]
    (tmp_path / "refs.p").write_bytes(pickle.dumps(refs, protocol=2))
    inst = {"images": [{"id": 5, "file_name": "a.jpg", "width": 50, "height": 50}],
            "categories": [{"id": 1, "name": "dog"}],
            "annotations": [{"id": 1, "image_id": 5, "category_id": 1, "bbox": [0, 0, 10, 10]},
                            {"id": 2, "image_id": 5, "category_id": 1, "bbox": [20, 20, 10, 10]}]}
    (tmp_path / "inst.json").write_text(json.dumps(inst))
    assert main(["build-negrefcocog", "--refs", str(tmp_path / "refs.p"), "--instances",
                 str(tmp_path / "inst.json"), "--out", str(tmp_path / "o.json")]) == 0
    assert json.loads((tmp_path / "o.json").read_text()) == [
        {"image": "a.jpg", "phrase": "the dog without a hat", "ref_bbox": [0, 0, 10, 10],
         "bbox_list": [[0, 0, 10, 10], [20, 20, 10, 10]]}]
