"""NegBench's released CSVs (m1k2zoo/negbench), read as they are.

* Multiple choice (``COCO_val_mcq_llama3.1_rephrased.csv``, ``VOC2007_...``,
  ``synthetic_...``): ``image_path, caption_0 .. caption_3, correct_answer,
  correct_answer_template`` (``positive`` / ``negative`` / ``hybrid``); the binary files have
  ``image_path, caption_0, caption_1, correct_answer`` only.
* Retrieval (``COCO_val_retrieval.csv``, ``COCO_val_negated_retrieval_..._affneg_true.csv``):
  ``filepath, captions`` where ``captions`` is a Python list literal of strings. NegBench reads
  it with ``eval``; here it is ``ast.literal_eval`` (no code runs) and anything but a list of
  strings is an error naming the file and row.

Image paths are kept as written (absolute paths of the authors' cluster, usually); resolving
them on this machine is ``resolve_image``'s job. Rows are numbered as a spreadsheet would show
them (the header is row 1).
"""

from __future__ import annotations

import ast
import csv
import os
from dataclasses import dataclass
from pathlib import Path

from ..utils import NegationClipError

TEMPLATES = ("positive", "negative", "hybrid")


@dataclass
class McqItem:
    row: int  # line of the CSV (header = 1)
    image_path: str
    captions: list[str]
    correct_answer: int
    template: str | None  # correct_answer_template; None in the binary files


@dataclass
class RetrievalItem:
    row: int
    image_path: str
    captions: list[str]


def _read_csv(path: str | os.PathLike) -> tuple[list[str], list[tuple[int, dict]]]:
    """(header, [(row number, {column: cell})]); clear errors for unreadable or empty files."""
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            rows = list(reader)
    except FileNotFoundError:
        raise NegationClipError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise NegationClipError(f"{path}: is a folder, expected a CSV file") from None
    except UnicodeDecodeError as e:
        raise NegationClipError(f"{path}: not a UTF-8 text file ({e})") from None
    except csv.Error as e:
        raise NegationClipError(f"{path}: not a readable CSV file ({e})") from None
    if not rows or not any(c.strip() for c in rows[0]):
        raise NegationClipError(f"{path}: empty file (expected a header row)")
    header = [c.strip() for c in rows[0]]
    out = []
    line = 1
    for r in rows[1:]:
        line += 1
        if not r or not any(c.strip() for c in r):
            continue  # blank line
        if len(r) != len(header):
            raise NegationClipError(f"{path}: row {line}: {len(r)} cells, the header has {len(header)}")
        out.append((line, dict(zip(header, r))))
    if not out:
        raise NegationClipError(f"{path}: no data rows after the header")
    return header, out


def _require(path, header: list[str], cols: list[str], what: str) -> None:
    missing = [c for c in cols if c not in header]
    if missing:
        raise NegationClipError(f"{path}: missing column(s) {', '.join(missing)} for a {what} file "
                                f"(have: {', '.join(header)})")


def load_negbench_mcq(path: str | os.PathLike) -> list[McqItem]:
    """Rows of a NegBench multiple-choice CSV (4 options, or 2 for the binary files)."""
    header, rows = _read_csv(path)
    binary = "caption_1" in header and "caption_2" not in header
    n = 2 if binary else 4
    cols = ["image_path"] + [f"caption_{i}" for i in range(n)] + ["correct_answer"]
    if not binary:
        cols.append("correct_answer_template")
    _require(path, header, cols, "binary MCQ" if binary else "NegBench MCQ")
    items = []
    for line, rec in rows:
        raw = rec["correct_answer"].strip()
        try:
            ans = int(raw)
        except ValueError:
            ans = -1
        if not 0 <= ans < n:
            raise NegationClipError(f"{path}: row {line}: correct_answer {raw!r} should be an "
                                    f"integer 0..{n - 1}")
        tpl = None
        if not binary:
            tpl = rec["correct_answer_template"].strip()
            if tpl not in TEMPLATES:
                raise NegationClipError(f"{path}: row {line}: correct_answer_template {tpl!r} "
                                        f"should be one of {', '.join(TEMPLATES)}")
        img = rec["image_path"].strip()
        if not img:
            raise NegationClipError(f"{path}: row {line}: empty image_path")
        items.append(McqItem(line, img, [rec[f"caption_{i}"] for i in range(n)], ans, tpl))
    return items


def parse_caption_list(cell: str, path, line: int) -> list[str]:
    """A ``captions`` cell: a Python list literal of strings, read without running code."""
    try:
        val = ast.literal_eval(cell.strip())
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        raise NegationClipError(f"{path}: row {line}: captions {_short(cell)} is not a Python "
                                f"list literal") from None
    if not isinstance(val, list) or not all(isinstance(c, str) for c in val):
        raise NegationClipError(f"{path}: row {line}: captions should be a list of strings, "
                                f"got {_short(cell)}")
    return val


def _short(s: str, n: int = 60) -> str:
    return repr(s if len(s) <= n else s[:n] + "...")


def load_negbench_retrieval(path: str | os.PathLike) -> list[RetrievalItem]:
    """Rows of a NegBench retrieval CSV (one image and its list of captions per row)."""
    header, rows = _read_csv(path)
    _require(path, header, ["filepath", "captions"], "NegBench retrieval")
    items = []
    for line, rec in rows:
        img = rec["filepath"].strip()
        if not img:
            raise NegationClipError(f"{path}: row {line}: empty filepath")
        items.append(RetrievalItem(line, img, parse_caption_list(rec["captions"], path, line)))
    return items
