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
