"""CLIP image preprocessing without torchvision, and the one safe image opener."""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from ..utils.errors import NegationClipError

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


_PIL_DEFAULT_MAX_PIXELS = Image.MAX_IMAGE_PIXELS


def max_image_pixels() -> int | None:
    """The largest image (width x height) ``open_image`` decodes: $NEGATIONCLIP_MAX_IMAGE_PIXELS
    ('none' or 0: no limit), else PIL's default (about 179 million). A larger file, even one
    whose header alone claims the size (a decompression bomb), is refused before decoding."""
    raw = os.environ.get("NEGATIONCLIP_MAX_IMAGE_PIXELS", "").strip()
    if not raw:
        return _PIL_DEFAULT_MAX_PIXELS
    if raw.lower() in ("none", "0", "off"):
        return None
    try:
        v = int(float(raw))
    except ValueError:
        raise NegationClipError(f"NEGATIONCLIP_MAX_IMAGE_PIXELS={raw!r}: expected a pixel count "
                                f"or 'none'") from None
    if v < 0:
        raise NegationClipError(f"NEGATIONCLIP_MAX_IMAGE_PIXELS={raw!r}: must be >= 0")
    return v


def _open_checked(path: Path) -> Image.Image:
    """``Image.open`` with our pixel limit in force: PIL's own bomb check (a warning above its
    limit, an error above twice it) is replaced by one rule, checked from the header."""
    limit = max_image_pixels()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        pil_limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
        try:
            im = Image.open(path)
        finally:
            Image.MAX_IMAGE_PIXELS = pil_limit
    w, h = im.size
    if limit is not None and w * h > limit:
        im.close()
        raise NegationClipError(f"{path}: image of {w}x{h} = {w * h} pixels exceeds the limit of "
                                f"{limit} (a decompression bomb?); raise NEGATIONCLIP_MAX_IMAGE_PIXELS "
                                f"if the file is trusted")
    return im


def _image_error(path: Path, e: BaseException) -> NegationClipError:
    if isinstance(e, NegationClipError):
        return e
    if isinstance(e, FileNotFoundError):
        return NegationClipError(f"{path}: image not found")
    if isinstance(e, IsADirectoryError):
        return NegationClipError(f"{path}: is a folder, expected an image")
    if isinstance(e, PermissionError):
        return NegationClipError(f"{path}: cannot read image: permission denied")
    if isinstance(e, UnidentifiedImageError):
        return NegationClipError(f"{path}: not an image file PIL can read")
    if isinstance(e, Image.DecompressionBombError):
        return NegationClipError(f"{path}: image too large for PIL's limit ({e})")
    if isinstance(e, MemoryError):
        return NegationClipError(f"{path}: out of memory decoding the image")
    return NegationClipError(f"{path}: unreadable image ({type(e).__name__}: {e})")


def open_image(path: str | os.PathLike) -> Image.Image:
    """Open and fully decode an image as RGB. Every way a file can fail (missing, a folder, no
    permission, not an image, truncated, corrupt, over the pixel limit of ``max_image_pixels``)
    raises NegationClipError naming it, so callers count a skip or stop with a clear message.
    Decoding happens now, not lazily, so truncation is caught here. Every image the package
    reads goes through this function (or ``image_header_size``)."""
    path = Path(path)
    try:
        with _open_checked(path) as im:
            im.load()
            return im.convert("RGB")
    except Exception as e:  # PIL raises many types for corrupt data (OSError, SyntaxError, struct.error, ...)
        raise _image_error(path, e) from None
    except MemoryError as e:
        raise _image_error(path, e) from None


def image_header_size(path: str | os.PathLike) -> tuple[int, int]:
    """(width, height) from the header only (no decode), with ``open_image``'s errors and limit."""
    path = Path(path)
    try:
        with _open_checked(path) as im:
            return im.size
    except Exception as e:
        raise _image_error(path, e) from None


@dataclass
class ImageTransform:
    """Resize the shortest side (bicubic), centre-crop, scale to [0, 1], normalise.

    Matches OpenAI's ``_transform`` and Hugging Face's ``CLIPImageProcessor`` defaults.
    """

    image_size: int = 224
    mean: tuple[float, ...] = field(default=OPENAI_MEAN)
    std: tuple[float, ...] = field(default=OPENAI_STD)
    resample: str = "bicubic"

    def _one(self, im: Image.Image) -> np.ndarray:
        if im.mode != "RGB":
            im = im.convert("RGB")
        s = self.image_size
        w, h = im.size
        scale = s / min(w, h)
        nw, nh = max(s, round(w * scale)), max(s, round(h * scale))
        if (nw, nh) != (w, h):
            im = im.resize((nw, nh), resample=getattr(Image.Resampling, self.resample.upper()))
        left, top = (nw - s) // 2, (nh - s) // 2
        im = im.crop((left, top, left + s, top + s))
        return np.asarray(im, dtype=np.float32) / 255.0

    def __call__(self, images: Image.Image | Sequence[Image.Image]) -> torch.Tensor:
        if isinstance(images, Image.Image):
            images = [images]
        arr = np.stack([self._one(im) for im in images])  # [B, H, W, 3]
        arr = (arr - np.asarray(self.mean, dtype=np.float32)) / np.asarray(self.std, dtype=np.float32)
        return torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous()

    def fingerprint(self) -> str:
        return hashlib.sha1(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:12]

    def to_hf_config(self) -> dict:
        """A ``preprocessor_config.json`` that Hugging Face's CLIPImageProcessor reads."""
        return {
            "image_processor_type": "CLIPImageProcessor",
            "do_resize": True, "size": {"shortest_edge": self.image_size},
            "do_center_crop": True, "crop_size": {"height": self.image_size, "width": self.image_size},
            "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True,
            "image_mean": list(self.mean), "image_std": list(self.std),
            "do_convert_rgb": True, "resample": 3,
        }

    @classmethod
    def from_hf_config(cls, cfg: dict, default_size: int) -> "ImageTransform":
        size = cfg.get("crop_size") or cfg.get("size") or {}
        if isinstance(size, dict):
            s = size.get("height") or size.get("shortest_edge") or default_size
        else:
            s = int(size)
        return cls(image_size=int(s), mean=tuple(cfg.get("image_mean", OPENAI_MEAN)),
                   std=tuple(cfg.get("image_std", OPENAI_STD)))
