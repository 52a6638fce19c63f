"""Every command against a table of bad inputs: exit code 2, one ``error: ...`` on stderr, no
traceback, and no output file written (or an existing one left exactly as it was).

Commands run in-process through ``negationclip.cli.main`` (fast); the few cases that need a
separate process (a file-size limit standing in for a full disk) run as subprocesses.
"""

import hashlib
import json
import os
import pickle
import resource
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from negationclip.cli import main

SRC = str(Path(__file__).resolve().parents[1] / "src")


def _png_header_only(path, w, h):
    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                     + chunk(b"IEND", b""))


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """Inputs shared by the table: a tiny NegWorld, a tiny model folder, good and bad images,
    a generation output, malformed annotation files."""
    import torch

    from negationclip.data.negworld import WorldConfig, build_world
    from negationclip.models import save, tiny_clip_bundle

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("bad")
    world = root / "world"
    build_world(world, WorldConfig(images=16, seed=2), show_progress=False)
    model = root / "model"
    save(tiny_clip_bundle(seed=0), model)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)).save(root / "ok.png")
    _png_header_only(root / "bomb.png", 20000, 20000)
    (root / "trunc.png").write_bytes((root / "ok.png").read_bytes()[:300])
    (root / "afile").write_text("I am a file\n")
    gen = root / "gen.jsonl"
    assert main(["generate", "p1", "--captions", str(world / "captions_train.json"), "--instances",
                 str(world / "instances_train.json"), "--limit", "8", "--out", str(gen)]) == 0
    inst = {"images": [{"id": 1, "file_name": "i.jpg", "width": 100, "height": 80}],
            "categories": [{"id": 1, "name": "dog"}],
            "annotations": [{"id": 10, "image_id": 1, "category_id": 1, "bbox": [0, 0, 20, 20], "area": 400},
                            {"id": 11, "image_id": 1, "category_id": 1, "bbox": [30, 30, 9, 9], "area": 81}]}
    (root / "inst.json").write_text(json.dumps(inst))
    for name, ref in {"refs_sent5.p": {"ann_id": 10, "sentences": 5},
                      "refs_annlist.p": {"ann_id": [1, 2], "sentences": [{"sent": "no dog"}]}}.items():
        (root / name).write_bytes(pickle.dumps([{"ref_id": 1, "image_id": 1, "split": "train", **ref}],
                                               protocol=2))
    (root / "onebox.json").write_text(json.dumps([{"image": "x.png", "phrase": "no", "ref_bbox": [0, 0, 4, 4],
                                                   "bbox_list": [[0, 0, 4, 4]]}]))
    return {"root": root, "world": world, "model": model, "gen": gen}


def _w(e):
    return e["world"]


def _gen_p1(e, *extra, out=None):
    w = _w(e)
    return ["generate", "p1", "--captions", str(w / "captions_train.json"), "--instances",
            str(w / "instances_train.json"), "--out", str(out or e["root"] / "new_p1.jsonl"), *extra]


def _train(e, *extra, out=None):
    w = _w(e)
    return ["train", "--model", str(e["model"]), "--data", str(e["gen"]), "--images", str(w / "images"),
            "--out", str(out or e["root"] / "new_run"), "--max-steps", "1", *extra]


def _eval(e, *extra, out=None):
    w = _w(e)
    return ["eval", "--model", str(e["model"]), "--benchmark", "negation-pairs", "--negation-pairs",
            str(w / "negation_pairs.json"), "--cache-dir", "none", "--no-charts",
            "--out", str(out or e["root"] / "new_eval"), *extra]


def _encode(e, *extra):
    return ["encode", "--model", str(e["model"]), "--text", "a red circle", *extra]


R = lambda e, name: str(e["root"] / name)  # noqa: E731

