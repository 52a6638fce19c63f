"""Readers and writers for the real dataset formats (COCO, VQAv2, NegRefCOCOg, VALSE) and
NegWorld, the rendered world that exports data in exactly those formats."""

from .coco import (
    CocoAnnotation,
    CocoCaption,
    CocoCaptions,
    CocoImage,
    CocoInstances,
    KarpathyImage,
    load_coco_captions,
    load_coco_instances,
    load_karpathy,
    write_coco_captions,
    write_coco_instances,
    write_karpathy,
)
from .negref import NegRefItem, load_negref, write_negref
from .valse import ValseItem, load_valse, write_valse
from .vqa import VqaItem, load_vqa, write_vqa

__all__ = [
    "CocoAnnotation", "CocoCaption", "CocoCaptions", "CocoImage", "CocoInstances",
    "KarpathyImage", "load_coco_captions", "load_coco_instances", "load_karpathy",
    "write_coco_captions", "write_coco_instances", "write_karpathy",
    "NegRefItem", "load_negref", "write_negref",
    "ValseItem", "load_valse", "write_valse",
    "VqaItem", "load_vqa", "write_vqa",
]
