"""Training captions: read the three input layouts, build the caption mix, split, tokenize, batch.

Layouts read (all give the same ``CaptionRecord``):
- the generation stage's JSONL (``id``, ``caption_id``, ``image_id``, ``image_file`` (or
  ``image``), ``original``, ``negated``, ``object``, ``pipeline``, optional ``affirmed``);
- the released ``negationclip_captions_train2014.json`` (COCO captions whose annotations carry
  ``updated_caption``, the negated caption);
- plain COCO captions (``caption`` only: fine-tune on originals with ``mix="original"``).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import torch

from ..utils import NegationClipError, load_json, read_jsonl


@dataclass
class CaptionRecord:
    """One source caption: where its image is, the negated text and the texts it came from."""

    image: str                      # file name or path relative to the image root (or absolute)
    negated: str | None = None
    original: str | None = None
    affirmed: str | None = None     # the caption stating the negated object's presence
    id: str = ""
    image_id: str | int | None = None
    object: str | None = None
    pipeline: str | None = None
    negative_image: str | None = None  # optional: an image where the negated thing IS present
    where: str = ""                 # "file:line" for messages
    present_objects: list[str] | None = None  # optional: objects shown in the image (methods/omni)
    negative_texts: list[str] | None = None  # optional: texts false of the image, always used as
    #                                          hard negatives of the negated row (presence negation)
    negated_property: str | None = None  # optional: a part/attribute negation's "kind:value"
    #                                      (NegWorld scene-graph records: "color:yellow")


@dataclass
class Example:
    """One training row: an image key, its caption, and optional hard-negative texts/image."""

    image: str                      # image key (resolved path) for the embedding cache
    text: str
    kind: str = "negated"           # negated | original
    hard_texts: tuple[str, ...] = ()
    hard_image: str | None = None
    where: str = ""
    object: str | None = None       # the negated object (P1), for mining hard-negative images
    # an attribute or part the row negates instead of an object ("color:yellow"): with
    # ``object``, what the negationclip method's prototype term groups rows by
    negated_property: str | None = None
    aux: dict = field(default_factory=dict)  # a training method's own per-row data (methods/)


@dataclass
class ReadReport:
    records: list[CaptionRecord]
    skipped: Counter = field(default_factory=Counter)   # reason -> count

    def summary(self) -> str:
        if not self.skipped:
            return f"{len(self.records)} records"
        parts = ", ".join(f"{n} {r}" for r, n in sorted(self.skipped.items()))
        return f"{len(self.records)} records ({parts} skipped)"


def _text(v) -> str | None:
    if isinstance(v, str) and v.strip():
        return v.strip()
    return None


def _names(v) -> list[str] | None:
    if isinstance(v, list) and all(isinstance(x, str) for x in v) and v:
        return list(v)
    return None


def _from_generation(path: Path, rows: Iterable[tuple[int, dict]], report: ReadReport) -> None:
    for line, r in rows:
        where = f"{path}:{line}"
        if not isinstance(r, dict):
            raise NegationClipError(f"{where}: expected a JSON object, got {type(r).__name__}")
        image = r.get("image") or r.get("image_file") or r.get("file_name")
        if not isinstance(image, str) or not image:
            if not any(k in r for k in ("image", "image_file", "file_name")):
                raise NegationClipError(
                    f"{where}: record has no 'image' or 'image_file' (file name of its image)")
            report.skipped["without an image file name"] += 1
            continue
        negated, original = _text(r.get("negated")), _text(r.get("original"))
        if negated is None and original is None:
            report.skipped["without caption text"] += 1
            continue
        report.records.append(CaptionRecord(
            image=image, negated=negated, original=original, affirmed=_text(r.get("affirmed")),
            id=str(r.get("id", r.get("caption_id", line))), image_id=r.get("image_id"),
            object=r.get("object"), pipeline=r.get("pipeline"),
            negative_image=r.get("negative_image") or None, where=where,
            present_objects=_names(r.get("present_objects")),
            negative_texts=_names(r.get("negative_texts")),
            negated_property=_text(r.get("negated_property"))))


def _from_coco(path: Path, data: dict, report: ReadReport) -> None:
    images = data.get("images")
    anns = data.get("annotations")
    if not isinstance(images, list) or not isinstance(anns, list):
        raise NegationClipError(f"{path}: a COCO captions file needs 'images' and 'annotations' lists")
    files = {}
    for i, im in enumerate(images):
        if not isinstance(im, dict) or "id" not in im or "file_name" not in im:
            raise NegationClipError(f"{path}: images[{i}] needs 'id' and 'file_name'")
        files[im["id"]] = im["file_name"]
    for i, a in enumerate(anns):
        where = f"{path}: annotations[{i}]"
        if not isinstance(a, dict) or "image_id" not in a:
            raise NegationClipError(f"{where}: needs 'image_id'")
        if a["image_id"] not in files:
            raise NegationClipError(f"{where}: image_id {a['image_id']!r} is not in 'images'")
        negated, original = _text(a.get("updated_caption")), _text(a.get("caption"))
        if negated is None and original is None:
            report.skipped["without caption text"] += 1
            continue
        report.records.append(CaptionRecord(
            image=files[a["image_id"]], negated=negated, original=original,
            affirmed=_text(a.get("affirmed_caption")), id=str(a.get("id", i)),
            image_id=a["image_id"], where=where))


def read_records(paths: str | Path | Sequence[str | Path]) -> ReadReport:
    """Read caption records from JSONL (generation) or JSON (COCO / released layout) files."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    report = ReadReport(records=[])
    for p in paths:
        p = Path(p)
        if not p.exists():
            raise NegationClipError(f"{p}: file not found")
        if p.suffix == ".jsonl":
            _from_generation(p, enumerate(read_jsonl(p), start=1), report)
            continue
        data = load_json(p)
        if isinstance(data, dict) and "annotations" in data:
            _from_coco(p, data, report)
        elif isinstance(data, list):
            _from_generation(p, enumerate(data, start=1), report)
        else:
            raise NegationClipError(
                f"{p}: not a caption file: expected generation records (JSONL or a JSON list) or a "
                "COCO captions JSON with 'images' and 'annotations'")
    return report


