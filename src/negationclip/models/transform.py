"""CLIP image preprocessing without torchvision, and the one safe image opener.

Two rules, each pixel-exact with its reference on any PIL image (any size, any mode):

- ``"openai"``: OpenAI's ``clip._transform`` (torchvision ``Resize(n, BICUBIC)`` +
  ``CenterCrop(n)`` on the PIL image in its own mode, then ``convert("RGB")``, ``ToTensor``,
  ``Normalize``). The short side becomes ``n``, the long side ``int(n * long / short)``
  (truncated); the crop offset is ``int(round((size - n) / 2))`` (Python's round-half-even); a
  side smaller than the crop is padded with zeros, ``(n - size) // 2`` before it.
- ``"hf"``: Hugging Face ``CLIPImageProcessor`` (transformers' PIL backend): the image is made
  RGB first (transparency composited onto white), resized the same way, cropped at
  ``(size - n) // 2`` (floor; zero padding where smaller), rescaled in float64 then float32.

Both are applied per image with PIL and finished with a 256-entry lookup table per channel that
holds exactly the float32 arithmetic of the reference (so a batch costs one gather, no float
maths per pixel).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from ..utils.errors import NegationClipError

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
_RESAMPLE = {"nearest": 0, "lanczos": 1, "bilinear": 2, "bicubic": 3, "box": 4, "hamming": 5}
#: ``preprocessor_config.json`` key that says which rule a negationclip-saved folder follows.
RULE_KEY = "negationclip_rule"


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


def _open_checked(path: Path, data: bytes | None = None) -> Image.Image:
    """``Image.open`` with our pixel limit in force: PIL's own bomb check (a warning above its
    limit, an error above twice it) is replaced by one rule, checked from the header."""
    limit = max_image_pixels()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        pil_limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
        try:
            im = Image.open(path if data is None else io.BytesIO(data))
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


def open_image(path: str | os.PathLike, mode: str | None = "RGB", *, data: bytes | None = None
               ) -> Image.Image:
    """Open and fully decode an image (as RGB by default). Every way a file can fail (missing, a folder, no
    permission, not an image, truncated, corrupt, over the pixel limit of ``max_image_pixels``)
    raises NegationClipError naming it, so callers count a skip or stop with a clear message.
    Decoding happens now, not lazily, so truncation is caught here. Every image the package
    reads goes through this function (or ``image_header_size``).

    ``mode="RGB"`` converts as the official training/eval loaders do
    (``Image.open(p).convert("RGB")``); ``mode=None`` keeps the file's own mode (what
    ``preprocess(Image.open(p))`` sees), so the transform makes it RGB by its rule.
    ``data``: the image's bytes (e.g. from a webdataset tar); ``path`` then only names it.
    """
    path = Path(path)
    try:
        with _open_checked(path, data) as im:
            im.load()
            if mode is None:
                return im.copy()
            return im.convert(mode)
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


def resized_size(w: int, h: int, n: int) -> tuple[int, int]:
    """(width, height) after resizing the short side to ``n``; the long side is truncated
    (``int(n * long / short)``), as torchvision's ``Resize(n)`` and HF's processor do."""
    if w <= h:
        return n, int(n * h / w)
    return int(n * w / h), n


# --- the rules: PIL image -> RGB PIL image of crop x crop ---------------------------------

def _openai_geometry(im: Image.Image, t: "ImageTransform") -> Image.Image:
    n, c = t.resize_to or t.image_size, t.image_size
    w, h = im.size
    if min(w, h) != n:  # torchvision returns the image untouched when the short side is n
        im = im.resize(resized_size(w, h, n), t.resample_code)
    w, h = im.size
    # a side smaller than the crop is padded ((c - size) // 2 before it) and then cropped at 0
    left = -((c - w) // 2) if c > w else int(round((w - c) / 2.0))
    top = -((c - h) // 2) if c > h else int(round((h - c) / 2.0))
    if (left, top, w, h) != (0, 0, c, c):
        im = im.crop((left, top, left + c, top + c))  # PIL fills outside the image with 0
    return im.convert("RGB")


def _to_rgb_composited(im: Image.Image) -> Image.Image:
    """RGB with any transparency composited onto white (what HF's processor does first)."""
    if "A" in im.getbands() or im.info.get("transparency") is not None:
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return im.convert("RGB")


def _hf_geometry(im: Image.Image, t: "ImageTransform") -> Image.Image:
    n, c = t.resize_to or t.image_size, t.image_size
    im = _to_rgb_composited(im)
    im = im.resize(resized_size(*im.size, n), t.resample_code)
    w, h = im.size
    left, top = (w - c) // 2, (h - c) // 2  # floor; negative = zero padding on that side
    if (left, top, w, h) != (0, 0, c, c):
        im = im.crop((left, top, left + c, top + c))
    return im


def _openai_lut(t: "ImageTransform") -> np.ndarray:
    # ToTensor: float32(v) / 255; Normalize: (x - mean) / std, all in float32
    x = np.arange(256, dtype=np.float32) / np.float32(255)
    return np.stack([(x - np.float32(m)) / np.float32(s) for m, s in zip(t.mean, t.std)])


def _hf_lut(t: "ImageTransform") -> np.ndarray:
    # rescale: float64(v) * factor -> float32; normalize: (x - mean) / std in float32
    x = (np.arange(256, dtype=np.float64) * t.rescale_factor).astype(np.float32)
    return np.stack([(x - np.float32(m)) / np.float32(s) for m, s in zip(t.mean, t.std)])


#: rule name -> (geometry: PIL -> RGB crop, lookup table builder). Add a rule by registering it.
RULES: dict[str, tuple[Callable, Callable]] = {
    "openai": (_openai_geometry, _openai_lut),
    "hf": (_hf_geometry, _hf_lut),
}
RULE_DOCS = {
    "openai": "OpenAI clip._transform (torchvision Resize+CenterCrop on the PIL image)",
    "hf": "Hugging Face CLIPImageProcessor (PIL backend)",
}


@dataclass
class ImageTransform:
    """Resize the shortest side (bicubic), centre-crop, scale to [0, 1], normalise, by ``rule``.

    ``image_size`` is the square crop; ``resize_to`` the short side before cropping (None: the
    crop size, as in every CLIP). ``rule`` is ``"openai"`` or ``"hf"`` (see the module doc).
    """

    image_size: int = 224
    mean: tuple[float, ...] = field(default=OPENAI_MEAN)
    std: tuple[float, ...] = field(default=OPENAI_STD)
    resample: str = "bicubic"
    rule: str = "openai"
    resize_to: int | None = None
    rescale_factor: float = 1 / 255  # the "hf" rule's rescale (the "openai" rule divides by 255)

    def __post_init__(self):
        if self.rule not in RULES:
            raise NegationClipError(f"unknown preprocessing rule {self.rule!r}; one of {', '.join(RULES)}")
        if self.resample not in _RESAMPLE:
            raise NegationClipError(f"unknown resample {self.resample!r}; one of {', '.join(_RESAMPLE)}")
        self.mean, self.std = tuple(float(m) for m in self.mean), tuple(float(s) for s in self.std)
        self._lut: tuple[str, np.ndarray] | None = None  # (fingerprint it was built for, table)

    @property
    def resample_code(self) -> int:
        return _RESAMPLE[self.resample]

    def geometry(self, im: Image.Image) -> Image.Image:
        """The RGB ``image_size`` square the network sees, before normalisation."""
        return RULES[self.rule][0](im, self)

    def __call__(self, images: Image.Image | Sequence[Image.Image]) -> torch.Tensor:
        if isinstance(images, Image.Image):
            images = [images]
        fp = self.fingerprint()
        if self._lut is None or self._lut[0] != fp:
            self._lut = (fp, RULES[self.rule][1](self))
        lut = self._lut[1]
        c = self.image_size
        out = np.empty((len(images), 3, c, c), dtype=np.float32)
        for i, im in enumerate(images):
            arr = np.asarray(self.geometry(im))  # [c, c, 3] uint8
            for ch in range(3):
                out[i, ch] = lut[ch][arr[..., ch]]
        return torch.from_numpy(out)

    def describe(self) -> dict:
        """What provenance records: the rule and its parameters."""
        return {"rule": self.rule, "reference": RULE_DOCS[self.rule], **self._fields()}

    def _fields(self) -> dict:
        return {k: v for k, v in asdict(self).items() if not k.startswith("_")}

    def fingerprint(self) -> str:
        return hashlib.sha1(json.dumps(self._fields(), sort_keys=True).encode()).hexdigest()[:12]

    def to_hf_config(self) -> dict:
        """A ``preprocessor_config.json`` that Hugging Face's CLIPImageProcessor reads; the rule
        is kept under ``negationclip_rule`` so ``load_clip`` reloads the same pixels."""
        return {
            "image_processor_type": "CLIPImageProcessor",
            "do_resize": True, "size": {"shortest_edge": self.resize_to or self.image_size},
            "do_center_crop": True, "crop_size": {"height": self.image_size, "width": self.image_size},
            "do_rescale": True, "rescale_factor": self.rescale_factor, "do_normalize": True,
            "image_mean": list(self.mean), "image_std": list(self.std),
            "do_convert_rgb": True, "resample": self.resample_code, RULE_KEY: self.rule,
        }

    @classmethod
    def from_hf_config(cls, cfg: dict, default_size: int, *, where: str = "preprocessor_config.json"
                       ) -> "ImageTransform":
        """The transform a ``preprocessor_config.json`` describes: rule ``"hf"`` unless the
        folder was written by negationclip with another rule. Settings CLIP models never use
        (no resize / no crop / fixed height x width resize) are refused, not approximated."""
        for flag in ("do_resize", "do_center_crop", "do_rescale", "do_normalize"):
            if cfg.get(flag, True) is False:
                raise NegationClipError(f"{where}: {flag}=false is not supported")

        def side(v, *keys):
            if v is None:
                return None
            if isinstance(v, (int, float)):
                return int(v)
            if isinstance(v, dict):
                for k in keys:
                    if v.get(k):
                        return int(v[k])
                raise NegationClipError(f"{where}: size {v} is not supported (need {' or '.join(keys)})")
            raise NegationClipError(f"{where}: size {v!r} is not supported")

        crop = cfg.get("crop_size")
        if isinstance(crop, dict) and crop.get("height") != crop.get("width"):
            raise NegationClipError(f"{where}: non-square crop_size {crop} is not supported")
        c = side(crop, "height", "shortest_edge") or side(cfg.get("size"), "shortest_edge") or default_size
        r = side(cfg.get("size"), "shortest_edge") or c
        names = {v: k for k, v in _RESAMPLE.items()}
        resample = cfg.get("resample", 3)
        if resample not in names:
            raise NegationClipError(f"{where}: resample {resample!r} is not a PIL filter code")
        rule = cfg.get(RULE_KEY, "hf")
        if rule not in RULES:
            raise NegationClipError(f"{where}: unknown {RULE_KEY} {rule!r}")
        return cls(image_size=c, resize_to=None if r == c else r,
                   mean=tuple(cfg.get("image_mean", OPENAI_MEAN)),
                   std=tuple(cfg.get("image_std", OPENAI_STD)), resample=names[resample],
                   rule=rule, rescale_factor=float(cfg.get("rescale_factor", 1 / 255)))
