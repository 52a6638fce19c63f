"""Image plumbing shared by the benchmarks: crop keys, box clipping, a decode-once crop loader,
and the missing-image policy.

Every image embedding goes through the shared ``ImageEmbeddingCache``; this module only
decides what a key means and how its pixels are produced. Crops are keyed ``path#x,y,w,h``
with the box as written in the benchmark file, so a second run (or a second benchmark over
the same boxes) reuses them.
"""

from __future__ import annotations

import math
import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import torch
from PIL import Image

from ..models import ImageEmbeddingCache, open_image
from ..models.transform import image_header_size
from ..utils import NegationClipError, atomic_write_text


def _fmt(v: float) -> str:
    s = repr(float(v))
    return s[:-2] if s.endswith(".0") else s


def crop_key(path: str | os.PathLike, box: Sequence[float]) -> str:
    """``path#x,y,w,h``: the cache key of a crop (box as given, before clipping)."""
    return f"{path}#{','.join(_fmt(v) for v in box)}"


def parse_crop_key(key: str) -> tuple[str, tuple[float, float, float, float]]:
    path, sep, box = key.rpartition("#")
    try:
        vals = tuple(float(v) for v in box.split(","))
    except ValueError:
        vals = ()
    if not sep or len(vals) != 4:
        raise ValueError(f"not a crop key (path#x,y,w,h): {key!r}")
    return path, vals  # type: ignore[return-value]


def is_degenerate(box: Sequence[float]) -> bool:
    return (len(box) != 4 or not all(math.isfinite(float(v)) for v in box)
            or float(box[2]) <= 0 or float(box[3]) <= 0)


def clip_box(box: Sequence[float], width: int, height: int) -> tuple[tuple[float, float, float, float], bool]:
    """Clip an xywh box to the image; returns (x0, y0, x1, y1) and whether it was clipped.

    A box with nothing left inside the image raises ValueError (the caller names the record).
    """
    x, y, w, h = (float(v) for v in box)
    x0, y0 = max(0.0, x), max(0.0, y)
    x1, y1 = min(float(width), x + w), min(float(height), y + h)
    if x1 - x0 < 1.0 or y1 - y0 < 1.0:
        raise ValueError(f"box {list(box)} lies outside the {width}x{height} image")
    return (x0, y0, x1, y1), (x0, y0, x1, y1) != (x, y, x + w, y + h)


def crop_image(im: Image.Image, box: Sequence[float]) -> Image.Image:
    """The crop of an xywh box, clipped to the image (PIL rounds the corners to pixels)."""
    (x0, y0, x1, y1), _ = clip_box(box, im.width, im.height)
    return im.crop((x0, y0, x1, y1))


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """Width and height from the file header only (no decode); NegationClipError if unreadable."""
    return image_header_size(path)


class CropLoader:
    """``load(key)`` for crop keys: decodes each image once (small LRU of decoded images, also
    remembering failures) and cuts every box of it from that one decode.

    Keys should be requested grouped by image (the benchmarks sort them) so each image is
    decoded exactly once; ``decodes`` counts the actual decodes.
    """

    def __init__(self, lru_size: int = 8):
        self.lru_size = max(1, lru_size)
        self._lru: OrderedDict[str, Image.Image | NegationClipError] = OrderedDict()
        self.decodes = 0

    def image(self, path: str) -> Image.Image:
        hit = self._lru.get(path)
        if hit is None:
            self.decodes += 1
            try:
                # the file's own mode, as negrefcocog_eval.py crops ``Image.open(p)``: the
                # transform resizes in that mode and makes RGB by its rule (OpenAI's order)
                hit = open_image(path, mode=None)
            except NegationClipError as e:
                hit = e
            self._lru[path] = hit
            while len(self._lru) > self.lru_size:
                self._lru.popitem(last=False)
        else:
            self._lru.move_to_end(path)
        if isinstance(hit, NegationClipError):
            raise hit
        return hit

    def __call__(self, key: str) -> Image.Image:
        path, box = parse_crop_key(key)
        im = self.image(path)
        try:
            return crop_image(im, box)
        except ValueError as e:
            raise NegationClipError(f"{path}: {e}") from None


class KeyLoader(CropLoader):
    """``load(key)`` for any image key: a whole file (RGB, ``open_image``), or a crop key
    ``path#x,y,w,h`` (cut as the crop benchmarks cut it). Training rows may name crops this way
    (NegWorld's part-negation records do), so one loader serves the cache and the live tower."""

    def __call__(self, key: str) -> Image.Image:
        if os.path.isfile(key):
            return open_image(key)
        try:
            parse_crop_key(key)
        except ValueError:
            return open_image(key)  # not a crop key: the missing/unreadable file's own error
        return super().__call__(key)


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
