"""The shared validation layer (utils.checks, cli._types), the output-path guard, the output
lock, OSError translation and file modes (utils.paths, utils.io)."""

import argparse
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from negationclip.cli import _types
from negationclip.utils import NegationClipError, atomic_dir, atomic_write_text, checks
from negationclip.utils.io import JsonlWriter
from negationclip.utils.paths import OutputLock, check_output, lock_holder

SRC = str(Path(__file__).resolve().parents[2] / "src")


@pytest.mark.parametrize("rule,good,bad", [
    (checks.positive_int, [1, "3", 7.0], [0, -1, "-5", "x", 1.5, True, "nan"]),
    (checks.nonneg_int, [0, "4"], [-1, "1e400", "a"]),
    (checks.optional_positive_int, [None, 2], [0, -5]),
    (checks.positive_float, [0.1, "2"], [0, -1.0, "inf", "nan"]),
    (checks.nonneg_float, [0, "0.5"], [-0.1, "nan"]),
    (checks.probability, [0, 1, "0.3"], [-0.01, 1.01, "2"]),
])
def test_each_rule_accepts_the_valid_and_names_the_invalid(rule, good, bad):
    for v in good:
        rule(v, "opt")
    for v in bad:
        with pytest.raises(NegationClipError, match="^opt: "):
            rule(v, "opt")


def test_argparse_types_reject_with_a_usage_error(capsys):
    p = argparse.ArgumentParser(prog="x")
    p.add_argument("--batch-size", type=_types.positive_int)
    p.add_argument("--limit", type=_types.positive_int)
    p.add_argument("--top-p", type=_types.probability)
    assert p.parse_args(["--batch-size", "4"]).batch_size == 4
    for argv in (["--batch-size", "0"], ["--limit", "-1"], ["--top-p", "1.5"]):
        with pytest.raises(SystemExit) as e:
            p.parse_args(argv)
        assert e.value.code == 2
    err = capsys.readouterr().err
    assert "argument --limit: must be a positive integer (>= 1), got '-1'" in err
    assert "Traceback" not in err


def test_device_rule_knows_what_this_machine_has():
    import torch

    assert checks.check_device("cpu") == "cpu" and checks.check_device("auto") == "auto"
    with pytest.raises(NegationClipError, match="not a torch device"):
        checks.check_device("gpu7")
    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    with pytest.raises(NegationClipError, match="cuda:7|CUDA"):
        checks.check_device(f"cuda:{n + 7}")


def test_encode_api_refuses_bad_batch_sizes_and_single_strings():
    from negationclip.models import encode_images, encode_text, tiny_clip_bundle

    b = tiny_clip_bundle()
    for bs in (0, -5):
        with pytest.raises(NegationClipError, match="batch_size"):
            encode_text(b, ["a", "b"], batch_size=bs)
        with pytest.raises(NegationClipError, match="batch_size"):
            encode_images(b, [], batch_size=bs)
    with pytest.raises(NegationClipError, match="list"):
        encode_text(b, "a dog")
    with pytest.raises(NegationClipError):
        from negationclip.evaluate.runner import EvalConfig
        EvalConfig(batch_size=-1)
    with pytest.raises(NegationClipError, match="cuda"):
        from negationclip.models import load_clip
        load_clip("/nonexistent", device="cuda:7") if not __import__("torch").cuda.is_available() \
            else (_ for _ in ()).throw(NegationClipError("cuda (skipped on a GPU machine)"))


# --- the output guard ------------------------------------------------------------------------

def test_check_output_refuses_each_kind_of_unusable_path(tmp_path):
    f = tmp_path / "file.txt"
    f.write_text("x")
    d = tmp_path / "dir"
    d.mkdir()
    cases = [
        (dict(path=f, kind="dir"), "is a file, expected a folder"),
        (dict(path=d, kind="file"), "is a folder, expected a file"),
        (dict(path=f / "sub", kind="dir"), "is a file, so no folder"),
        (dict(path=f / "a" / "b.jsonl", kind="file"), "is a file, so no folder"),
        (dict(path=d, kind="dir", resume=True, overwrite=True), "contradict"),
        (dict(path=f, kind="file", must_not_exist=True), "already exists"),
    ]
    for kw, msg in cases:
        with pytest.raises(NegationClipError, match=msg):
            check_output(kw.pop("path"), **kw)
    assert check_output(tmp_path / "new" / "out.jsonl") == tmp_path / "new" / "out.jsonl"
    assert not (tmp_path / "new").exists()  # the guard creates nothing
    check_output(f, kind="file", must_not_exist=True, overwrite=True)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_check_output_refuses_a_read_only_folder(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        with pytest.raises(NegationClipError, match="permission denied"):
            check_output(ro / "out.jsonl")
    finally:
        ro.chmod(0o755)


def test_atomic_writers_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "a.txt", "x")
        with atomic_dir(tmp_path / "d") as t:
            (t / "f").write_text("y")
    finally:
        os.umask(old)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "d").stat().st_mode & 0o777 == 0o755