def coerce_records(records) -> list[CaptionRecord]:
    """Accept CaptionRecords or plain dicts in the generation layout (the Python API)."""
    out: list[CaptionRecord] = []
    dicts = []
    for r in records:
        if isinstance(r, CaptionRecord):
            out.append(r)
        else:
            dicts.append(r)
    if dicts:
        rep = ReadReport(records=[])
        _from_generation(Path("<records>"), enumerate(dicts, start=1), rep)
        out.extend(rep.records)
    return out


def image_key(image: str, image_root: str | Path | None) -> str:
    """The cache key of an image: its resolved path (stable across working directories)."""
    full = image if image_root is None or os.path.isabs(image) else os.path.join(image_root, image)
    return _resolved(os.fspath(full), "" if os.path.isabs(full) else os.getcwd())


@functools.lru_cache(maxsize=1 << 18)
def _resolved(path: str, cwd: str) -> str:
    # memoised: a caption set names each image several times, and resolving walks the file
    # system (it was most of the time before the first training step); ``cwd`` keys relative
    # paths to the working directory they were resolved in
    return str(Path(path).resolve())


def build_examples(records: Sequence[CaptionRecord], *, image_root: str | Path | None,
                   mix: str = "negated", original_ratio: float = 0.0,
                   hard_negatives: str = "none", seed: int = 0) -> tuple[list[Example], Counter]:
    """Turn records into training rows following the data mix; returns (examples, notes).

    ``negated``: one row per negated caption (the paper). ``original``: the original captions
    only. ``both``: negated + each distinct original caption once. ``ratio``: negated + a seeded
    sample of ``original_ratio`` originals per negated caption. Hard negatives attach to
    negated rows only (an original row's text is true of the image and says nothing absent).
    """
    notes: Counter = Counter()
    negated_rows: list[Example] = []
    originals: dict[tuple[str, str], Example] = {}
    want_orig = hard_negatives in ("original", "both")
    want_aff = hard_negatives in ("affirmed", "both")
    for r in records:
        key = image_key(r.image, image_root)
        hard_img = image_key(r.negative_image, image_root) if r.negative_image else None
        if r.negated is not None and mix != "original":
            hard: list[str] = []
            if want_orig:
                if r.original and r.original != r.negated:
                    hard.append(r.original)
                else:
                    notes["negated rows without an original caption for a hard negative"] += 1
            if want_aff:
                if r.affirmed:
                    hard.append(r.affirmed)
                else:
                    notes["negated rows without an 'affirmed' caption for a hard negative"] += 1
            hard.extend(t for t in r.negative_texts or () if t != r.negated)
            negated_rows.append(Example(key, r.negated, "negated", tuple(hard), hard_img, r.where,
                                        r.object, r.negated_property))
        if r.original is not None and (key, r.original) not in originals:
            originals[(key, r.original)] = Example(key, r.original, "original", (), None, r.where)
    orig_rows = list(originals.values())
    if mix == "negated":
        rows = negated_rows
    elif mix == "original":
        rows = orig_rows
    elif mix == "both":
        rows = negated_rows + orig_rows
    elif mix == "ratio":
        k = min(len(orig_rows), int(round(original_ratio * len(negated_rows))))
        rng = random.Random(seed)
        rows = negated_rows + rng.sample(orig_rows, k)
    else:
        raise NegationClipError(f"unknown data mix {mix!r}")
    if records and not negated_rows and mix != "original":
        raise NegationClipError(
            "the records have no negated captions (plain COCO captions?): pass mix 'original' "
            "to fine-tune on the original captions")
    if hard_negatives == "affirmed" and negated_rows and not any(e.hard_texts for e in negated_rows):
        raise NegationClipError(
            "hard_negatives='affirmed' but no record has an 'affirmed' caption "
            "(the generation stage writes it when the rewriter states the object's presence)")
    return rows, notes


