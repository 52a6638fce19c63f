import json
import subprocess
import sys

from PIL import Image

from negationclip.models import save, tiny_clip_bundle

CLI = [sys.executable, "-m", "negationclip.cli"]


def run(*args):
    return subprocess.run(CLI + list(args), capture_output=True, text=True)


def test_version_and_help_explain_every_option():
    r = run("--version")
    assert r.returncode == 0 and "negationclip" in r.stdout
    for cmd, options in {"convert": ["--input", "--output", "--to", "--dtype"],
                         "encode": ["--model", "--text", "--image", "--batch-size", "--device", "--json"]}.items():
        r = run(cmd, "--help")
        assert r.returncode == 0
        for opt in options:
            assert opt in r.stdout, (cmd, opt)
        assert "example" in r.stdout


def test_encode_prints_similarities(tmp_path):
    save(tiny_clip_bundle(seed=4), tmp_path / "m")
    img = tmp_path / "red.png"
    Image.new("RGB", (50, 40), "red").save(img)
    r = run("encode", "--model", str(tmp_path / "m"), "--text", "a red square", "--text",
            "a street with no cars", "--image", str(img), "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert len(out["cosine"]) == 1 and len(out["cosine"][0]) == 2
    assert all(-1 <= c <= 1 for c in out["cosine"][0])


def test_encode_bad_image_is_a_clear_error(tmp_path):
    save(tiny_clip_bundle(seed=4), tmp_path / "m")
    r = run("encode", "--model", str(tmp_path / "m"), "--text", "x", "--image", str(tmp_path / "no.jpg"))
    assert r.returncode == 2 and "no.jpg" in r.stderr and "Traceback" not in r.stderr


def test_every_command_that_loads_a_clip_has_act():
    from negationclip.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.__class__.__name__ == "_SubParsersAction")
    for cmd in ("convert", "encode", "eval", "train", "t2i", "segment", "segment-eval", "demo"):
        text = " ".join(sub.choices[cmd].format_help().split())
        assert "--act {quick_gelu,gelu}" in text and "LAION open_clip" in text, cmd
    assert "--judge-act" in sub.choices["t2i"].format_help()


def test_act_option_changes_the_text_embeddings_and_notes_the_assumption(tmp_path, capsys):
    import torch
    from negationclip.cli import main
    from negationclip.models import export_openai

    export_openai(tiny_clip_bundle(seed=4), tmp_path / "m.pt")
    outs = {}
    for act in (None, "quick_gelu", "gelu"):
        rc = main(["encode", "--model", str(tmp_path / "m.pt"), "--text", "a dog with no ball",
                   *(["--act", act] if act else [])])
        r = capsys.readouterr()
        assert rc == 0, r.err
        assert ("assuming quick_gelu" in r.err) == (act is None)
        outs[act] = torch.tensor(json.loads(r.out)["first_8_dims"]["a dog with no ball"])
    assert torch.equal(outs[None], outs["quick_gelu"])
    assert not torch.allclose(outs["gelu"], outs["quick_gelu"], atol=1e-4)
    rc = main(["convert", "--input", str(tmp_path / "m.pt"), "--output", str(tmp_path / "hf"),
               "--act", "gelu"])
    assert rc == 0, capsys.readouterr().err
    cfg = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert cfg["text_config"]["hidden_act"] == "gelu" == cfg["vision_config"]["hidden_act"]
    prov = json.loads((tmp_path / "hf" / "negationclip.json").read_text())["provenance"]
    assert prov["act"] == "gelu" and prov["act_origin"] == "option"
    assert prov["preprocessing"]["rule"] == "openai"