def test_writer_oserror_names_the_path(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(NegationClipError, match=r"file/out\.json: cannot write"):
        atomic_write_text(f / "out.json", "{}")
    with pytest.raises(NegationClipError, match="cannot write"):
        JsonlWriter(f / "log.jsonl")
    with pytest.raises(NegationClipError, match="cannot write"):
        with atomic_dir(f / "sub"):
            pass


def test_disk_full_is_a_clear_error_and_leaves_no_partial_file(tmp_path):
    """RLIMIT_FSIZE makes writes fail with EFBIG (Python ignores SIGXFSZ) like a full disk."""
    code = textwrap.dedent(f"""
        import resource, sys
        sys.path.insert(0, {SRC!r})
        from negationclip.utils import NegationClipError, atomic_write_bytes
        from negationclip.utils.io import JsonlWriter
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
        try:
            atomic_write_bytes({str(tmp_path / 'big.bin')!r}, b"x" * 100000)
        except NegationClipError as e:
            print("A", e)
        try:
            with JsonlWriter({str(tmp_path / 'log.jsonl')!r}) as w:
                for i in range(1000):
                    w.write({{"i": i, "pad": "y" * 50}})
        except NegationClipError as e:
            print("B", e)
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("A ") and "big.bin: cannot write: file too large" in lines[0]
    assert lines[1].startswith("B ") and "log.jsonl: cannot write" in lines[1]
    assert not (tmp_path / "big.bin").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    from negationclip.utils import read_jsonl
    recs = read_jsonl(tmp_path / "log.jsonl")  # a torn last line is dropped, the rest is intact
    assert recs and [r["i"] for r in recs] == list(range(len(recs)))


# --- the output lock -------------------------------------------------------------------------

def test_output_lock_refuses_a_second_writer_naming_the_holder(tmp_path):
    out = tmp_path / "p1.jsonl"
    code = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {SRC!r})
        from negationclip.utils.paths import OutputLock
        with OutputLock({str(out)!r}):
            print("locked", flush=True)
            time.sleep(30)
    """)
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(NegationClipError, match=rf"pid {holder.pid} on "):
            OutputLock(out).acquire()
        assert f"pid {holder.pid}" in lock_holder(out)
        with pytest.raises(NegationClipError, match="in use by another process"):
            check_output(out)
    finally:
        holder.kill()
        holder.wait()
    assert lock_holder(out) is None  # the kernel dropped the dead holder's lock
    with OutputLock(out):
        pass


def test_unreadable_inputs_are_named_errors(tmp_path, monkeypatch):
    """PermissionError on an input (simulated: root reads everything) -> a named error."""
    from negationclip.utils import load_json, read_jsonl

    f = tmp_path / "captions.json"
    f.write_text("{}")

    def denied(*a, **k):
        raise PermissionError(13, "Permission denied", str(f))

    monkeypatch.setattr("negationclip.utils.io.open", denied, raising=False)
    with pytest.raises(NegationClipError, match=r"captions\.json: cannot read: permission denied"):
        load_json(f)
    monkeypatch.setattr(Path, "read_bytes", denied)
    with pytest.raises(NegationClipError, match="cannot read: permission denied"):
        read_jsonl(f)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_captions_in_generate_is_a_clear_error(tmp_path, capsys):
    from negationclip.cli import main

    f = tmp_path / "captions.json"
    f.write_text('{"images": [], "annotations": []}')
    f.chmod(0)
    assert main(["generate", "p1", "--captions", str(f), "--out", str(tmp_path / "o.jsonl")]) == 2
    assert "permission denied" in capsys.readouterr().err
