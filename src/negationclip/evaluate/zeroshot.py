"""Zero-shot classification (ImageNet-style): top-1 / top-5 with prompt-ensembled class weights.

Images come from an ImageFolder tree (``root/<class folder>/<image>``, classes in sorted
folder order, as torchvision's ImageFolder) or a list file (``relative/path label`` per line).
Class names and OpenAI's 80 ImageNet templates are shipped in ``evaluate/data`` (from
open_clip's ``zero_shot_metadata.py``, MIT); ImageNet folders named by WordNet id get the
shipped names automatically.
"""

from __future__ import annotations

import json
import os
import re
import time
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F

from ..models import ClipBundle, ImageEmbeddingCache, encode_text
from ..utils import NegationClipError, load_json
from .images import check_missing, embed_keys, load_whole
from .metrics import TIE_TOL, choice_outcomes, topk_accuracy
from .negrefcocog import _model_name

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm"}
_WNID = re.compile(r"^n\d{8}$")


def _data(name: str):
    with resources.files("negationclip.evaluate").joinpath("data", name).open("r", encoding="utf-8") as f:
        return json.load(f)


@lru_cache(maxsize=None)
def imagenet_classnames() -> tuple[str, ...]:
    """The 1000 ImageNet class names in the standard (sorted WordNet id) order."""
    return tuple(_data("imagenet_classnames.json")["classnames"])


@lru_cache(maxsize=None)
def imagenet_templates(kind: str = "openai") -> tuple[str, ...]:
    """OpenAI's 80 ImageNet prompt templates (``kind="openai"``) or the 7 'simple' ones; ``{c}``
    marks the class name."""
    d = _data("imagenet_templates.json")
    key = {"openai": "openai_imagenet_templates", "simple": "simple_imagenet_templates"}.get(kind)
    if key is None:
        raise NegationClipError(f"unknown template set {kind!r} (openai, simple, or a JSON file)")
    return tuple(d[key])


def load_templates(spec: str | os.PathLike | Sequence[str]) -> list[str]:
    """``"openai"``, ``"simple"``, a JSON file with a list of templates, or a list; each template
    has ``{c}`` (or ``{}``) where the class name goes."""
    if isinstance(spec, (list, tuple)):
        out = list(spec)
    elif str(spec) in ("openai", "simple"):
        out = list(imagenet_templates(str(spec)))
    else:
        obj = load_json(spec)
        out = obj.get("templates") if isinstance(obj, dict) else obj
        if not isinstance(out, list) or not all(isinstance(t, str) for t in out):
            raise NegationClipError(f"{spec}: expected a JSON list of template strings")
    out = [t.replace("{}", "{c}") for t in out]
    bad = [t for t in out if "{c}" not in t]
    if not out or bad:
        raise NegationClipError(f"templates: each needs a '{{c}}' placeholder, got {bad[:1] or out}")
    return out


def _load_classnames(spec: str | os.PathLike | Sequence[str] | None, folders: list[str] | None
                     ) -> list[str] | None:
    if spec is None:
        return None
    if isinstance(spec, (list, tuple)):
        return list(spec)
    if str(spec) == "imagenet":
        return list(imagenet_classnames())
    obj = load_json(spec)
    if isinstance(obj, dict) and "classnames" in obj:
        obj = obj["classnames"]
    if isinstance(obj, list) and all(isinstance(c, str) for c in obj):
        return obj
    if isinstance(obj, dict) and folders is not None:
        missing = [f for f in folders if f not in obj]
        if missing:
            raise NegationClipError(f"{spec}: no class name for folder {missing[0]!r}")
        return [str(obj[f]) for f in folders]
    raise NegationClipError(f"{spec}: expected a JSON list of class names (or, for a folder tree, "
                            f"an object folder -> name)")


def scan_image_folder(root: str | os.PathLike) -> tuple[list[str], list[tuple[str, int]]]:
    """(class folders sorted, [(image path, class index)]) of an ImageFolder tree."""
    root = Path(root)
    if not root.is_dir():
        raise NegationClipError(f"{root}: image folder not found")
    folders = sorted(p.name for p in root.iterdir() if p.is_dir())
    if not folders:
        raise NegationClipError(f"{root}: no class folders (expected root/<class>/<image>)")
    samples = []
    for ci, name in enumerate(folders):
        for f in sorted((root / name).rglob("*")):
            if f.suffix.lower() in IMAGE_EXTENSIONS and f.is_file():
                samples.append((str(f), ci))
    if not samples:
        raise NegationClipError(f"{root}: no images found under the class folders")
    return folders, samples


