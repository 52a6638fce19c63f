"""SugarCREPE (Hsieh et al., NeurIPS 2023): seven JSON files ``{id: {filename, caption,
negative_caption}}`` over COCO val2017 images, one per kind of hard negative. Read as
CLIP_benchmark's ``datasets/sugar_crepe.py`` does (keys may be non-contiguous; the file order
is kept)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..utils import NegationClipError, load_json
from ._common import need

SUBSETS = ("add_att", "add_obj", "replace_att", "replace_obj", "replace_rel", "swap_att", "swap_obj")


@dataclass
class SugarCrepeItem:
    key: str
    filename: str
    caption: str
    negative_caption: str


def load_sugarcrepe(path: str | os.PathLike) -> list[SugarCrepeItem]:
    obj = load_json(path)
    if not isinstance(obj, dict):
        raise NegationClipError(f"{path}: expected a JSON object {{id: record}}, got {type(obj).__name__}")
    if not obj:
        raise NegationClipError(f"{path}: no items")
    items = []
    for key, rec in obj.items():
        loc = f"item {key!r}"
        items.append(SugarCrepeItem(str(key), need(rec, "filename", str, path, loc),
                                    need(rec, "caption", str, path, loc),
                                    need(rec, "negative_caption", str, path, loc)))
    return items


def sugarcrepe_files(folder: str | os.PathLike) -> dict[str, Path]:
    """Subset name -> file for the released files present in ``folder`` (at least one)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise NegationClipError(f"{folder}: SugarCREPE folder not found")
    found = {s: folder / f"{s}.json" for s in SUBSETS if (folder / f"{s}.json").is_file()}
    if not found:
        raise NegationClipError(f"{folder}: none of the SugarCREPE files ({', '.join(s + '.json' for s in SUBSETS)})")
    return found
