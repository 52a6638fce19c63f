"""Crop keys: an image key ``path#x,y,w,h`` names the crop of an xywh box (as written in a
benchmark or record file) of ``path``. Shared by every stage: the benchmarks cut NegRef boxes
this way, NegWorld's scene-graph records name object crops this way, and training loads them
with the same loader, so the image-embedding cache stores one entry per (file content, box).
"""

from __future__ import annotations

import math
import os
from collections import OrderedDict
from typing import Sequence

from PIL import Image

from ..utils import NegationClipError
from .transform import open_image


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
