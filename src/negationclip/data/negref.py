"""NegRefCOCOg, exactly as released: a JSON list of ``{image, phrase, ref_bbox, bbox_list}``
with xywh boxes; the reference box is also in ``bbox_list`` (first in the released file)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass

from ..utils import NegationClipError, load_json
from ._common import need, need_box, write_json


@dataclass
class NegRefItem:
    image: str  # file name, resolved against an images folder
    phrase: str  # the (negated) referring expression
    ref_bbox: list[float]  # x, y, w, h of P+
    bbox_list: list[list[float]]  # all candidate boxes (P+ and the P- boxes)

    @property
    def ref_index(self) -> int:
        """Index of ``ref_bbox`` in ``bbox_list``."""
        return self.bbox_list.index(self.ref_bbox)


def load_negref(path: str | os.PathLike) -> list[NegRefItem]:
    obj = load_json(path)
    if not isinstance(obj, list):
        raise NegationClipError(f"{path}: expected a JSON list of records, got {type(obj).__name__}")
    items: list[NegRefItem] = []
    for i, rec in enumerate(obj):
        loc = f"record {i}"
        ref = need_box(need(rec, "ref_bbox", list, path, loc), path, loc, "ref_bbox")
        boxes = need(rec, "bbox_list", list, path, loc)
        if not boxes:
            raise NegationClipError(f"{path}: {loc}: 'bbox_list' is empty")
        boxes = [need_box(b, path, loc, f"bbox_list[{j}]") for j, b in enumerate(boxes)]
        if ref not in boxes:
            raise NegationClipError(f"{path}: {loc}: 'ref_bbox' is not one of 'bbox_list'")
        items.append(NegRefItem(image=need(rec, "image", str, path, loc),
                                phrase=need(rec, "phrase", str, path, loc),
                                ref_bbox=ref, bbox_list=boxes))
    return items


def write_negref(path: str | os.PathLike, items: Iterable[NegRefItem]) -> None:
    """Write in the released layout (4-space indent, no trailing newline: byte-identical on a
    round trip of the released file)."""
    write_json(path, [{"image": it.image, "phrase": it.phrase, "ref_bbox": list(it.ref_bbox),
                       "bbox_list": [list(b) for b in it.bbox_list]} for it in items], indent=4)
