"""Referring-segmentation evaluation: mean IoU and cumulative IoU, resumable.

Three input formats, each read as-is:

- ``refcocog``: the refer toolkit's ``refs(umd).p`` (read with the restricted unpickler; a
  ``.json`` list of the same records also works) + COCO ``instances.json`` + the images; by
  default only expressions with a negation cue are kept (the paper's RefCOCOg setting).
- ``phrasecut``: PhraseCut's ``refer_{split}.json`` (tasks with ``Polygons``) + ``images/``.
- ``negref``: a NegRefCOCOg-format file + COCO instances of the same images, the referred
  instance found by its (expanded) box; this is how NegWorld is evaluated, since its
  instance masks are exact.

mIoU is the mean of per-expression IoU; cumulative IoU (cIoU, "overall IoU") is total
intersection over total union, which weighs large objects more.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from PIL import Image

from ..utils import JsonlWriter, NegationClipError, atomic_write_json, load_json, progress, read_jsonl

FORMATS = ("refcocog", "phrasecut", "negref")
FILTERS = ("negated", "affirmative", "all")
RESULTS = "seg_results.jsonl"
SUMMARY = "seg_eval.json"


@dataclass
class SegSample:
    key: str                 # unique and stable: resume works by key
    image: Path
    text: str
    mask_spec: Any           # COCO segmentation (polygons / RLE) or PhraseCut Polygons
    kind: str = "coco"       # "coco" or "phrasecut"
    negated: bool = False

    def mask(self, height: int, width: int) -> np.ndarray:
        try:
            return decode_mask(self.mask_spec, height, width, self.kind)
        except (TypeError, ValueError, IndexError, KeyError) as e:
            raise NegationClipError(f"{self.key}: malformed segmentation ({e})") from None


@dataclass
class LoadStats:
    expressions: int = 0
    kept: int = 0
    skipped: Counter = field(default_factory=Counter)

    def to_json(self) -> dict:
        return {"expressions": self.expressions, "kept": self.kept, "skipped": dict(self.skipped)}


def decode_mask(spec: Any, height: int, width: int, kind: str = "coco") -> np.ndarray:
    """Boolean [H, W] mask from COCO polygons/RLE or PhraseCut ``Polygons``."""
    from pycocotools import mask as mask_utils

    if kind == "phrasecut":
        # Polygons: one list per instance, each a list of polygons, each a list of [x, y]
        polys = [[float(c) for pt in poly for c in pt[:2]]
                 for inst in spec for poly in inst if len(poly) >= 3]
        spec = polys
    if isinstance(spec, list):
        polys = [p for p in spec if isinstance(p, list) and len(p) >= 6]
        if not polys:
            return np.zeros((height, width), dtype=bool)
        rle = mask_utils.merge(mask_utils.frPyObjects(polys, height, width))
    elif isinstance(spec, dict) and "counts" in spec:
        rle = mask_utils.frPyObjects(spec, height, width) if isinstance(spec["counts"], list) else spec
        if isinstance(rle.get("counts"), str):
            rle = {**rle, "counts": rle["counts"].encode("ascii")}
    else:
        raise NegationClipError(f"unsupported segmentation {type(spec).__name__}")
    m = mask_utils.decode(rle).astype(bool)
    if m.ndim == 3:
        m = m.any(axis=2)
    if m.shape != (height, width):
        raise NegationClipError(f"mask is {m.shape[1]}x{m.shape[0]} but the image is {width}x{height}")
    return m


def _keep(negated: bool, filt: str) -> bool:
    return filt == "all" or (filt == "negated") == negated


def _check_filter(filt: str) -> None:
    if filt not in FILTERS:
        raise NegationClipError(f"filter must be one of {', '.join(FILTERS)}, not {filt!r}")


def load_refcocog(refs: str | os.PathLike, instances: str | os.PathLike, images_dir: str | os.PathLike,
                  *, split: str | None = "val", filter: str = "negated", text_field: str = "sent"
                  ) -> tuple[list[SegSample], LoadStats]:
    """One sample per referring sentence of ``split`` (None: all splits)."""
    from ..data.coco import load_coco_instances
    from ..evaluate.refcocog_build import has_negation, safe_load_pickle

    _check_filter(filter)
    refs = Path(refs)
    data = load_json(refs) if refs.suffix == ".json" else safe_load_pickle(refs)
    if not isinstance(data, list):
        raise NegationClipError(f"{refs}: expected a list of refs, got {type(data).__name__}")
    inst = load_coco_instances(instances)
    anns = {a.id: a for lst in inst.annotations_by_image.values() for a in lst}
    stats, out = LoadStats(), []
    for i, ref in enumerate(data):
        if not isinstance(ref, dict) or "ann_id" not in ref or not isinstance(ref.get("sentences"), list):
            raise NegationClipError(f"{refs}: refs[{i}] needs 'ann_id' and a 'sentences' list")
        if split is not None and ref.get("split") != split:
            continue
        for j, s in enumerate(ref["sentences"]):
            stats.expressions += 1
            text = (s.get(text_field) or s.get("sent") or s.get("raw")) if isinstance(s, dict) else None
            if not isinstance(text, str) or not text.strip():
                stats.skipped["empty sentence"] += 1
                continue
            neg = has_negation(text)
            if not _keep(neg, filter):
                stats.skipped[f"not {filter}"] += 1
                continue
            ann = anns.get(ref["ann_id"])
            if ann is None:
                stats.skipped["ann_id not in instances"] += 1
                continue
            if not ann.segmentation:
                stats.skipped["annotation without segmentation"] += 1
                continue
            im = inst.images[ann.image_id]
            sid = s.get("sent_id", j) if isinstance(s, dict) else j
            out.append(SegSample(f"ref{ref.get('ref_id', i)}:{sid}", Path(images_dir) / im.file_name,
                                 text.strip(), ann.segmentation, "coco", neg))
    stats.kept = len(out)
    return out, stats


def load_phrasecut(refer: str | os.PathLike, images_dir: str | os.PathLike, *, filter: str = "all"
                   ) -> tuple[list[SegSample], LoadStats]:
    """PhraseCut tasks (``refer_{split}.json``); images are ``{images_dir}/{image_id}.jpg``."""
    from ..evaluate.refcocog_build import has_negation

    _check_filter(filter)
    data = load_json(refer)
    if not isinstance(data, list):
        raise NegationClipError(f"{refer}: expected a list of PhraseCut tasks, got {type(data).__name__}")
    stats, out = LoadStats(), []
    for i, t in enumerate(data):
        if not isinstance(t, dict) or not all(k in t for k in ("task_id", "image_id", "phrase", "Polygons")):
            raise NegationClipError(f"{refer}: task {i} needs task_id, image_id, phrase and Polygons")
        stats.expressions += 1
        if not isinstance(t["Polygons"], list) or not t["Polygons"]:
            stats.skipped["no polygons"] += 1
            continue
        neg = has_negation(str(t["phrase"]))
        if not _keep(neg, filter):
            stats.skipped[f"not {filter}"] += 1
            continue
        out.append(SegSample(str(t["task_id"]), Path(images_dir) / f"{t['image_id']}.jpg",
                             str(t["phrase"]).strip(), t["Polygons"], "phrasecut", neg))
    stats.kept = len(out)
    return out, stats


def _iou_box(a: Sequence[float], b: Sequence[float]) -> float:
    ax1, ay1, bx1, by1 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
    iw = max(0.0, min(ax1, bx1) - max(a[0], b[0]))
    ih = max(0.0, min(ay1, by1) - max(a[1], b[1]))
    inter = iw * ih
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def load_negref_instances(negref: str | os.PathLike, instances: str | os.PathLike,
                          images_dir: str | os.PathLike, *, filter: str = "all",
                          min_box_iou: float = 0.3) -> tuple[list[SegSample], LoadStats]:
    """NegRefCOCOg-format expressions with the referred instance's mask from COCO instances.

    The reference box is expanded, so the instance is the one of that image whose own box
    overlaps it most (IoU >= ``min_box_iou``); a tie between two instances is skipped and
    counted, never guessed.
    """
    from ..data.coco import load_coco_instances
    from ..data.negref import load_negref
    from ..evaluate.refcocog_build import has_negation

    _check_filter(filter)
    items = load_negref(negref)
    inst = load_coco_instances(instances)
    by_file = {im.file_name: im for im in inst.images.values()}
    stats, out = LoadStats(), []
    for i, it in enumerate(items):
        stats.expressions += 1
        neg = has_negation(it.phrase)
        if not _keep(neg, filter):
            stats.skipped[f"not {filter}"] += 1
            continue
        im = by_file.get(it.image) or by_file.get(Path(it.image).name)
        if im is None:
            stats.skipped["image not in instances"] += 1
            continue
        scored = sorted(((_iou_box(a.bbox, it.ref_bbox), a) for a in inst.annotations_by_image[im.id]
                         if a.segmentation), key=lambda p: -p[0])
        if not scored or scored[0][0] < min_box_iou:
            stats.skipped["no instance matches ref_bbox"] += 1
            continue
        if len(scored) > 1 and abs(scored[0][0] - scored[1][0]) < 1e-6:
            stats.skipped["ambiguous instance for ref_bbox"] += 1
            continue
        out.append(SegSample(f"negref{i}", Path(images_dir) / im.file_name, it.phrase.strip(),
                             scored[0][1].segmentation, "coco", neg))
    stats.kept = len(out)
    return out, stats


Predictor = Callable[[Sequence[Image.Image], Sequence[str]], Sequence[torch.Tensor]]


def clipseg_predictor(model, processor) -> Predictor:
    from .segmentation import segment_probs

    return lambda images, texts: segment_probs(model, processor, images, texts)


def _summary(rows: list[dict]) -> dict:
    ok = [r for r in rows if "iou" in r]
    inter = sum(r["intersection"] for r in ok)
    union = sum(r["union"] for r in ok)
    res = {"n": len(ok),
           "mIoU": round(float(np.mean([r["iou"] for r in ok])), 6) if ok else None,
           "cIoU": round(inter / union, 6) if union else None}
    for t in (0.5, 0.7, 0.9):
        res[f"P@{t}"] = round(sum(r["iou"] >= t for r in ok) / len(ok), 6) if ok else None
    return res


def evaluate_segmentation(predict: Predictor, samples: Sequence[SegSample], out_dir: str | os.PathLike,
                          *, threshold: float = 0.5, batch_size: int = 8, label: str = "",
                          load_stats: LoadStats | None = None) -> dict:
    """Score every sample (one JSONL row each, resumable by key) and write ``seg_eval.json``.

    Unreadable images and empty ground-truth masks are recorded as failures and counted;
    they are not in mIoU/cIoU.
    """
    from ..models import open_image

    if not 0.0 < threshold < 1.0:
        raise NegationClipError(f"threshold must be in (0, 1), not {threshold}")
    keys = [s.key for s in samples]
    if len(set(keys)) != len(keys):
        raise NegationClipError("segmentation samples have duplicate keys")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    done = {r["key"]: r for r in read_jsonl(out / RESULTS, repair=True)}
    pending = [s for s in samples if s.key not in done]
    with JsonlWriter(out / RESULTS) as w, progress(total=len(pending), desc=f"segment {label}".strip(),
                                                    unit="expr") as bar:
        for b in range(0, len(pending), batch_size):
            chunk = pending[b:b + batch_size]
            ready: list[tuple[SegSample, Image.Image, np.ndarray]] = []
            for s in chunk:
                reason = "unreadable image"
                try:
                    img = open_image(s.image)
                    reason = "bad ground-truth mask"
                    gt = s.mask(img.height, img.width)
                    if not gt.any():
                        raise NegationClipError("empty")
                    reason = ""
                except NegationClipError as e:
                    if reason == "bad ground-truth mask" and str(e) == "empty":
                        reason = "empty ground-truth mask"
                    rec = {"key": s.key, "error": reason, "detail": str(e)}
                    w.write(rec)
                    done[s.key] = rec
                    continue
                ready.append((s, img, gt))
            if ready:
                probs = predict([r[1] for r in ready], [r[0].text for r in ready])
                for (s, img, gt), p in zip(ready, probs):
                    pred = (p.numpy() if isinstance(p, torch.Tensor) else np.asarray(p)) >= threshold
                    if pred.shape != gt.shape:
                        raise NegationClipError(f"predictor returned a {pred.shape} mask for {s.image} "
                                                f"({gt.shape})")
                    inter = int(np.logical_and(pred, gt).sum())
                    union = int(np.logical_or(pred, gt).sum())
                    rec = {"key": s.key, "text": s.text, "negated": s.negated, "intersection": inter,
                           "union": union, "iou": inter / union, "pred_area": int(pred.sum()),
                           "gt_area": int(gt.sum())}
                    w.write(rec)
                    done[s.key] = rec
            bar.update(len(chunk))
    rows = [done[k] for k in keys if k in done]
    fails = Counter(r["error"] for r in rows if "error" in r)
    summary = {**_summary(rows), "threshold": threshold, "failed": dict(fails),
               "negated": _summary([r for r in rows if r.get("negated")]),
               "affirmative": _summary([r for r in rows if r.get("negated") is False])}
    if load_stats is not None:
        summary["data"] = load_stats.to_json()
    if label:
        summary["label"] = label
    atomic_write_json(out / SUMMARY, summary)
    return summary


def summary_lines(summary: dict) -> list[str]:
    def fmt(s: dict) -> str:
        if not s.get("n"):
            return "n 0"
        return (f"n {s['n']}  mIoU {100 * s['mIoU']:.2f}  cIoU {100 * s['cIoU']:.2f}  "
                f"P@0.5 {100 * s['P@0.5']:.1f}")

    lines = [f"{summary.get('label') or 'all'}: {fmt(summary)}"]
    if summary["negated"].get("n") and summary["affirmative"].get("n"):
        lines += [f"  negated:     {fmt(summary['negated'])}",
                  f"  affirmative: {fmt(summary['affirmative'])}"]
    if summary.get("failed"):
        lines.append("  failed: " + ", ".join(f"{k} {v}" for k, v in summary["failed"].items()))
    data = summary.get("data")
    if data and data.get("skipped"):
        lines.append(f"  data: {data['kept']}/{data['expressions']} expressions kept; skipped: "
                     + ", ".join(f"{k} {v}" for k, v in data["skipped"].items()))
    return lines
