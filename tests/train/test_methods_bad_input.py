"""Bad input holds for every registered training method: a malformed record is one clear
``error:`` line naming the file and row (exit 2, nothing trained), an unreadable image is a
counted skip, a bad ``--instances`` file is an error naming it for the methods that read it
(tng, omni) and a note saying it is ignored for the others."""

import json

import pytest

from negationclip.cli import main
from negationclip.train.methods import METHODS

from .conftest import OBJECTS, make_dataset


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    from negationclip.models import save, tiny_clip_bundle

    root = tmp_path_factory.mktemp("bad")
    recs = [dict(r, present_objects=[OBJECTS[(i + 1) % 4]])
            for i, r in enumerate(make_dataset(root / "data", n=8))]
    lines = [json.dumps(r) for r in recs]
    model = save(tiny_clip_bundle(seed=0, text_width=32, text_layers=1, vision_width=32,
                                  vision_layers=1, embed_dim=16), root / "m")
    files = {}
    files["torn"] = root / "torn.jsonl"  # line 3 is not JSON
    files["torn"].write_text("\n".join(lines[:2] + ['{"image": "002.png", "negated": '] + lines[3:]) + "\n")
    files["list"] = root / "list.jsonl"  # line 2 is a JSON list, not a record
    files["list"].write_text("\n".join(lines[:1] + ["[1, 2]"] + lines[1:]) + "\n")
    files["noimage"] = root / "noimage.jsonl"  # line 4 names no image field at all
    files["noimage"].write_text("\n".join(lines[:3] + ['{"negated": "a cat with no dog"}'] + lines[3:]) + "\n")
    files["missing"] = root / "missing.jsonl"  # one record's image file does not exist
    files["missing"].write_text("\n".join(lines + [json.dumps(dict(recs[0], id="gone", image="gone.png"))]) + "\n")
    files["good"] = root / "good.jsonl"
    files["good"].write_text("\n".join(lines) + "\n")
    return {"root": root, "model": model, "files": files}


def _train(env, method, data, out, *extra):
    r = env["root"]
    return main(["train", "--method", method, "--model", str(env["model"]), "--data", str(data),
                 "--images", str(r / "data" / "images"), "--out", str(r / out),
                 "--cache-dir", str(r / "cache"), "--mine-negative-images", "--max-steps", "1",
                 "--batch-size", "4", "--val-fraction", "0", "--train-vision", "none", *extra])


@pytest.mark.parametrize("method", list(METHODS))
@pytest.mark.parametrize("case,row", [("torn", 3), ("list", 2), ("noimage", 4)])
def test_a_malformed_record_is_one_error_line_naming_file_and_row(env, capsys, method, case, row):
    rc = _train(env, method, env["files"][case], f"{method}-{case}")
    err = capsys.readouterr().err
    assert rc == 2, err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1, err
    assert f"{env['files'][case]}:{row}" in err, err
    assert "Traceback" not in err
    assert not (env["root"] / f"{method}-{case}" / "state").exists()


@pytest.mark.parametrize("method", list(METHODS))
def test_a_missing_image_is_a_counted_skip(env, capsys, method):
    rc = _train(env, method, env["files"]["missing"], f"{method}-missing")
    out, err = capsys.readouterr()
    assert rc == 0, err
    summary = json.loads(out[out.index("{"):])
    assert summary["steps"] == 1
    assert summary["skipped"].get("captions whose image is missing or unreadable") == 1, summary


@pytest.mark.parametrize("method", list(METHODS))
def test_a_bad_instances_file_is_an_error_naming_it(env, capsys, method):
    bad = env["root"] / "instances_bad.json"
    bad.write_text('{"images": [')
    rc = _train(env, method, env["files"]["good"], f"{method}-inst", "--instances", str(bad))
    out, err = capsys.readouterr()
    if METHODS[method].uses_instances:
        assert rc == 2 and err.startswith("error: ") and str(bad) in err, err
        assert len(err.strip().splitlines()) == 1
    else:  # never read: said so, not silently dropped
        assert rc == 0, err
        assert f"method {method} does not read --instances; {bad} ignored" in out