# (case id, argv builder, output path that must not appear (None: nothing to check))
CASES = [
    ("encode batch 0", lambda e: _encode(e, "--batch-size", "0"), None),
    ("encode batch -1", lambda e: _encode(e, "--batch-size", "-1", "--image", R(e, "ok.png")), None),
    ("encode cuda:7", lambda e: _encode(e, "--device", "cuda:7"), None),
    ("encode bogus device", lambda e: _encode(e, "--device", "tpu9"), None),
    ("encode bomb image", lambda e: _encode(e, "--image", R(e, "bomb.png")), None),
    ("encode truncated image", lambda e: _encode(e, "--image", R(e, "trunc.png")), None),
    ("encode text file as image", lambda e: _encode(e, "--image", R(e, "afile")), None),
    ("encode folder as model", lambda e: ["encode", "--model", R(e, ""), "--text", "x"], None),
    ("convert out is a file", lambda e: ["convert", "--input", str(e["model"]), "--output", R(e, "afile")], "afile"),
    ("convert out under a file", lambda e: ["convert", "--input", str(e["model"]), "--output",
                                            R(e, "afile") + "/hf"], None),
    ("convert openai out is a folder", lambda e: ["convert", "--input", str(e["model"]), "--output",
                                                  str(e["world"]), "--to", "openai"], None),
    ("generate limit -1", lambda e: _gen_p1(e, "--limit", "-1"), "new_p1.jsonl"),
    ("generate limit 0", lambda e: _gen_p1(e, "--limit", "0"), "new_p1.jsonl"),
    ("generate chunk 0", lambda e: _gen_p1(e, "--chunk-size", "0"), "new_p1.jsonl"),
    ("generate concurrency 0", lambda e: _gen_p1(e, "--concurrency", "0"), "new_p1.jsonl"),
    ("generate top-p 2", lambda e: _gen_p1(e, "--top-p", "2"), "new_p1.jsonl"),
    ("generate timeout -1", lambda e: _gen_p1(e, "--timeout", "-1"), "new_p1.jsonl"),
    ("generate seed -3", lambda e: _gen_p1(e, "--seed", "-3"), "new_p1.jsonl"),
    ("generate resume+overwrite", lambda e: _gen_p1(e, "--resume", "--overwrite"), "new_p1.jsonl"),
    ("generate out under a file", lambda e: _gen_p1(e, out=e["root"] / "afile" / "p1.jsonl"), None),
    ("generate out is a folder", lambda e: _gen_p1(e, out=e["world"]), None),
    ("generate captions is a folder", lambda e: ["generate", "p1", "--captions", str(e["world"]),
                                                 "--out", R(e, "new_p1.jsonl")], "new_p1.jsonl"),
    ("generate existing out", lambda e: _gen_p1(e, out=e["gen"]), "gen.jsonl"),
    ("generate shard 3/2", lambda e: _gen_p1(e, "--shard", "3/2"), "new_p1.jsonl"),
    ("export unknown pipeline", lambda e: ["generate", "export", str(e["gen"]), "--pipelines", "P9",
                                           "--out", R(e, "export.json")], "export.json"),
    ("export out under a file", lambda e: ["generate", "export", str(e["gen"]), "--out",
                                           R(e, "afile") + "/x.json"], None),
    ("merge out is an input", lambda e: ["generate", "merge", str(e["gen"]), "--out", str(e["gen"])], "gen.jsonl"),
    ("merge missing input", lambda e: ["generate", "merge", R(e, "nope.jsonl"), "--out", R(e, "m.jsonl")], "m.jsonl"),
    ("stats plot under a file", lambda e: ["generate", "stats", str(e["gen"]), "--plot",
                                           R(e, "afile") + "/s.png"], None),
    ("eval batch -1", lambda e: _eval(e, "--batch-size", "-1"), "new_eval"),
    ("eval limit -5", lambda e: _eval(e, "--limit", "-5"), "new_eval"),
    ("eval max-missing 2", lambda e: _eval(e, "--max-missing", "2"), "new_eval"),
    ("eval cuda:7", lambda e: _eval(e, "--device", "cuda:7"), "new_eval"),
    ("eval out is a file", lambda e: _eval(e, out=e["root"] / "afile"), "afile"),
    ("eval images folder missing", lambda e: ["eval", "--model", str(e["model"]), "--benchmark",
                                                    "negrefcocog", "--negrefcocog", R(e, "onebox.json"),
                                                    "--negrefcocog-images", R(e, "nowhere"), "--cache-dir",
                                                    "none", "--no-charts", "--out", R(e, "ev1")], None),
    ("build refs sentences 5", lambda e: ["build-negrefcocog", "--refs", R(e, "refs_sent5.p"), "--instances",
                                          R(e, "inst.json"), "--out", R(e, "nr.json")], "nr.json"),
    ("build refs ann_id list", lambda e: ["build-negrefcocog", "--refs", R(e, "refs_annlist.p"), "--instances",
                                          R(e, "inst.json"), "--out", R(e, "nr.json")], "nr.json"),
    ("build min area -1", lambda e: ["build-negrefcocog", "--refs", R(e, "refs_sent5.p"), "--instances",
                                     R(e, "inst.json"), "--out", R(e, "nr.json"), "--min-box-area", "-1"], "nr.json"),
    ("train out is a file", lambda e: _train(e, out=e["root"] / "afile"), "afile"),
    ("train batch 0", lambda e: _train(e, "--batch-size", "0"), "new_run"),
    ("train lr -1", lambda e: _train(e, "--lr", "-1"), "new_run"),
    ("train val-fraction 1.5", lambda e: _train(e, "--val-fraction", "1.5"), "new_run"),
    ("train image batch 0", lambda e: _train(e, "--image-batch-size", "0"), "new_run"),
    ("train cuda:7", lambda e: _train(e, "--device", "cuda:7"), "new_run"),
    ("train missing data", lambda e: ["train", "--model", str(e["model"]), "--data", R(e, "nope.jsonl"),
                                      "--out", R(e, "new_run")], None),
    ("world build images 0", lambda e: ["world", "build", "--out", R(e, "w2"), "--images", "0"], "w2"),
    ("world build out is a file", lambda e: ["world", "build", "--out", R(e, "afile")], "afile"),
    ("world build fraction 2", lambda e: ["world", "build", "--out", R(e, "w2"), "--val-fraction", "2"], "w2"),
    ("world pretrain batch 0", lambda e: ["world", "pretrain", "--world", str(e["world"]), "--out",
                                          R(e, "pt"), "--batch-size", "0"], "pt"),
    ("world pretrain out under a file", lambda e: ["world", "pretrain", "--world", str(e["world"]), "--out",
                                                   R(e, "afile") + "/pt"], None),
    ("demo out is a file", lambda e: ["demo", "--out", R(e, "afile")], "afile"),
    ("demo steps 0", lambda e: ["demo", "--out", R(e, "demo"), "--steps", "0"], "demo"),
    ("t2i steps 0", lambda e: ["t2i", "--pipeline", R(e, "nope"), "--out", R(e, "t2i"), "--steps", "0"], "t2i"),
    ("t2i no pipeline", lambda e: ["t2i", "--pipeline", R(e, "nope"), "--out", R(e, "t2i")], "t2i"),
    ("t2i out is a file", lambda e: ["t2i", "--pipeline", R(e, "nope"), "--out", R(e, "afile")], "afile"),
    ("segment threshold 2", lambda e: ["segment", "--clipseg", R(e, "nope"), "--image", R(e, "ok.png"),
                                       "--text", "x", "--out", R(e, "seg.png"), "--threshold", "2"], "seg.png"),
    ("segment bomb image", lambda e: ["segment", "--clipseg", R(e, "nope"), "--image", R(e, "bomb.png"),
                                      "--text", "x", "--out", R(e, "seg.png")], "seg.png"),
    ("segment-eval limit 0", lambda e: ["segment-eval", "--clipseg", R(e, "nope"), "--format", "negref",
                                        "--data", R(e, "onebox.json"), "--images", R(e, ""), "--out",
                                        R(e, "se"), "--limit", "0"], "se"),
]


