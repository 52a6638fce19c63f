"""NegWorld: a procedurally rendered world with exact ground truth, exported in the real
dataset formats (COCO, VQAv2, NegRefCOCOg, VALSE), the field's benchmark formats (NegBench MCQ
and retrieval CSVs, CC-Neg, SugarCREPE; see ``field``) and a balanced negated-retrieval test,
so every downstream stage consumes it through the same code paths as real data."""

from . import field
from .captions import captions, noun_phrase, questions
from .export import (NegationPair, WorldExport, assign_splits, build_world, load_negation_pairs,
                     load_scenes, negref_box)
from .phrasing import (HELDOUT_CUES, HELDOUT_PAIR_TEMPLATES, NEGATION_WORDS, TRAIN_NEGATION_CUES,
                       TRAIN_PAIR_TEMPLATES, contains_negation, uses_heldout_cue)
from .render import bbox, render, segmentation
from .scenes import Obj, Scene, WorldConfig, plausible_absent, replace_object, sample_scene
from .vocab import CATEGORIES, CATEGORY_IDS, COLORS, CONTEXTS, PARTS, SIZES

__all__ = [
    "WorldConfig", "Obj", "Scene", "sample_scene", "plausible_absent", "replace_object",
    "render", "bbox", "segmentation", "captions", "noun_phrase", "questions",
    "field", "build_world", "assign_splits", "WorldExport", "NegationPair", "load_negation_pairs",
    "load_scenes", "negref_box",
    "TRAIN_NEGATION_CUES", "HELDOUT_CUES", "TRAIN_PAIR_TEMPLATES", "HELDOUT_PAIR_TEMPLATES",
    "NEGATION_WORDS", "contains_negation", "uses_heldout_cue",
    "CATEGORIES", "CATEGORY_IDS", "COLORS", "CONTEXTS", "PARTS", "SIZES",
]
