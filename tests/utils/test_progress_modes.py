"""Progress off a terminal prints plain lines (no carriage-return frames); NEGATIONCLIP_NO_PROGRESS
also silences transformers / huggingface_hub bars."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

SRC = str(Path(__file__).resolve().parents[2] / "src")


def _run(code: str, **env) -> subprocess.CompletedProcess:
    e = {k: v for k, v in os.environ.items() if k != "NEGATIONCLIP_NO_PROGRESS"}
    e.update(env, PYTHONPATH=SRC)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, env=e, timeout=120)


def test_redirected_progress_is_plain_lines():
    r = _run("""
        import time
        from negationclip.utils import progress
        for _ in progress(range(40), desc="work"):
            time.sleep(0.01)
    """, NEGATIONCLIP_PROGRESS_INTERVAL="0.1")
    assert r.returncode == 0, r.stderr
    assert "\r" not in r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("work:")]
    assert 2 <= len(lines) <= 15, r.stderr  # about one per interval, not one per item
    assert lines[0].startswith("work:   0%")


def test_no_progress_silences_library_bars():
    r = _run("""
        import os
        import negationclip.utils
        import huggingface_hub.utils as hu
        from transformers.utils import logging
        print(os.environ.get("HF_HUB_DISABLE_PROGRESS_BARS"), hu.are_progress_bars_disabled(),
              logging.is_progress_bar_enabled())
    """, NEGATIONCLIP_NO_PROGRESS="1")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["1", "True", "False"]


def test_no_progress_also_when_libraries_came_first():
    r = _run("""
        import huggingface_hub.utils as hu
        from transformers.utils import logging
        from negationclip.utils.progress import silence_library_bars
        silence_library_bars()
        print(hu.are_progress_bars_disabled(), logging.is_progress_bar_enabled())
    """, NEGATIONCLIP_NO_PROGRESS="1")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["True", "False"]
