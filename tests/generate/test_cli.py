"""negationclip generate p1|p2|merge|stats|export through the CLI entry point."""

import json

import pytest

from negationclip.cli import main
from negationclip.generate import read_records


def _p1(train, out, *extra):
    return main(["generate", "p1", "--captions", str(train["captions"]), "--instances",
                 str(train["instances"]), "--out", str(out), *extra])


def test_shards_merge_to_the_full_run(train, tmp_path, capsys):
    assert _p1(train, tmp_path / "full.jsonl") == 0
    for i in range(3):
        assert _p1(train, tmp_path / f"s{i}.jsonl", "--shard", f"{i}/3") == 0
    shards = [read_records(tmp_path / f"s{i}.jsonl") for i in range(3)]
    assert all(shards)  # each shard got work
    ids = [r.id for s in shards for r in s]
    assert len(ids) == len(set(ids))  # disjoint
    assert main(["generate", "merge", *(str(tmp_path / f"s{i}.jsonl") for i in range(3)),
                 str(tmp_path / "s0.jsonl"), "--out", str(tmp_path / "m.jsonl")]) == 0
    full = {r.id: r for r in read_records(tmp_path / "full.jsonl")}
    merged = {r.id: r for r in read_records(tmp_path / "m.jsonl")}
    assert merged == full
    capsys.readouterr()
    assert main(["generate", "stats", str(tmp_path / "m.jsonl"), "--json", "--plot",
                 str(tmp_path / "m.png")]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["records"] == len(full) and s["calls_per_accepted"] > 0
    assert (tmp_path / "m.png").read_bytes()[:4] == b"\x89PNG"


def test_stats_table_and_export_layout(train, tmp_path, capsys):
    out = tmp_path / "p1.jsonl"
    assert _p1(train, out, "--candidates", "2") == 0
    assert main(["generate", "p2", "--questions", str(train["questions"]), "--annotations",
                 str(train["annotations"]), "--captions", str(train["captions"]),
                 "--out", str(tmp_path / "p2.jsonl")]) == 0
    capsys.readouterr()
    assert main(["generate", "stats", str(out), str(tmp_path / "p2.jsonl")]) == 0
    text = capsys.readouterr().out
    assert "acceptance rate" in text and "model calls per accepted caption" in text
    assert (tmp_path / "p1.jsonl.stats.png").exists()
    exp = tmp_path / "negationclip_captions_train2014.json"
    assert main(["generate", "export", str(out), str(tmp_path / "p2.jsonl"), "--captions",
                 str(train["captions"]), "--out", str(exp)]) == 0
    obj = json.loads(exp.read_text())
    recs = read_records(out) + read_records(tmp_path / "p2.jsonl")
    assert set(obj) >= {"images", "annotations"} and len(obj["annotations"]) == len(recs)
    ids = [a["id"] for a in obj["annotations"]]
    assert len(ids) == len(set(ids))
    for a, r in zip(obj["annotations"], recs):
        assert a["caption"] == r.original and a["updated_caption"] == r.negated
        assert a["image_id"] == r.image_id
    from pycocotools.coco import COCO
    coco = COCO(str(exp))  # the released layout loads with pycocotools
    assert len(coco.anns) == len(recs)


def test_bad_input_is_a_clear_error(train, tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text('{"images": [\n  {"id": 1,,}\n]}')
    assert main(["generate", "p1", "--captions", str(bad), "--instances",
                 str(train["instances"]), "--out", str(tmp_path / "o.jsonl")]) == 2
    err = capsys.readouterr().err
    assert "bad.json:2:" in err and "Traceback" not in err
    assert main(["generate", "p1", "--captions", str(train["captions"]), "--verifier", "openai",
                 "--verifier-model", "x", "--out", str(tmp_path / "o.jsonl")]) == 2
    assert "--images" in capsys.readouterr().err
    assert _p1(train, tmp_path / "o2.jsonl", "--shard", "3/2") == 2
    assert _p1(train, tmp_path / "o3.jsonl", "--verifier", "rules", "--limit", "2") == 0
    assert _p1(train, tmp_path / "o3.jsonl") == 2  # exists: needs --resume or --overwrite
    assert "--resume" in capsys.readouterr().err


@pytest.mark.parametrize("step", ["p1", "p2", "merge", "stats", "export"])
def test_help_has_examples(step, capsys):
    with pytest.raises(SystemExit) as e:
        main(["generate", step, "--help"])
    assert e.value.code == 0
    assert "example" in capsys.readouterr().out


def test_prompts_options_through_the_cli(train, tmp_path, capsys):
    from negationclip.generate.fakeserver import FakeOpenAIServer

    with FakeOpenAIServer() as srv:
        llm = ["--images", str(train["images"]), "--api-base", srv.url, "--limit", "6",
               "--api-key-env", "NEGCLIP_TEST_KEY"]
        for r in ("proposer", "verifier", "rewriter"):
            llm += [f"--{r}", "openai", f"--{r}-model", "tiny"]
        assert _p1(train, tmp_path / "r.jsonl", *llm, "--request-seed", "off") == 0
        assert _p1(train, tmp_path / "n.jsonl", *llm, "--prompts", "negationclip") == 0
        capsys.readouterr()
        # grouped proposals are negationclip's prompt: a clear error, nothing written
        assert _p1(train, tmp_path / "x.jsonl", *llm, "--propose-per", "image") == 2
        err = capsys.readouterr().err
        assert err.startswith("error:") and "--prompts negationclip" in err and "Traceback" not in err
    assert {r.prompt_version for r in read_records(tmp_path / "r.jsonl")} == {"released-v1"}
    assert {r.prompt_version for r in read_records(tmp_path / "n.jsonl")} == {"v1"}
    assert not (tmp_path / "x.jsonl").exists()
