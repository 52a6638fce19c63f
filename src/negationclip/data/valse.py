"""VALSE piece files: a JSON object ``{key: record}``; each record has at least ``image_file``,
``caption`` (true) and ``foil`` (false). Other fields differ between pieces and are kept in
``raw`` so a written file carries them unchanged."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ..utils import NegationClipError, load_json
from ._common import need, write_json


@dataclass
class ValseItem:
    key: str
    image_file: str
    caption: str  # true of the image
    foil: str  # false of the image
    dataset: str = ""
    piece: str = ""  # the file's stem, e.g. "existence"
    raw: dict = field(default_factory=dict)  # the full record as read (or to be written)


def load_valse(path: str | os.PathLike, piece: str | None = None) -> list[ValseItem]:
    obj = load_json(path)
    if not isinstance(obj, dict):
        raise NegationClipError(f"{path}: expected a JSON object {{key: record}}, "
                                f"got {type(obj).__name__}")
    piece = piece if piece is not None else Path(path).stem
    items: list[ValseItem] = []
    for key, rec in obj.items():
        loc = f"record {key!r}"
        items.append(ValseItem(key=str(key), image_file=need(rec, "image_file", str, path, loc),
                               caption=need(rec, "caption", str, path, loc),
                               foil=need(rec, "foil", str, path, loc),
                               dataset=str(rec.get("dataset", "")), piece=piece, raw=rec))
    return items


def write_valse(path: str | os.PathLike, items: Iterable[ValseItem]) -> None:
    """Write a piece file (4-space indent like the released files); the dataclass fields win
    over the same keys in ``raw``."""
    out: dict[str, dict] = {}
    for it in items:
        if it.key in out:
            raise NegationClipError(f"{path}: duplicate VALSE key {it.key!r}")
        rec = dict(it.raw)
        rec.update(image_file=it.image_file, caption=it.caption, foil=it.foil)
        if it.dataset or "dataset" in rec:
            rec["dataset"] = it.dataset or rec.get("dataset", "")
        out[it.key] = rec
    write_json(path, out, indent=4)
