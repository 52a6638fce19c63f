"""Small shared helpers: errors, atomic writes, JSON/JSONL I/O, progress bars."""

from .errors import NegationClipError
from .io import (
    JsonlWriter,
    atomic_dir,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    load_json,
    load_torch_state,
    read_jsonl,
    torch_bytes,
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
    "load_torch_state",
    "read_jsonl",
    "torch_bytes",
    "progress",
]