def _snapshot(path: Path):
    if not path.exists():
        return None
    if path.is_file():
        return hashlib.sha256(path.read_bytes()).hexdigest()
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


@pytest.mark.parametrize("case,argv,out", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_a_clear_error(env, capsys, case, argv, out):
    args = argv(env)
    target = env["root"] / out if out else None
    before = _snapshot(target) if target else None
    try:
        rc = main(args)
    except SystemExit as e:  # argparse usage errors
        rc = e.code
    cap = capsys.readouterr()
    assert rc == 2, f"{case}: exit {rc}\nstdout: {cap.out[-800:]}\nstderr: {cap.err[-800:]}"
    assert "error:" in cap.err, cap.err
    assert "Traceback" not in cap.err + cap.out
    if target is not None:
        assert _snapshot(target) == before, f"{case}: {target} was written or changed"
    leftovers = [p.name for p in env["root"].iterdir() if p.name.endswith(".tmp")]
    assert not leftovers, leftovers


def test_t2i_leaves_no_config_behind_when_the_pipeline_does_not_load(env, capsys):
    out = env["root"] / "t2i_fresh"
    assert main(["t2i", "--pipeline", str(env["root"] / "nope"), "--out", str(out)]) == 2
    assert not (out / "t2i_config.json").exists()


def _limited(argv, limit_bytes, cwd):
    def pre():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))
    envv = dict(os.environ, PYTHONPATH=SRC, NEGATIONCLIP_NO_PROGRESS="1")
    return subprocess.run([sys.executable, "-m", "negationclip.cli", *argv], capture_output=True,
                          text=True, env=envv, preexec_fn=pre, timeout=300, cwd=cwd)


def test_disk_full_in_generate_is_a_clear_error(env):
    out = env["root"] / "full" / "p1.jsonl"
    r = _limited(_gen_p1(env, out=out), 2000, env["root"])
    assert r.returncode == 2, r.stderr[-2000:]
    assert "error:" in r.stderr and "Traceback" not in r.stderr
    assert "cannot write" in r.stderr and "p1.jsonl" in r.stderr


def test_disk_full_in_train_is_a_clear_error(env):
    out = env["root"] / "full_run"
    r = _limited(_train(env, "--cache-dir", str(env["root"] / "full_cache"), out=out), 20000, env["root"])
    assert r.returncode == 2, r.stderr[-2000:]
    assert "error:" in r.stderr and "Traceback" not in r.stderr
    assert "cannot write" in r.stderr


def test_a_bomb_image_in_training_data_is_a_counted_skip(env, capsys):
    """One decompression-bomb image among the training images no longer aborts the run."""
    import shutil

    images = env["root"] / "images_with_bomb"
    if not images.exists():
        shutil.copytree(env["world"] / "images", images)
    recs = [json.loads(x) for x in env["gen"].read_text().splitlines()]
    _png_header_only(images / "bomb.png", 20000, 20000)
    recs[0] = {**recs[0], "image_file": "bomb.png"}
    data = env["root"] / "with_bomb.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in recs))
    out = env["root"] / "run_bomb"
    rc = main(["train", "--model", str(env["model"]), "--data", str(data), "--images", str(images),
               "--out", str(out), "--max-steps", "1", "--batch-size", "4", "--val-fraction", "0",
               "--cache-dir", str(env["root"] / "cache_bomb")])
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    summary = json.loads(cap.out[cap.out.index("{"):])
    assert summary["skipped"] == {"captions whose image is missing or unreadable": 1}
