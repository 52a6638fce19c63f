"""Readers and writers for the real dataset formats (COCO, VQAv2, NegRefCOCOg, VALSE, NegBench,
CC-Neg, SugarCREPE) and
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
from .ccneg import CcNegItem, load_ccneg
from .negbench import McqItem, RetrievalItem, load_negbench_mcq, load_negbench_retrieval
from .negref import NegRefItem, load_negref, write_negref
from .sugarcrepe import SUBSETS as SUGARCREPE_SUBSETS, SugarCrepeItem, load_sugarcrepe, sugarcrepe_files
from .valse import ValseItem, load_valse, write_valse
from .vqa import VqaItem, load_vqa, write_vqa

__all__ = [
    "CocoAnnotation", "CocoCaption", "CocoCaptions", "CocoImage", "CocoInstances",
    "KarpathyImage", "load_coco_captions", "load_coco_instances", "load_karpathy",
    "write_coco_captions", "write_coco_instances", "write_karpathy",
    "NegRefItem", "load_negref", "write_negref",
    "ValseItem", "load_valse", "write_valse",
    "VqaItem", "load_vqa", "write_vqa",
    "CcNegItem", "load_ccneg", "McqItem", "RetrievalItem", "load_negbench_mcq",
    "load_negbench_retrieval", "SUGARCREPE_SUBSETS", "SugarCrepeItem", "load_sugarcrepe",
    "sugarcrepe_files",
]
