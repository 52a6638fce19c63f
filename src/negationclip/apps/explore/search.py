"""Text-to-image search over a folder for several models at once (the explore page's engine;
no web code here, so it is usable and testable on its own).

Each model's image embeddings come from the shared ``ImageEmbeddingCache`` (a folder is embedded
once, with a progress bar, and reused by later runs); a query is one text encoding and one
matrix product per model. Unreadable images are counted skips; a model that fails to load is
recorded with its reason, and the others keep working.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import torch

from ...models import ClipBundle, ImageEmbeddingCache, encode_text, load_clip, open_image
from ...utils import NegationClipError, load_json

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Image files under ``folder`` (recursively, by suffix), sorted; none is a NegationClipError."""
    root = Path(folder)
    if not root.is_dir():
        raise NegationClipError(f"{root}: no such folder")
    paths = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not paths:
        raise NegationClipError(f"{root}: no images there (looked for {', '.join(IMAGE_SUFFIXES)})")
    return paths


@dataclass
class Hit:
    path: Path
    score: float      # cosine similarity of the query and the image
    rank: int         # 1 = first


@dataclass
class Explorer:
    """``Explorer.open({"base": DIR, "negclip": DIR}, images)`` then ``search(query, k)``.

    ``images``: a folder or a list of image paths. ``models`` values are sources for
    ``load_clip`` or ready ``ClipBundle``s. ``cache``: an ``ImageEmbeddingCache`` (default: the
    user cache)."""

    bundles: dict[str, ClipBundle]
    paths: list[Path]                                       # every image considered
    embeddings: dict[str, torch.Tensor]                     # model -> [n_ok, D], normalised
    ok_paths: dict[str, list[Path]]                         # model -> the paths of its rows
    skipped: dict[str, str] = field(default_factory=dict)   # unreadable image -> reason
    load_errors: dict[str, str] = field(default_factory=dict)  # model -> reason
    root: Path | None = None

    @classmethod
    def open(cls, models: dict[str, str | ClipBundle], images: str | os.PathLike | Sequence,
             *, cache: ImageEmbeddingCache | None = None, device: str = "cpu",
             loader: Callable[[str], ClipBundle] | None = None, batch_size: int = 64,
             log: Callable[[str], None] = print) -> "Explorer":
        if not models:
            raise NegationClipError("explore: give at least one --model NAME=SOURCE")
        if isinstance(images, (str, os.PathLike)):
            root = Path(images)
            paths = list_images(root)
        else:
            paths = [Path(p) for p in images]
            if not paths:
                raise NegationClipError("explore: the image list is empty")
            root = Path(os.path.commonpath([str(p.parent) for p in paths]))
        load = loader or (lambda src: load_clip(src, device=device))
        cache = cache if cache is not None else ImageEmbeddingCache()
        bundles, errors = {}, {}
        for name, src in models.items():
            if isinstance(src, ClipBundle):
                bundles[name] = src
                continue
            try:
                bundles[name] = load(src)
            except NegationClipError as e:
                errors[name] = f"model {name!r} failed to load: {e}"
            except (OSError, ValueError, RuntimeError, KeyError) as e:  # corrupt weights and the like
                errors[name] = f"model {name!r} failed to load from {src}: {type(e).__name__}: {e}"
            if name in errors:
                log(f"error: {errors[name]}")
        if not bundles:
            raise NegationClipError("no model could be loaded: " + "; ".join(errors.values()))
        keys = [str(p) for p in paths]
        embs, ok_paths, skipped = {}, {}, {}
        for name, b in bundles.items():
            res = cache.embed(b, keys, open_image, batch_size=batch_size, desc=f"embedding images ({name})")
            skipped.update(res.failed)
            embs[name] = res.embeddings[res.ok].contiguous()
            ok_paths[name] = [p for p, ok in zip(paths, res.ok.tolist()) if ok]
            if not ok_paths[name]:
                first = next(iter(res.failed.items()), ("", ""))
                raise NegationClipError(f"{root}: none of the {len(paths)} images could be read "
                                        f"(first: {first[1]})")
        if skipped:
            log(f"skipped {len(skipped)} of {len(paths)} images that could not be read "
                f"(first: {next(iter(skipped.values()))})")
        return cls(bundles, paths, embs, ok_paths, skipped, errors, root)

    @property
    def model_names(self) -> list[str]:
        return list(self.bundles)

    def search(self, query: str, k: int = 8) -> dict[str, list[Hit]]:
        """The ``k`` images each model ranks first for ``query`` (highest cosine similarity)."""
        query = (query or "").strip()
        if not query:
            raise NegationClipError("type a query, e.g. \"a star without a dot\"")
        if k < 1:
            raise NegationClipError(f"top-k must be at least 1, got {k}")
        out = {}
        for name, b in self.bundles.items():
            t = encode_text(b, [query], show_progress=False)[0]
            scores = self.embeddings[name] @ t
            top = torch.topk(scores, min(k, scores.numel()))
            out[name] = [Hit(self.ok_paths[name][i], float(s), r + 1)
                         for r, (s, i) in enumerate(zip(top.values.tolist(), top.indices.tolist()))]
        return out


def demo_sources(run_dir: str | os.PathLike) -> tuple[dict[str, str], list[Path], Path]:
    """What ``negationclip demo --out RUN`` left, for ``explore --demo RUN``: the base and
    fine-tuned models, the world's test images, and the report to show in the results tab."""
    run = Path(run_dir)
    rep_path = run / "report.json"
    if not rep_path.is_file():
        raise NegationClipError(f"{run}: no report.json there; run `negationclip demo --out {run}` first")
    rep = load_json(rep_path)
    base = (rep.get("config") or {}).get("base")
    tuned = run / "finetune" / "best"
    if not base:
        raise NegationClipError(f"{rep_path}: records no base model (config.base)")
    if not (tuned / "config.json").is_file():
        raise NegationClipError(f"{tuned}: the fine-tuned model is missing; rerun the demo")
    from ...data.negworld import WorldExport

    world = WorldExport.open(run / "world")
    captions = world.captions("test")
    images = load_json(captions).get("images", [])
    paths = [world.images_dir / im["file_name"] for im in images if "file_name" in im]
    if not paths:
        raise NegationClipError(f"{captions}: lists no test images")
    return {"base": str(base), "fine-tuned": str(tuned)}, paths, rep_path