def read_list_file(path: str | os.PathLike, image_root: str | os.PathLike | None = None
                   ) -> list[tuple[str, int]]:
    """``relative/path label`` per line (``#`` comments and blank lines ignored)."""
    path = Path(path)
    root = Path(image_root) if image_root is not None else path.parent
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise NegationClipError(f"{path}: list file not found") from None
    out = []
    for n, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.rsplit(None, 1)
        if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
            raise NegationClipError(f"{path}:{n}: expected '<image path> <integer label>', got {line!r}")
        out.append((str(root / parts[0]), int(parts[1])))
    if not out:
        raise NegationClipError(f"{path}: no images listed")
    return out


@torch.no_grad()
def classifier_weights(bundle: ClipBundle, classnames: Sequence[str], templates: Sequence[str],
                       batch_size: int = 256) -> torch.Tensor:
    """[C, D]: per class, the normalised mean of its normalised template embeddings."""
    texts = [t.replace("{c}", c) for c in classnames for t in templates]
    emb = encode_text(bundle, texts, batch_size=batch_size, show_progress=True)
    emb = emb.view(len(classnames), len(templates), -1).mean(dim=1)
    return F.normalize(emb, dim=-1)


def evaluate_zeroshot(bundle: ClipBundle, root: str | os.PathLike | None = None, *,
                      list_file: str | os.PathLike | None = None,
                      image_root: str | os.PathLike | None = None,
                      classnames: str | os.PathLike | Sequence[str] | None = None,
                      templates: str | os.PathLike | Sequence[str] = "openai",
                      cache: ImageEmbeddingCache | None = None, batch_size: int = 64,
                      max_missing: float = 0.05, missing_out: str | os.PathLike | None = None,
                      limit: int | None = None, model_name: str | None = None,
                      benchmark: str = "zeroshot", tie_tol: float = TIE_TOL) -> dict:
    """Top-1 (``accuracy`` = ``accuracy_official``, ``torch.topk`` as CLIP_benchmark) and top-5
    zero-shot accuracy on an ImageFolder tree or list file; ``accuracy_strict`` and ``ties``
    beside (the true class within ``tie_tol`` of the best other class)."""
    t0 = time.perf_counter()
    if (root is None) == (list_file is None):
        raise NegationClipError("zero-shot: give either an image folder tree or a list file")
    if root is not None:
        folders, samples = scan_image_folder(root)
        names = _load_classnames(classnames, folders)
        if names is None:
            if len(folders) == 1000 and all(_WNID.match(f) for f in folders):
                names = list(imagenet_classnames())
            else:
                names = [f.replace("_", " ") for f in folders]
        if len(names) != len(folders):
            raise NegationClipError(f"{root}: {len(folders)} class folders but {len(names)} class names")
    else:
        samples = read_list_file(list_file, image_root)
        names = _load_classnames(classnames if classnames is not None else "imagenet", None)
        top = max(lbl for _, lbl in samples)
        if min(lbl for _, lbl in samples) < 0 or top >= len(names):
            raise NegationClipError(f"{list_file}: label {top} out of range for {len(names)} class names")
    if limit is not None:
        samples = samples[:limit]
    tmpl = load_templates(templates)
    paths = [p for p, _ in samples]
    emb = embed_keys(bundle, paths, load_whole, cache, batch_size=batch_size, desc=f"{benchmark} images")
    check_missing(benchmark, emb.failed, len(emb.keys), max_missing, missing_out)
    weights = classifier_weights(bundle, names, tmpl)
    keep = [i for i, p in enumerate(paths) if bool(emb.ok[emb.index[p]])]
    logits = emb.rows([paths[i] for i in keep]) @ weights.T
    labels = torch.tensor([samples[i][1] for i in keep], dtype=torch.long)
    acc = topk_accuracy(logits, labels, (1, 5))
    c = choice_outcomes(logits, labels, tie_tol) if len(keep) and logits.shape[1] > 1 else None
    elapsed = time.perf_counter() - t0
    total = len(keep)
    return {"benchmark": benchmark, "model": _model_name(bundle, model_name),
            "accuracy": acc["top1"], "accuracy_official": acc["top1"],
            "accuracy_strict": float(c.strict.float().mean()) if c is not None else None,
            "ties": int(c.tie.sum()) if c is not None else 0,
            "top1": acc["top1"], "top5": acc["top5"],
            "correct": int((logits.argmax(dim=1) == labels).sum()) if total else 0, "total": total,
            "classes": len(names), "templates": len(tmpl),
            "items_per_second": len(samples) / elapsed if elapsed > 0 else None,
            "missing_images": len(emb.failed), "skipped": len(samples) - total, "seconds": elapsed}
