"""Small shared helpers: errors, atomic writes, JSON/JSONL I/O, progress bars."""

from .errors import NegationClipError
from .io import (
    JsonlWriter,
    atomic_dir,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    load_json,
    read_jsonl,
)
from .progress import progress

__all__ = [
    "NegationClipError",
    "JsonlWriter",
    "atomic_dir",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "load_json",
    "read_jsonl",
    "progress",
]
