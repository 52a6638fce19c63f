"""Export generated records in the released ``negationclip_captions_train2014.json`` layout:
a COCO captions file whose annotations carry an extra ``updated_caption`` (the negated one),
so tools written for the released data read ours unchanged."""

from __future__ import annotations

import os

from ..data.coco import load_coco_captions
from ..utils import NegationClipError, atomic_write_json
from .records import read_records

FORMATS = ("negationclip-coco",)
PIPELINES = ("P1", "Rand-P1", "P2")


def export_records(inputs: list[str | os.PathLike], out: str | os.PathLike, *,
                   fmt: str = "negationclip-coco", captions: str | os.PathLike | None = None,
                   pipelines: list[str] | None = None) -> dict:
    """Write the records of ``inputs`` as a COCO captions file with ``updated_caption``.

    Each record becomes one annotation: ``id`` is the source caption's id the first time it
    is used (several records of one caption get fresh ids above all caption ids),
    ``caption`` the original, ``updated_caption`` the negated caption. ``images`` come from
    ``captions`` (the source captions file) when given, else from the records.
    """
    if fmt not in FORMATS:
        raise NegationClipError(f"unknown export format {fmt!r} (choose from {', '.join(FORMATS)})")
    if pipelines:
        unknown = [p for p in pipelines if p not in PIPELINES]
        if unknown:
            raise NegationClipError(f"export: unknown pipeline(s) {', '.join(map(repr, unknown))} "
                                    f"(choose from {', '.join(PIPELINES)})")
    recs = [r for p in inputs for r in read_records(p)]
    if pipelines:
        recs = [r for r in recs if r.pipeline in pipelines]
    if not recs:
        raise NegationClipError(f"export: no records to write from {', '.join(map(str, inputs))}"
                                + (f" for pipelines {', '.join(pipelines)}" if pipelines else "")
                                + "; nothing written")
    images: dict[int, dict] = {}
    if captions:
        src = load_coco_captions(captions)
        images = {i: {"id": im.id, "file_name": im.file_name, "width": im.width,
                      "height": im.height} for i, im in src.images.items()}
        max_id = max([c.id for c in src.captions] + [0])
    else:
        max_id = max([r.caption_id or 0 for r in recs] + [0])
    used: set[int] = set()
    anns = []
    next_id = max_id + 1
    for r in recs:
        if r.image_id not in images:
            if captions:
                raise NegationClipError(f"{inputs}: record {r.id} has image_id {r.image_id}, "
                                        f"which is not in {captions}")
            images[r.image_id] = {"id": r.image_id, "file_name": r.image_file or ""}
        cid = r.caption_id if r.caption_id is not None and r.caption_id not in used else None
        if cid is None:
            cid, next_id = next_id, next_id + 1
        used.add(cid)
        ann = {"image_id": r.image_id, "id": cid, "caption": r.original,
               "updated_caption": r.negated, "pipeline": r.pipeline}
        if r.caption_id is not None and cid != r.caption_id:
            ann["source_caption_id"] = r.caption_id
        anns.append(ann)
    obj = {"info": {"description": "NegationCLIP negated captions (negationclip generate)",
                    "version": "1.0"},
           "licenses": [],
           "images": sorted(images.values(), key=lambda im: im["id"]),
           "annotations": anns}
    atomic_write_json(out, obj, indent=None)
    return {"annotations": len(anns), "images": len(images), "out": str(out)}
