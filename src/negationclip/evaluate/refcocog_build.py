"""Build NegRefCOCOg from RefCOCOg (``refs(umd).p`` + ``instances.json``).

The refs file is a Python pickle: untrusted input that could run any code if loaded with
``pickle.load``. It is read with :class:`RestrictedUnpickler`, which only admits builtin
containers, strings, numbers, bool and None, and refuses every global (``os.system``,
``builtins.eval``, any class) before anything is called.

Construction follows the paper: keep referring expressions that contain a negation cue; the
referred instance is P+; every other instance of the same category in the same image is a
P- candidate; drop pairs whose boxes are too small and records without a P-; expand the boxes
by a ratio (clipped to the image). Output is the released format: a JSON list of
``{"image", "phrase", "ref_bbox", "bbox_list"}`` with xywh boxes, the reference box first.
"""

from __future__ import annotations

import io
import os
import pickle
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from ..data.coco import load_coco_instances
from ..data.negref import NegRefItem, write_negref
from ..utils import NegationClipError

NEGATION_CUES: tuple[str, ...] = ("no", "not", "without", "none", "nothing", "nobody",
                                  "n't", "neither", "nor")

# Globals a benign Python 2/3 pickle of plain data may name: the set constructors (protocol
# <= 2 pickles sets through ``__builtin__.set``). Calling them cannot run code.
_SAFE_GLOBALS = {("builtins", "set"): set, ("builtins", "frozenset"): frozenset,
                 ("__builtin__", "set"): set, ("__builtin__", "frozenset"): frozenset}


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler for untrusted data files: builtin containers and scalars only.

    Every ``GLOBAL``/``STACK_GLOBAL`` goes through :meth:`find_class`, so refusing there means
    no callable other than ``set``/``frozenset`` can ever be reached by ``REDUCE``/``BUILD``;
    persistent ids are refused too.
    """

    def __init__(self, file, *, source: str = "<pickle>"):
        # Python 2 pickles store byte strings; RefCOCOg's are UTF-8 text.
        super().__init__(file, encoding="utf-8", errors="replace")
        self._source = source

    def find_class(self, module: str, name: str):  # noqa: D102
        if (module, name) in _SAFE_GLOBALS:
            return _SAFE_GLOBALS[(module, name)]
        raise NegationClipError(
            f"{self._source}: refusing to load: the pickle references '{module}.{name}', but only "
            f"builtin containers (list, dict, tuple, set), strings, numbers, bool and None are "
            f"allowed (a pickle that names other objects can run code when loaded)")

    def persistent_load(self, pid):  # noqa: D102
        raise NegationClipError(f"{self._source}: refusing to load: the pickle uses persistent ids")


def safe_load_pickle(path: str | os.PathLike) -> Any:
    """Load a data-only pickle without executing anything it names (see RestrictedUnpickler)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise NegationClipError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise NegationClipError(f"{path}: is a folder, expected a pickle file") from None
    try:
        return RestrictedUnpickler(io.BytesIO(data), source=str(path)).load()
    except NegationClipError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, KeyError, IndexError,
            AttributeError, UnicodeDecodeError, OverflowError) as e:
        raise NegationClipError(f"{path}: not a readable pickle ({type(e).__name__}: {e})") from None


def has_negation(text: str, cues: Sequence[str] = NEGATION_CUES) -> bool:
    """True if ``text`` contains a cue as a whole word (``n't``-style cues as a word suffix)."""
    low = text.lower().replace("\u2019", "'")
    for cue in cues:
        cue = cue.lower()
        if cue.startswith("n'"):
            if re.search(re.escape(cue) + r"\b", low):
                return True
        elif re.search(r"(?<![a-z'])" + re.escape(cue) + r"(?![a-z'])", low):
            return True
    return False


@dataclass
class BuildConfig:
    """Options of the construction; defaults mirror the paper's constraints."""

    cues: tuple[str, ...] = NEGATION_CUES
    splits: tuple[str, ...] | None = None      # RefCOCOg splits to use (None: all)
    min_box_area: float = 0.0                  # pixels; P+ below it drops the record, P- is dropped
    min_box_area_frac: float = 0.0             # same, as a fraction of the image area
    expand_ratio: float = 0.0                  # each side grows by ratio * box size / 2
    pairs: bool = True                         # one record per (P+, P-) pair, as released
    require_negative: bool = True
    text_field: str = "sent"                   # "sent" (normalised) or "raw"


@dataclass
class BuildStats:
    refs: int = 0
    sentences: int = 0
    negated_sentences: int = 0
    records: int = 0
    skipped: Counter = field(default_factory=Counter)

    def as_dict(self) -> dict:
        return {"refs": self.refs, "sentences": self.sentences,
                "negated_sentences": self.negated_sentences, "records": self.records,
                "skipped": dict(self.skipped)}


def _expand(box: Sequence[float], ratio: float, width: float, height: float) -> list[float]:
    x, y, w, h = (float(v) for v in box)
    dx, dy = ratio * w / 2.0, ratio * h / 2.0
    x0, y0 = max(0.0, x - dx), max(0.0, y - dy)
    x1, y1 = min(width, x + w + dx), min(height, y + h + dy)
    return [x0, y0, x1 - x0, y1 - y0]


