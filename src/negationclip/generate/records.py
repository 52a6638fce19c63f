"""Output records of the generators, the per-work-item ledger, and their JSONL I/O.

The output JSONL holds one :class:`GenRecord` per accepted caption. Beside it, a ledger
(``<out>.ledger.jsonl``) holds one line per finished work item (accepted or not, with the
model calls it cost and why candidates were dropped): it is what ``--resume`` and ``stats``
read, so neither has to trust the output alone.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from ..utils import NegationClipError, read_jsonl

PIPELINES = ("P1", "Rand-P1", "P2")
ROLES = ("proposer", "verifier", "rewriter")

# Why a candidate did not become a record; "accepted" is the only success.
OUTCOMES = (
    "accepted",
    "present",  # the verifier saw the object in the image
    "unsure",  # the verifier could not tell (unknown name, "maybe", ...)
    "verify_unparseable",  # the verifier's answer was neither yes nor no
    "proposal_unparseable",  # no usable object name in the proposer's answer
    "proposal_mentioned",  # the proposed object is already in the caption
    "rewrite_unparseable",  # empty / over-long rewrite answer
    "rewrite_rejected",  # the rewrite dropped the content or does not negate
    "question_unusable",  # P2: the question could not be turned into a statement
    "image_missing",  # image file missing or truncated (only when pixels are needed)
    "error",  # a model call failed after its retries
)


@dataclass
class GenRecord:
    """One accepted negated caption, with everything needed to trace where it came from."""

    id: str  # unique, deterministic: "<work_id>#<candidate index>"
    work_id: str
    pipeline: str  # "P1", "Rand-P1" or "P2"
    image_id: int
    image_file: str | None
    caption_id: int | None
    original: str
    negated: str
    affirmed: str | None = None  # the same caption stating the presence (hard negative)
    object: str | None = None  # P1: the absent object
    question_id: int | None = None  # P2
    question: str | None = None
    answer: str | None = None
    phrasing: str | None = None  # the rules template used, when the rewriter is "rules"
    backends: dict[str, dict[str, Any]] = field(default_factory=dict)  # role -> {backend, model}
    prompt_version: str = ""

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, rec: dict, where: str = "") -> "GenRecord":
        names = {f.name for f in fields(cls)}
        missing = [k for k in ("id", "work_id", "pipeline", "image_id", "original", "negated")
                   if k not in rec]
        if missing:
            raise NegationClipError(f"{where}: record is missing {', '.join(missing)}")
        return cls(**{k: v for k, v in rec.items() if k in names})


def ledger_path(out: str | os.PathLike) -> Path:
    return Path(str(out) + ".ledger.jsonl")


def cache_path(out: str | os.PathLike) -> Path:
    return Path(str(out) + ".vcache.jsonl")


def read_records(path: str | os.PathLike) -> list[GenRecord]:
    """Read a generation JSONL (a torn last line from a killed run is ignored)."""
    path = Path(path)
    if not path.exists():
        raise NegationClipError(f"{path}: file not found")
    out = []
    for i, rec in enumerate(read_jsonl(path), start=1):
        if not isinstance(rec, dict):
            raise NegationClipError(f"{path}:{i}: expected a JSON object per line")
        out.append(GenRecord.from_json(rec, f"{path}:{i}"))
    return out


def read_ledger(out: str | os.PathLike) -> tuple[dict | None, dict[str, dict]]:
    """(run header or None, {work_id: last item entry}) of the ledger beside ``out``."""
    header = None
    items: dict[str, dict] = {}
    for rec in read_jsonl(ledger_path(out)):
        if rec.get("type") == "run":
            header = header or rec
        elif rec.get("type") == "item" and "work_id" in rec:
            items[rec["work_id"]] = rec
    return header, items
