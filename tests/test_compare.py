"""`negationclip compare`: every method from the same base on NegWorld, one table."""

import json

import pytest

from negationclip.cli import main
from negationclip.demo import BASE_MODEL_DIR, FIELD_METRICS, METRICS


def test_compare_help_and_bad_method(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["compare", "--help"])
    out = capsys.readouterr().out
    for opt in ("--methods", "--quick", "--steps", "--train-vision", "--ceiling", "--no-ceiling",
                "examples:", "--data", "--images", "--base", "--instances", "--benchmark",
                "--negbench-mcq", "--valse-file", "--karpathy"):  # eval's options, from the registry
        assert opt in out
    assert main(["compare", "--methods", "negationclip,clip-bnl", "--out", str(tmp_path)]) == 2
    assert "unknown method(s) ['clip-bnl']" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.skipif(not (BASE_MODEL_DIR / "config.json").exists(), reason="no shipped base model")
def test_compare_quick_writes_one_row_per_method(tmp_path):
    from negationclip.compare import CompareConfig, run_compare

    rep = run_compare(CompareConfig(out=str(tmp_path / "c"), methods=("negationclip", "conclip", "tng"),
                                    quick=True, quick_images=150, quick_steps=3, quick_batch_size=32,
                                    threads=1))
    saved = json.loads((tmp_path / "c" / "compare.json").read_text())
    assert list(saved["methods"]) == ["negationclip", "conclip", "tng"]
    for r in saved["methods"].values():
        assert set(r["metrics"]) == set(METRICS) | set(FIELD_METRICS) and r["steps"] == 3
        assert all(0.0 <= r["metrics"][k] <= 1.0 for k in METRICS + FIELD_METRICS)
    # different objectives give different models
    assert saved["methods"]["conclip"]["metrics"] != saved["methods"]["tng"]["metrics"]
    assert set(saved["base"]) == set(METRICS) | set(FIELD_METRICS) and rep["base"] == saved["base"]
    assert saved["ceiling"] is None  # off by default with --quick
    md = (tmp_path / "c" / "compare.md").read_text()
    assert "| base | - |" in md and "| conclip | none |" in md and "| tng | none |" in md
    assert "## The field's formats" in md and "`negbench_mcq_total`" in md
    for png in ("compare.png", "compare_field.png"):
        assert (tmp_path / "c" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_compare_ceiling_default_follows_quick():
    from negationclip.compare import CompareConfig

    assert CompareConfig().wants_ceiling() and not CompareConfig(quick=True).wants_ceiling()
    assert CompareConfig(quick=True, ceiling=True).wants_ceiling()
    assert not CompareConfig(ceiling=False).wants_ceiling()


# --- a small world, a tiny base: the ceiling row and the real-data head to head ---------------

@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """A 160-image NegWorld export (its files are the field's released formats), a tiny saved
    base model, and generation-stage JSONL made by `negationclip generate p1` from its captions."""
    import torch

    from negationclip.data.negworld import WorldConfig, WorldExport, build_world
    from negationclip.models import save, tiny_clip_bundle

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("cmp")
    build_world(root / "w", WorldConfig(images=160, seed=9), show_progress=False)
    w = WorldExport.open(root / "w")
    base = save(tiny_clip_bundle(seed=0, text_width=32, text_layers=1, vision_width=32,
                                 vision_layers=1, embed_dim=16), root / "base")
    gen = root / "p1.jsonl"
    assert main(["generate", "p1", "--captions", str(w.captions("train")), "--instances",
                 str(w.instances("train")), "--limit", "40", "--out", str(gen)]) == 0
    return {"root": root, "world": w, "base": base, "gen": gen}


def _benchmark_args(w) -> list[str]:
    """Every benchmark format the world writes, as `negationclip eval` options."""
    im = str(w.images_dir)
    return ["--benchmark", "negbench-mcq", "--negbench-mcq", str(w.negbench_mcq),
            "--benchmark", "negbench-retrieval", "--negbench-retrieval", str(w.negbench_negated_retrieval),
            "--negbench-images", im,
            "--benchmark", "ccneg", "--ccneg", str(w.ccneg), "--ccneg-images", im, "--ccneg-eval-size", "0",
            "--benchmark", "sugarcrepe", "--sugarcrepe-dir", str(w.sugarcrepe_dir), "--sugarcrepe-images", im,
            "--benchmark", "valse", "--valse-file", str(w.valse_existence), "--valse-images", im,
            "--benchmark", "negrefcocog", "--negrefcocog", str(w.negref), "--negrefcocog-images", im,
            "--benchmark", "coco-retrieval", "--coco-captions", str(w.captions("test")),
            "--retrieval-images", im]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_ceiling_row_equals_the_ceiling_command(env, tmp_path, capsys):
    """The compare report's ceiling row is `negationclip ceiling` on the same world and base."""
    from negationclip.compare import CompareConfig, run_compare

    rep = run_compare(CompareConfig(out=str(tmp_path / "c"), methods=("negationclip",), quick=True,
                                    quick_steps=1, quick_batch_size=8, world=str(env["world"].root),
                                    base=str(env["base"]), ceiling=True, threads=1))
    saved = json.loads((tmp_path / "c" / "compare.json").read_text())
    assert saved["ceiling"] == rep["ceiling"] and saved["world"]["reused"]
    assert main(["ceiling", "--model", str(env["base"]), "--world", str(env["world"].root),
                 "--out", str(tmp_path / "ceiling.json")]) == 0
    cmd = json.loads((tmp_path / "ceiling.json").read_text())
    row = saved["ceiling"]
    assert row["negation_balanced"] == cmd["ceiling"] and row["scorer"] == cmd["ceiling_scorer"]
    assert row["scorers"] == cmd["scorers"]  # every fitted row: same L2, same accuracies
    assert (row["train_pairs"], row["val_pairs"], row["test_pairs"]) == \
        (cmd["train_pairs"], cmd["val_pairs"], cmd["test_pairs"])
    # the base row and the ceiling's own-model row are the same benchmark on the same model
    assert saved["base"]["negation_balanced"] == pytest.approx(cmd["model_accuracy"])
    md = (tmp_path / "c" / "compare.md").read_text()
    assert f"| text-only ceiling ({cmd['ceiling_scorer']}) | frozen | {cmd['ceiling']:.3f} |" in md


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_real_data_compare_trains_every_method_and_runs_the_eval_benchmarks(env, tmp_path, capsys):
    """`compare --data --images --base` + eval's benchmark options: every method trained from the
    same base on the same records and budget; the table is `negationclip eval` on those models."""
    from safetensors.torch import load_file

    from negationclip.train.methods import METHODS

    w, out = env["world"], tmp_path / "c"
    argv = ["compare", "--base", str(env["base"]), "--data", str(env["gen"]),
            "--data", str(w.captions("train")), "--images", str(w.images_dir),
            "--instances", str(w.instances("train")), "--steps", "2", "--batch-size", "8",
            "--lr", "1e-3", "--threads", "1", "--out", str(out), *_benchmark_args(w)]
    assert main(argv) == 0, capsys.readouterr().err
    rep = json.loads((out / "compare.json").read_text())
    assert rep["mode"] == "data" and list(rep["methods"]) == list(METHODS)
    keys = list(rep["benchmarks"])
    assert keys[:2] == ["negbench-mcq:negbench_mcq", "negbench-retrieval:negbench_negated_retrieval"]
    assert {"ccneg", "valse:existence", "negrefcocog", "coco-retrieval"} <= set(keys)
    assert "sugarcrepe" in keys
    for name, r in rep["methods"].items():
        assert r["status"] == "trained" and r["steps"] == 2 and r["rows_seen"] == 16, (name, r)
        assert r["lr"] == 1e-3
        assert all(isinstance(v, float) and 0.0 <= v <= 1.0 for v in rep["results"][name].values())
    assert rep["methods"]["negbench"]["train_vision"] == "all"  # its released setting
    assert rep["errors"] == {}
    # every method started from the base: the frozen vision tower of a text-only method is the base's
    base_w = load_file(str(env["base"] / "model.safetensors"))
    neg_w = load_file(str(out / "runs" / "negationclip" / "best" / "model.safetensors"))
    assert torch_equal(base_w["vision_model.post_layernorm.weight"], neg_w["vision_model.post_layernorm.weight"])
    assert not torch_equal(base_w["text_projection.weight"], neg_w["text_projection.weight"])
    # the table's figures are `negationclip eval` on the saved models (independent run)
    ev = tmp_path / "ev"
    assert main(["eval", "--model", f"base={env['base']}", "--model",
                 f"tng={rep['methods']['tng']['model']}", "--out", str(ev), "--cache-dir", "none",
                 "--no-charts", *[a for a in _benchmark_args(w)]]) == 0
    res = json.loads((ev / "results.json").read_text())["results"]
    for label in ("base", "tng"):
        for k in keys:
            r = res[label][k]
            metric = rep["benchmarks"][k]["metric"]
            assert rep["results"][label][k] == pytest.approx(r[metric], abs=1e-9), (label, k)
    md = (out / "compare.md").read_text()
    assert "| base | - |" in md and "| negbench | all |" in md and "| tng | none |" in md
    assert (out / "compare.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def torch_equal(a, b) -> bool:
    import torch
    return bool(torch.equal(a, b))


@pytest.mark.timeout(600)
def test_real_data_methods_without_their_fields_are_skipped_rows_with_the_reason(env, tmp_path, capsys):
    """Plain COCO captions (no negated captions, no affirmed twins): only tng can train; the other
    rows name the missing field and how to make it."""
    w, out = env["world"], tmp_path / "c"
    argv = ["compare", "--base", str(env["base"]), "--data", str(w.captions("train")),
            "--images", str(w.images_dir), "--instances", str(w.instances("train")),
            "--steps", "1", "--batch-size", "8", "--out", str(out), "--threads", "1",
            "--benchmark", "valse", "--valse-file", str(w.valse_existence), "--valse-images",
            str(w.images_dir)]
    assert main(argv) == 0, capsys.readouterr().err
    rep = json.loads((out / "compare.json").read_text())
    status = {n: r["status"] for n, r in rep["methods"].items()}
    assert status == {"negationclip": "skipped", "conclip": "skipped", "negbench": "skipped",
                      "tng": "trained", "omni": "skipped"}
    assert "'negated'" in rep["methods"]["negationclip"]["reason"]
    assert "generate p1" in rep["methods"]["negationclip"]["reason"]
    for n in ("conclip", "negbench", "omni"):
        assert "needs the record field" in rep["methods"][n]["reason"]
        assert "generate p1" in rep["methods"][n]["reason"]
    assert rep["methods"]["tng"]["lr"] == 5e-6  # no --lr: the method's released lr
    md = (out / "compare.md").read_text()
    assert "| conclip | skipped |" in md and "## Skipped methods" in md
    assert "**negbench**: method negbench needs the record fields 'negated' and 'affirmed'" in md
    assert not (out / "runs" / "conclip").exists()


def test_real_data_bad_input_is_one_clear_error(env, tmp_path, capsys):
    w = env["world"]
    bad = tmp_path / "bad.jsonl"
    lines = env["gen"].read_text().splitlines()
    bad.write_text("\n".join(lines[:4] + ['{"image_file": "x.png", "negated": '] + lines[4:]) + "\n")
    common = ["--images", str(w.images_dir), "--out", str(tmp_path / "c"), "--benchmark", "valse",
              "--valse-file", str(w.valse_existence), "--valse-images", str(w.images_dir)]
    cases = [
        (["--base", str(env["base"]), "--data", str(bad)], f"{bad}:5"),
        (["--data", str(env["gen"])], "give --base"),
        (["--base", str(env["base"]), "--data", str(env["gen"]), "--ceiling"], "needs NegWorld"),
        (["--base", str(env["base"]), "--data", str(env["gen"]), "--benchmark", "negrefcocog"],
         "needs --negrefcocog"),
        (["--base", str(tmp_path / "nomodel"), "--data", str(env["gen"])], "nomodel"),
    ]
    for extra, msg in cases:
        assert main(["compare", *extra, *common]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and msg in err and "Traceback" not in err, (extra, err)
    assert not (tmp_path / "c" / "runs").exists()  # nothing trained
    assert main(["compare", "--benchmark", "valse", "--out", str(tmp_path / "d")]) == 2
    assert "go with --data" in capsys.readouterr().err
