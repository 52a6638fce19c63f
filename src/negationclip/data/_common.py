"""Shared validation helpers for the real-format readers: every structural problem becomes a
NegationClipError that names the file and the record, never a KeyError traceback."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..utils import NegationClipError, atomic_write_text

_NUM = (int, float)


def where(path: str | os.PathLike, loc: str) -> str:
    return f"{path}: {loc}"


def need(rec: Any, key: str, types, path, loc: str) -> Any:
    """``rec[key]`` checked to be one of ``types``; otherwise a clear error."""
    if not isinstance(rec, dict):
        raise NegationClipError(f"{path}: {loc}: expected an object, got {type(rec).__name__}")
    if key not in rec:
        raise NegationClipError(f"{path}: {loc}: missing key {key!r}")
    val = rec[key]
    if types is not None and (not isinstance(val, types) or
                              (isinstance(val, bool) and bool not in _as_tuple(types))):
        raise NegationClipError(
            f"{path}: {loc}: {key!r} should be {_type_names(types)}, got {type(val).__name__}")
    return val


def need_list(obj: Any, key: str, path) -> list:
    if not isinstance(obj, dict):
        raise NegationClipError(f"{path}: expected a JSON object at top level, "
                                f"got {type(obj).__name__}")
    if key not in obj:
        raise NegationClipError(f"{path}: missing top-level key {key!r}")
    if not isinstance(obj[key], list):
        raise NegationClipError(f"{path}: {key!r} should be a list, got {type(obj[key]).__name__}")
    return obj[key]


def need_box(val: Any, path, loc: str, what: str = "box") -> list:
    if (not isinstance(val, list) or len(val) != 4
            or not all(isinstance(v, _NUM) and not isinstance(v, bool) for v in val)):
        raise NegationClipError(f"{path}: {loc}: {what} should be 4 numbers [x, y, w, h], got {val!r}")
    return val


def _as_tuple(types) -> tuple:
    return types if isinstance(types, tuple) else (types,)


def _type_names(types) -> str:
    return " or ".join(t.__name__ for t in _as_tuple(types))


def write_json(path: str | os.PathLike, obj: Any, indent: int | None = None,
               ensure_ascii: bool = True) -> None:
    """Atomic JSON write like the released benchmark files (json defaults, no trailing newline)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(obj, indent=indent, ensure_ascii=ensure_ascii))