def split_examples(examples: Sequence[Example], val_fraction: float, *, by: str = "caption",
                   seed: int = 42) -> tuple[list[Example], list[Example]]:
    """Seeded train/validation split, by caption (the released rule) or by image.

    ``caption``: the released ``clip_finetune.py`` rule: ``np.random.seed(seed)``, shuffle the
    list of row indices with ``np.random.shuffle``, the first ``floor(val_fraction * n)`` are
    validation, the rest training, both in that shuffled order (what its ``Subset``s hold, so
    validation batches come out as the released ones). ``image``: whole images go to one side
    (``random.Random(seed)`` over the sorted image keys), so no image has captions in both.
    """
    if val_fraction <= 0 or len(examples) < 2:
        return list(examples), []
    if by == "caption":
        import numpy as np

        idx = list(range(len(examples)))
        np.random.RandomState(seed).shuffle(idx)   # = np.random.seed(seed); np.random.shuffle
        n_val = int(math.floor(val_fraction * len(idx)))
        return [examples[i] for i in idx[n_val:]], [examples[i] for i in idx[:n_val]]
    if by != "image":
        raise NegationClipError(f"unknown split {by!r} (choose caption or image)")
    rng = random.Random(seed)
    images = sorted({e.image for e in examples})
    rng.shuffle(images)
    n_val = int(math.floor(val_fraction * len(images)))
    val_images = set(images[:n_val])
    return ([e for e in examples if e.image not in val_images],
            [e for e in examples if e.image in val_images])


def originals_by_image(records: Sequence[CaptionRecord], image_root) -> dict[str, list[str]]:
    """Each image's original (positive) captions: what mining reads to know what an image shows."""
    out: dict[str, list[str]] = {}
    for r in records:
        if r.original:
            lst = out.setdefault(image_key(r.image, image_root), [])
            if r.original not in lst:
                lst.append(r.original)
    return out


_STOP = frozenset("a an the with without no not nor none and or of in on at to by from for is are "
                  "there this that it its some any one two three picture photo image".split())


def _content(text: str) -> set[str]:
    import re
    return {w.rstrip("s") for w in re.findall(r"[a-z]+", text.lower())} - _STOP


def mine_negative_images(rows: Sequence[Example], originals: dict[str, list[str]], *,
                         seed: int = 0, pool: int = 200, top: int = 3) -> tuple[list[Example], int]:
    """Give each negated row an image whose captions mention its negated object.

    "X with no Y" is then trained to score below an image that shows Y (an extra column of the
    text->image softmax): the direction the balanced negation test measures ("a street with
    no cars" vs a photo with cars). Among up to ``pool`` candidates the ``top`` whose captions
    share the most content words with X are kept (the closest thing to "the same scene with Y
    added"), one drawn at random (seeded). Candidates come only from ``rows``' own images (the
    training side of the split), never the row's own image; rows with a ``hard_image`` keep it.
    """
    import re

    images = sorted({e.image for e in rows})
    words = {k: set().union(*(_content(c) for c in originals.get(k, ()))) if originals.get(k) else set()
             for k in images}
    cache: dict[str, list[str]] = {}
    rng = random.Random(seed)
    out, n = [], 0
    for e in rows:
        if e.hard_image or not e.object or e.kind != "negated":
            out.append(e)
            continue
        obj = e.object.lower()
        if obj not in cache:
            pat = re.compile(rf"\b{re.escape(obj)}(?:s|es)?\b", re.IGNORECASE)
            cache[obj] = [k for k in images if any(pat.search(c) for c in originals.get(k, ()))]
        cands = [k for k in cache[obj] if k != e.image]
        if not cands:
            out.append(e)
            continue
        if len(cands) > pool:
            cands = rng.sample(cands, pool)
        mine = _content(e.text) - _content(obj)
        cands.sort(key=lambda k: (-len(mine & words[k]), k))
        out.append(dataclasses.replace(e, hard_image=rng.choice(cands[:top])))
        n += 1
    return out, n


