"""Progress bars: tqdm everywhere, quiet when NEGATIONCLIP_NO_PROGRESS is set (tests, CI logs)."""

from __future__ import annotations

import os
from typing import Iterable, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def progress_disabled() -> bool:
    return os.environ.get("NEGATIONCLIP_NO_PROGRESS", "") not in ("", "0")


def progress(iterable: Iterable[T] | None = None, *, desc: str = "", total: int | None = None,
             unit: str = "it", leave: bool = False, disable: bool | None = None, **kw) -> tqdm:
    """A tqdm bar with rates and ETA; ``disable=None`` follows NEGATIONCLIP_NO_PROGRESS."""
    if disable is None:
        disable = progress_disabled()
    return tqdm(iterable, desc=desc, total=total, unit=unit, leave=leave, disable=disable,
                dynamic_ncols=True, **kw)