def _inside(box: Sequence[float], im: dict) -> bool:
    """At least a 1x1 pixel of the box lies inside the image (instances outside it, from a
    wrong 'width'/'height' or a bad box, would become boxes of negative size once clipped)."""
    c = _expand(box, 0.0, im["width"], im["height"])
    return c[2] >= 1.0 and c[3] >= 1.0


def _check_list(obj: Any, what: str, source: str) -> list:
    if not isinstance(obj, list):
        raise NegationClipError(f"{source}: expected {what} to be a list, got {type(obj).__name__}")
    return obj


def build_negrefcocog(refs_path: str | os.PathLike, instances_path: str | os.PathLike,
                      config: BuildConfig | None = None) -> tuple[list[dict], BuildStats]:
    """Return the NegRefCOCOg records (released format) and counts of what was kept/skipped."""
    cfg = config or BuildConfig()
    refs = _check_list(safe_load_pickle(refs_path), "the refs pickle", str(refs_path))
    inst = load_coco_instances(instances_path)
    images = {iid: {"file_name": im.file_name, "width": float(im.width),
                    "height": float(im.height)} for iid, im in inst.images.items()}
    anns: dict[int, dict] = {}
    by_image_cat: dict[tuple[int, int], list[int]] = defaultdict(list)
    for iid, lst in inst.annotations_by_image.items():
        for a in lst:
            anns[a.id] = {"image_id": iid, "category_id": a.category_id,
                          "bbox": [float(v) for v in a.bbox]}
            by_image_cat[(iid, a.category_id)].append(a.id)

    stats = BuildStats()
    out: list[dict] = []
    seen: set[tuple] = set()

    def small(box: Sequence[float], im: dict) -> bool:
        area = box[2] * box[3]
        return (box[2] <= 0 or box[3] <= 0 or area < cfg.min_box_area
                or area < cfg.min_box_area_frac * im["width"] * im["height"])

    for r_i, ref in enumerate(refs):
        if not isinstance(ref, dict):
            raise NegationClipError(f"{refs_path}: refs[{r_i}] is not a dict")
        stats.refs += 1
        if cfg.splits is not None and ref.get("split") not in cfg.splits:
            stats.skipped["split"] += 1
            continue
        try:
            ann_id, sentences = ref["ann_id"], ref["sentences"]
        except KeyError as e:
            raise NegationClipError(f"{refs_path}: refs[{r_i}] lacks {e.args[0]!r}") from None
        if isinstance(ann_id, bool) or not isinstance(ann_id, int):
            raise NegationClipError(f"{refs_path}: refs[{r_i}]: 'ann_id' must be an integer, got "
                                    f"{type(ann_id).__name__} {str(ann_id)[:40]}")
        if not isinstance(sentences, list):
            raise NegationClipError(f"{refs_path}: refs[{r_i}]: 'sentences' must be a list, got "
                                    f"{type(sentences).__name__} {str(sentences)[:40]}")
        phrases = []
        for s in sentences:
            stats.sentences += 1
            text = (s.get(cfg.text_field) or s.get("sent") or s.get("raw")) if isinstance(s, dict) else None
            if not isinstance(text, str) or not text.strip():
                stats.skipped["empty_sentence"] += 1
                continue
            if has_negation(text, cfg.cues):
                stats.negated_sentences += 1
                phrases.append(text.strip())
        if not phrases:
            continue
        ann = anns.get(ann_id)
        if ann is None:
            stats.skipped["ann_not_in_instances"] += len(phrases)
            continue
        im = images.get(ann["image_id"])
        if im is None:
            stats.skipped["image_not_in_instances"] += len(phrases)
            continue
        if not _inside(ann["bbox"], im):
            stats.skipped["reference_box_outside_image"] += len(phrases)
            continue
        if small(ann["bbox"], im):
            stats.skipped["small_reference_box"] += len(phrases)
            continue
        negatives = [anns[a]["bbox"] for a in by_image_cat[(ann["image_id"], ann["category_id"])]
                     if a != ann_id]
        inside = [b for b in negatives if _inside(b, im)]
        if len(inside) < len(negatives):
            stats.skipped["negative_box_outside_image"] += (len(negatives) - len(inside)) * len(phrases)
        kept = [b for b in inside if not small(b, im)]
        if len(kept) < len(inside):
            stats.skipped["small_negative_box"] += (len(inside) - len(kept)) * len(phrases)
        if not kept and cfg.require_negative:
            stats.skipped["no_negative"] += len(phrases)
            continue
        pos = _expand(ann["bbox"], cfg.expand_ratio, im["width"], im["height"])
        negs = [_expand(b, cfg.expand_ratio, im["width"], im["height"]) for b in kept]
        groups = [[n] for n in negs] if cfg.pairs else [negs]
        for phrase in phrases:
            for g in groups:
                key = (im["file_name"], phrase, tuple(pos), tuple(tuple(b) for b in g))
                if key in seen:
                    stats.skipped["duplicate"] += 1
                    continue
                seen.add(key)
                out.append({"image": im["file_name"], "phrase": phrase, "ref_bbox": list(pos),
                            "bbox_list": [list(pos)] + [list(b) for b in g]})
    stats.records = len(out)
    return out, stats


def write_negrefcocog(records: list[dict], path: str | os.PathLike) -> None:
    """Write the released layout (atomically: a killed run never leaves half a file)."""
    write_negref(path, [NegRefItem(**r) for r in records])
