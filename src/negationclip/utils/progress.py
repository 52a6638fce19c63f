"""Progress bars: tqdm everywhere, quiet when NEGATIONCLIP_NO_PROGRESS is set (tests, CI logs).

On a terminal a bar redraws in place. When stderr is a file or a pipe (a log, CI, nohup), a
bar instead prints one plain line at most every $NEGATIONCLIP_PROGRESS_INTERVAL seconds
(default 30), so a log holds a readable history instead of thousands of carriage-return frames.
NEGATIONCLIP_NO_PROGRESS=1 also silences the bars of transformers and huggingface_hub.
"""

from __future__ import annotations

import os
import sys
from typing import Iterable, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def progress_disabled() -> bool:
    return os.environ.get("NEGATIONCLIP_NO_PROGRESS", "") not in ("", "0")


def silence_library_bars() -> None:
    """With NEGATIONCLIP_NO_PROGRESS set, turn off the transformers / huggingface_hub bars too
    (env var for libraries not yet imported; their switches for those already imported)."""
    if not progress_disabled():
        return
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    if "huggingface_hub" in sys.modules:
        try:
            from huggingface_hub.utils import disable_progress_bars
            disable_progress_bars()
        except Exception:  # an old or odd huggingface_hub: its bars are cosmetic
            pass
    if "transformers" in sys.modules:
        try:
            from transformers.utils import logging as hf_logging
            hf_logging.disable_progress_bar()
        except Exception:
            pass


def line_interval() -> float:
    """Seconds between plain progress lines when stderr is not a terminal."""
    try:
        return max(0.0, float(os.environ.get("NEGATIONCLIP_PROGRESS_INTERVAL", "30")))
    except ValueError:
        return 30.0


class _LineFile:
    """What tqdm writes, as whole lines: each redraw ('\\r' + bar) becomes one line; the
    clearing writes (only '\\r' and spaces) vanish."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, s: str) -> None:
        text = s.replace("\r", "").strip()
        if text:
            self._stream.write(text + "\n")

    def flush(self) -> None:
        self._stream.flush()


def _isatty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def progress(iterable: Iterable[T] | None = None, *, desc: str = "", total: int | None = None,
             unit: str = "it", leave: bool = False, disable: bool | None = None, **kw) -> tqdm:
    """A tqdm bar with rates and ETA; ``disable=None`` follows NEGATIONCLIP_NO_PROGRESS."""
    if disable is None:
        disable = progress_disabled()
    if not disable and "file" not in kw and not _isatty(sys.stderr):
        kw.setdefault("mininterval", line_interval())
        kw["file"] = _LineFile(sys.stderr)
        kw.setdefault("ncols", 100)
        return tqdm(iterable, desc=desc, total=total, unit=unit, leave=leave, disable=disable, **kw)
    return tqdm(iterable, desc=desc, total=total, unit=unit, leave=leave, disable=disable,
                dynamic_ncols=True, **kw)


silence_library_bars()
