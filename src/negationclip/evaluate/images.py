"""Image plumbing shared by the benchmarks: embedding keys through the cache, image paths of
released files, and the missing-image policy (crop keys, box clipping and the decode-once crop
loader live in ``models.crops``, shared with training; re-exported here).

Every image embedding goes through the shared ``ImageEmbeddingCache``; this module only
decides what a key means and how its pixels are produced. Crops are keyed ``path#x,y,w,h``
with the box as written in the benchmark file, so a second run (or a second benchmark over
the same boxes) reuses them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import torch
from PIL import Image

from ..models import ImageEmbeddingCache, open_image
from ..models.crops import (CropLoader, KeyLoader, clip_box, crop_image, crop_key,  # noqa: F401
                           is_degenerate, parse_crop_key)
from ..models.transform import image_header_size
from ..utils import NegationClipError, atomic_write_text


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """Width and height from the file header only (no decode); NegationClipError if unreadable."""
    return image_header_size(path)


def load_whole(key: str) -> Image.Image:
    return open_image(key)


@dataclass
class Embedded:
    """Embeddings of ``keys`` (rows of failures are NaN) and what failed."""

    keys: list[str]
    embeddings: torch.Tensor
    ok: torch.Tensor
    failed: dict[str, str]
    index: dict[str, int]

    def rows(self, keys: Iterable[str]) -> torch.Tensor:
        return self.embeddings[[self.index[k] for k in keys]]


def embed_keys(bundle, keys: Sequence[str], load, cache: ImageEmbeddingCache | None, *,
               batch_size: int = 64, desc: str = "images") -> Embedded:
    """Unique keys through the shared cache (``cache=None``: an in-memory one)."""
    uniq = list(dict.fromkeys(keys))
    cache = cache if cache is not None else ImageEmbeddingCache(False)
    res = cache.embed(bundle, uniq, load, batch_size=batch_size, desc=desc)
    ok = res.ok if res.ok is not None else ~torch.isnan(res.embeddings).any(dim=1)
    return Embedded(uniq, res.embeddings, ok, dict(res.failed), {k: i for i, k in enumerate(uniq)})


def check_missing(benchmark: str, missing: dict[str, str], total_images: int, max_missing: float,
                  missing_out: str | os.PathLike | None) -> None:
    """Write the list of missing/unreadable images (if any) and fail when there are too many."""
    if not missing:
        return
    listing = None
    if missing_out is not None:
        listing = Path(missing_out)
        atomic_write_text(listing, "".join(f"{p}\t{why}\n" for p, why in sorted(missing.items())))
    frac = len(missing) / max(1, total_images)
    if frac > max_missing:
        where = f"; list written to {listing}" if listing else ""
        first = next(iter(sorted(missing.items())))
        raise NegationClipError(
            f"{benchmark}: {len(missing)} of {total_images} images missing or unreadable "
            f"({frac:.1%} > allowed {max_missing:.1%}), e.g. {first[1]}{where}")


class ImageResolver:
    """Where an image path written in a benchmark file lies on this machine.

    Released files hold paths of their authors' machines (``/data/.../coco/val2017/x.jpg``).
    With a ``root``, a path is looked up under it by its trailing components, the longest tail
    that exists winning (``ROOT/data/.../val2017/x.jpg``, ..., ``ROOT/val2017/x.jpg``, then
    ``ROOT/x.jpg``): the most specific match, so two folders holding the same file name are
    told apart when the tree is kept, and a flat folder of images still works. Without a root,
    relative paths are relative to ``base`` (the benchmark file's folder) and absolute ones
    are used as they are. Unresolved paths map to ``ROOT/<basename>`` so the missing-image
    report names where it was looked for.
    """

    def __init__(self, root: str | os.PathLike | None, base: str | os.PathLike | None = None):
        self.root = Path(root) if root is not None else None
        self.base = Path(base) if base is not None else Path(".")
        self._memo: dict[str, str] = {}

    def __call__(self, written: str) -> str:
        hit = self._memo.get(written)
        if hit is None:
            hit = self._memo[written] = self._resolve(written)
        return hit

    def _resolve(self, written: str) -> str:
        parts = [p for p in written.replace("\\", "/").split("/") if p not in ("", ".", "..")]
        if self.root is None:
            p = Path(written)
            return str(p if p.is_absolute() else self.base / p)
        if not parts:
            return str(self.root)
        for i in range(len(parts)):
            cand = self.root.joinpath(*parts[i:])
            if cand.is_file():
                return str(cand)
        return str(self.root / parts[-1])