class TokenTable:
    """Every distinct text tokenized once; batches are padded to their longest row.

    The rows are built exactly as ``ClipTokenizer.__call__`` builds them (SOT, ids truncated to
    context - 2, EOT; padding id = EOT), so a batch equals ``tokenizer(texts)``; only the slow
    part (text cleaning + BPE) is done once instead of every epoch. A tokenizer with
    ``fixed_padding`` (SigLIP: the model pools a fixed position, so dynamic padding would not
    be exact) gives its own full-length rows and masks, stacked as they are.
    """

    def __init__(self, tokenizer, texts: Iterable[str], keep: bool = True):
        self.keep = keep  # False: tokenise each batch on the fly, remember nothing (streams)
        self.pad_id = int(tokenizer.pad_token_id)
        self._tok = tokenizer
        self.fixed_padding = bool(getattr(tokenizer, "fixed_padding", False))
        self.rows: dict[str, list[int]] = {}
        self._fixed: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        texts = list(dict.fromkeys(texts))
        if self.fixed_padding and texts:
            tb = tokenizer(texts)
            self._fixed = {t: (tb.input_ids[i], tb.attention_mask[i]) for i, t in enumerate(texts)}
            self.rows = {t: tb.input_ids[i].tolist() for i, t in enumerate(texts)}
            return
        many = getattr(tokenizer, "encode_many", None)
        if many is not None and texts:  # one batched call: the fast tokenizer's own loop
            ctx = int(tokenizer.context_length) - 2
            sot, eot = int(tokenizer.sot_token_id), int(tokenizer.eot_token_id)
            self.rows = {t: [sot, *ids[:ctx], eot] for t, ids in zip(texts, many(texts))}
            return
        for t in texts:
            self.row(t)

    def row(self, text: str) -> list[int]:
        """The ids of ``text``, tokenised on first use (methods that write texts during training)."""
        r = self.rows.get(text)
        if r is None:
            tok = self._tok
            if self.fixed_padding:
                tb = tok([text])
                self._fixed[text] = (tb.input_ids[0], tb.attention_mask[0])
                r = self.rows[text] = tb.input_ids[0].tolist()
            else:
                r = self.rows[text] = [int(tok.sot_token_id),
                                       *tok.encode(text)[: int(tok.context_length) - 2],
                                       int(tok.eot_token_id)]
        return r

    def forget(self) -> None:
        """Drop what was tokenised (``keep=False`` tables do this after every batch)."""
        self.rows.clear()
        self._fixed.clear()

    def batch(self, texts: Sequence[str], pad_to: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        rows = [self.row(t) for t in texts]
        if self.fixed_padding:
            out = (torch.stack([self._fixed[t][0] for t in texts]),
                   torch.stack([self._fixed[t][1] for t in texts]))
            if not self.keep:
                self.forget()
            return out
        width = pad_to or max(len(r) for r in rows)
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r, dtype=torch.long)
            mask[i, : len(r)] = 1
        if not self.keep:
            self.forget()
        return ids, mask


def epoch_batches(n: int, batch_size: int, *, epoch: int, seed: int, shuffle: bool = True,
                  min_size: int = 1, groups: Sequence[int] | None = None) -> list[list[int]]:
    """The global batches of one epoch: a seeded permutation (a function of seed and epoch
    only, so a resumed run sees exactly the same order), cut into ``batch_size`` chunks. A last
    chunk smaller than ``min_size`` (the number of processes) is dropped.

    With ``groups`` (e.g. the image of each row) rows are reordered so that a batch holds at
    most one row per group where possible: two captions of one image in one batch would be
    each other's false negatives.
    """
    g = torch.Generator().manual_seed(int(seed) * 1_000_003 + int(epoch))
    order = torch.randperm(n, generator=g).tolist() if shuffle else list(range(n))
    if groups is not None and shuffle:
        order = _spread_groups(order, groups, batch_size)
    batches = [order[i: i + batch_size] for i in range(0, n, batch_size)]
    if batches and len(batches[-1]) < min_size:
        batches.pop()
    return batches


def _spread_groups(order: list[int], groups: Sequence[int], batch_size: int) -> list[int]:
    """Greedy: fill each batch with rows whose group is not yet in it, keeping the shuffled order."""
    pending = list(order)
    out: list[int] = []
    while pending:
        seen: set[int] = set()
        batch, rest = [], []
        for i in pending:
            if len(batch) < batch_size and groups[i] not in seen:
                batch.append(i)
                seen.add(groups[i])
            else:
                rest.append(i)
        if len(batch) < batch_size:  # not enough distinct groups left: fill up with repeats
            take = batch_size - len(batch)
            batch.extend(rest[:take])
            rest = rest[take:]
        out.extend(batch)
        pending = rest
    return out


def shard(batch: Sequence[int], rank: int, world: int) -> list[int]:
    """This process's contiguous slice of a global batch (sizes differ by at most one)."""
    n = len(batch)
    start = rank * n // world
    end = (rank + 1) * n // world
    return list(batch[start:end])
