"""COCO captions / instances and the Karpathy split file (``dataset_coco.json``).

Readers validate structure and name the file and record on any problem; writers produce files
that ``pycocotools.coco.COCO`` loads (NegWorld writes its exports with them).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..utils import NegationClipError, load_json
from ._common import need, need_box, need_list, write_json

_NUM = (int, float)


@dataclass
class CocoImage:
    id: int
    file_name: str
    width: int
    height: int


@dataclass
class CocoCaption:
    id: int
    image_id: int
    caption: str


@dataclass
class CocoCaptions:
    images: dict[int, CocoImage]
    captions: list[CocoCaption]

    def captions_by_image(self) -> dict[int, list[CocoCaption]]:
        """Captions grouped per image id, in file order; images without captions map to []."""
        out: dict[int, list[CocoCaption]] = {i: [] for i in self.images}
        for c in self.captions:
            out.setdefault(c.image_id, []).append(c)
        return out


@dataclass
class CocoAnnotation:
    id: int
    image_id: int
    category_id: int
    bbox: list[float]  # x, y, w, h in pixels
    area: float
    segmentation: Any = None  # polygons [[x1, y1, ...], ...] or RLE {"size", "counts"}
    iscrowd: int = 0


@dataclass
class CocoInstances:
    images: dict[int, CocoImage]
    categories: dict[int, str]  # id -> name
    annotations_by_image: dict[int, list[CocoAnnotation]] = field(default_factory=dict)
    supercategories: dict[int, str] = field(default_factory=dict)

    def category_names_in_image(self, image_id: int) -> set[str]:
        return {self.categories[a.category_id] for a in self.annotations_by_image.get(image_id, [])}

    def category_id(self, name: str) -> int:
        for cid, n in self.categories.items():
            if n == name:
                return cid
        raise NegationClipError(f"unknown COCO category {name!r}")


def _read_images(obj, path) -> dict[int, CocoImage]:
    images: dict[int, CocoImage] = {}
    for i, rec in enumerate(need_list(obj, "images", path)):
        loc = f"images[{i}]"
        img = CocoImage(id=need(rec, "id", int, path, loc),
                        file_name=need(rec, "file_name", str, path, loc),
                        width=int(need(rec, "width", _NUM, path, loc)),
                        height=int(need(rec, "height", _NUM, path, loc)))
        if img.id in images:
            raise NegationClipError(f"{path}: {loc}: duplicate image id {img.id}")
        images[img.id] = img
    return images


def load_coco_captions(path: str | os.PathLike) -> CocoCaptions:
    """Read a COCO captions file (e.g. ``captions_train2014.json``)."""
    obj = load_json(path)
    images = _read_images(obj, path)
    caps: list[CocoCaption] = []
    for i, rec in enumerate(need_list(obj, "annotations", path)):
        loc = f"annotations[{i}]"
        c = CocoCaption(id=need(rec, "id", int, path, loc),
                        image_id=need(rec, "image_id", int, path, loc),
                        caption=need(rec, "caption", str, path, loc))
        if c.image_id not in images:
            raise NegationClipError(f"{path}: {loc}: image_id {c.image_id} is not in 'images'")
        caps.append(c)
    return CocoCaptions(images=images, captions=caps)


def load_coco_instances(path: str | os.PathLike) -> CocoInstances:
    """Read a COCO instances file (e.g. ``instances_train2014.json``)."""
    obj = load_json(path)
    images = _read_images(obj, path)
    cats: dict[int, str] = {}
    supers: dict[int, str] = {}
    for i, rec in enumerate(need_list(obj, "categories", path)):
        loc = f"categories[{i}]"
        cid = need(rec, "id", int, path, loc)
        cats[cid] = need(rec, "name", str, path, loc)
        if isinstance(rec.get("supercategory"), str):
            supers[cid] = rec["supercategory"]
    by_image: dict[int, list[CocoAnnotation]] = {i: [] for i in images}
    for i, rec in enumerate(need_list(obj, "annotations", path)):
        loc = f"annotations[{i}]"
        a = CocoAnnotation(id=need(rec, "id", int, path, loc),
                           image_id=need(rec, "image_id", int, path, loc),
                           category_id=need(rec, "category_id", int, path, loc),
                           bbox=need_box(need(rec, "bbox", list, path, loc), path, loc, "bbox"),
                           area=float(need(rec, "area", _NUM, path, loc) if "area" in rec else 0.0),
                           segmentation=rec.get("segmentation"),
                           iscrowd=int(need(rec, "iscrowd", (int, bool), path, loc)
                                       if "iscrowd" in rec else 0))
        if a.image_id not in images:
            raise NegationClipError(f"{path}: {loc}: image_id {a.image_id} is not in 'images'")
        if a.category_id not in cats:
            raise NegationClipError(f"{path}: {loc}: category_id {a.category_id} is not in 'categories'")
        by_image[a.image_id].append(a)
    return CocoInstances(images=images, categories=cats, annotations_by_image=by_image,
                         supercategories=supers)


def _images_list(images: Mapping[int, CocoImage] | Iterable[CocoImage]) -> list[dict]:
    seq = images.values() if isinstance(images, Mapping) else images
    return [{"id": im.id, "file_name": im.file_name, "width": im.width, "height": im.height}
            for im in seq]


def _info(description: str) -> dict:
    return {"description": description, "version": "1.0", "year": 2026,
            "contributor": "negationclip", "url": "", "date_created": ""}


def write_coco_captions(path: str | os.PathLike, images, captions: Iterable[CocoCaption], *,
                        description: str = "negationclip captions") -> None:
    """Write a COCO captions file (``info``, ``licenses``, ``images``, ``annotations``)."""
    write_json(path, {
        "info": _info(description), "licenses": [],
        "images": _images_list(images),
        "annotations": [{"id": c.id, "image_id": c.image_id, "caption": c.caption} for c in captions],
    })


def write_coco_instances(path: str | os.PathLike, images, categories, annotations, *,
                         supercategories: Mapping[int, str] | None = None,
                         description: str = "negationclip instances") -> None:
    """Write a COCO instances file. ``categories``: {id: name}; ``annotations``: CocoAnnotation
    objects (or a {image_id: [CocoAnnotation]} mapping)."""
    supercategories = supercategories or {}
    if isinstance(annotations, Mapping):
        annotations = [a for anns in annotations.values() for a in anns]
    write_json(path, {
        "info": _info(description), "licenses": [],
        "images": _images_list(images),
        "categories": [{"id": cid, "name": name, "supercategory": supercategories.get(cid, name)}
                       for cid, name in sorted(categories.items())],
        "annotations": [{"id": a.id, "image_id": a.image_id, "category_id": a.category_id,
                         "bbox": list(a.bbox), "area": a.area, "segmentation": a.segmentation,
                         "iscrowd": a.iscrowd} for a in annotations],
    })


# --- Karpathy split file ---------------------------------------------------------------------

@dataclass
class KarpathyImage:
    cocoid: int
    filename: str
    filepath: str  # e.g. "train2014" or "val2014"; the image is <root>/<filepath>/<filename>
    split: str  # "train", "restval", "val" or "test"
    captions: list[str]


def load_karpathy(path: str | os.PathLike) -> list[KarpathyImage]:
    """Read Karpathy's ``dataset_coco.json`` (images with split and raw sentences)."""
    obj = load_json(path)
    out: list[KarpathyImage] = []
    for i, rec in enumerate(need_list(obj, "images", path)):
        loc = f"images[{i}]"
        sents = need(rec, "sentences", list, path, loc)
        caps = [need(s, "raw", str, path, f"{loc}.sentences[{j}]") for j, s in enumerate(sents)]
        cocoid = rec.get("cocoid", rec.get("imgid"))
        if not isinstance(cocoid, int):
            raise NegationClipError(f"{path}: {loc}: missing integer 'cocoid'")
        out.append(KarpathyImage(cocoid=cocoid, filename=need(rec, "filename", str, path, loc),
                                 filepath=str(rec.get("filepath", "")),
                                 split=need(rec, "split", str, path, loc), captions=caps))
    return out


def write_karpathy(path: str | os.PathLike, items: Iterable[KarpathyImage]) -> None:
    images, sentid = [], 0
    for imgid, it in enumerate(items):
        sents = []
        for raw in it.captions:
            sents.append({"tokens": raw.lower().strip(" .").split(), "raw": raw,
                          "imgid": imgid, "sentid": sentid})
            sentid += 1
        images.append({"filepath": it.filepath, "sentids": [s["sentid"] for s in sents],
                       "filename": it.filename, "imgid": imgid, "split": it.split,
                       "sentences": sents, "cocoid": it.cocoid})
    write_json(path, {"images": images, "dataset": "coco"})
