"""CLIP image preprocessing without torchvision, and the one safe image opener."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from ..utils.errors import NegationClipError

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


def open_image(path: str | os.PathLike) -> Image.Image:
    """Open and fully decode an image as RGB; a missing, truncated or non-image file raises
    NegationClipError naming it (decoding now, not lazily, so truncation is caught here)."""
    path = Path(path)
    try:
        with Image.open(path) as im:
            im.load()
            return im.convert("RGB")
    except FileNotFoundError:
        raise NegationClipError(f"{path}: image not found") from None
    except IsADirectoryError:
        raise NegationClipError(f"{path}: is a folder, expected an image") from None
    except UnidentifiedImageError:
        raise NegationClipError(f"{path}: not an image file PIL can read") from None
    except (OSError, SyntaxError, ValueError) as e:  # truncated / corrupt data
        raise NegationClipError(f"{path}: unreadable image ({e})") from None


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
