import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from negationclip.cli import main


def test_train_help_teaches_every_option(capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for opt in ("--model", "--data", "--images", "--out", "--resume", "--hard-negatives",
                "--hard-negative-margin", "--mix", "--original-ratio", "--val-fraction",
                "--grad-accum", "--precision", "--save-openai", "torchrun", "examples:",
                "--recipe", "--clamp-logit-scale", "--split-by", "--val-loss", "--adamw-kernel",
                "clip_finetune.py"):
        assert opt in out


def test_bad_input_is_one_clear_line(tmp_path, capsys):
    rc = main(["train", "--model", str(tmp_path / "none"), "--data", str(tmp_path / "x.jsonl"),
               "--out", str(tmp_path / "run")])
    assert rc == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1


@pytest.mark.timeout(180)
def test_cli_run_killed_with_sigkill_resumes_to_the_same_weights(dataset, tiny, tmp_path):
    from negationclip.models import save

    root, _ = dataset
    save(tiny, tmp_path / "base")
    args = ["train", "--model", str(tmp_path / "base"), "--data", str(root / "p1.jsonl"),
            "--images", str(root / "images"), "--epochs", "12", "--batch-size", "4",
            "--lr", "1e-3", "--val-fraction", "0.25", "--checkpoint-every", "1",
            "--cache-dir", str(tmp_path / "cache"), "--seed", "5", "--device", "cpu",
            "--save-openai"]
    assert main(args + ["--out", str(tmp_path / "full")]) == 0
    env = dict(os.environ, NEGATIONCLIP_NO_PROGRESS="1", OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-m", "negationclip.cli", *args,
                             "--out", str(tmp_path / "cut")], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = tmp_path / "cut" / "state" / "state.json"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            if json.loads(state.read_text())["step"] >= 4:
                break
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = json.loads(state.read_text())["step"]
    assert 4 <= killed_at < 27, "the run should have been killed part-way"
    assert main(args + ["--out", str(tmp_path / "cut"), "--resume"]) == 0
    a = load_file(str(tmp_path / "full" / "state" / "trainable.safetensors"))
    b = load_file(str(tmp_path / "cut" / "state" / "trainable.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    fa = load_file(str(tmp_path / "full" / "best" / "model.safetensors"))
    fb = load_file(str(tmp_path / "cut" / "best" / "model.safetensors"))
    assert all(torch.equal(fa[k], fb[k]) for k in fa)
    assert (tmp_path / "cut" / "best_openai.pt").exists()
