"""Batched, no-grad text and image encoding; the differentiable feature functions for training."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Sequence

import torch
import torch.nn.functional as F
from PIL import Image

from ..utils.checks import positive_int
from ..utils.errors import NegationClipError
from ..utils.progress import progress
from .transform import open_image

if TYPE_CHECKING:
    from .load import ClipBundle


def _as_tensor(out) -> torch.Tensor:
    # transformers 5.x returns an output object from get_*_features; 4.x returned a tensor.
    if isinstance(out, torch.Tensor):
        return out
    for name in ("text_embeds", "image_embeds", "pooler_output"):
        v = getattr(out, name, None)
        if isinstance(v, torch.Tensor):
            return v
    raise TypeError(f"unexpected feature output {type(out).__name__}")


def text_features(model, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
                  ) -> torch.Tensor:
    """Text embeddings [B, D] in the joint space (the model family's own), not normalised,
    differentiable."""
    from .families import family_of
    return family_of(model).text_features(model, input_ids, attention_mask)


def text_features_by_length(fwd, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                            buckets: int) -> torch.Tensor:
    """``fwd(ids, mask)`` on rows sorted by length and cut into ``buckets`` groups, each padded
    only to its own longest row; rows come back in input order.

    Why: a training batch padded to its longest caption spends about a third of the text
    tower's compute on padding. With a causal mask no real token attends to padding and the
    pooled end-of-text token is real, so the embeddings are the same up to float rounding. Only
    for dynamically padded families (not ``Family.fixed_padding``).
    """
    n = input_ids.shape[0]
    if buckets <= 1 or n < 2 * buckets:
        return fwd(input_ids, attention_mask)
    lengths = attention_mask.sum(1)
    order = torch.argsort(lengths, stable=True)
    parts = []
    for idx in order.chunk(buckets):
        width = int(lengths[idx].max())
        parts.append(fwd(input_ids[idx, :width], attention_mask[idx, :width]))
    feats = torch.cat(parts)
    return feats[torch.argsort(order)]


def image_features(model, pixel_values) -> torch.Tensor:
    """Image embeddings [B, D] in the joint space, not normalised, differentiable;
    ``pixel_values`` is a tensor or (SigLIP 2 NaFlex) the transform's dict."""
    from .families import family_of
    return family_of(model).image_features(model, pixel_values)


@torch.no_grad()
def encode_text(bundle: "ClipBundle", texts: Sequence[str], *, batch_size: int = 256,
                normalize: bool = True, show_progress: bool = True, padding: str = "longest"
                ) -> torch.Tensor:
    """Embed texts with dynamic padding (each batch padded to its longest text) where that is
    exact (CLIP); families that pool a fixed position (SigLIP) always pad to the context length.

    Texts are sorted by length first so batches waste little padding; results come back in
    the input order, float32 on CPU.
    """
    batch_size = positive_int(batch_size, "encode_text: batch_size")
    if isinstance(texts, str):
        raise NegationClipError("encode_text: texts must be a list of strings, not one string")
    texts = list(texts)
    model, dev = bundle.model, bundle.device
    lengths = [len(t) for t in texts]
    order = sorted(range(len(texts)), key=lambda i: lengths[i])
    out = torch.empty((len(texts), bundle.embed_dim), dtype=torch.float32)
    bar = progress(total=len(texts), desc="encode text", unit="text",
                   disable=None if (show_progress and len(texts) > batch_size) else True)
    for s in range(0, len(order), batch_size):
        idx = order[s: s + batch_size]
        tok = bundle.tokenizer([texts[i] for i in idx], padding=padding)
        feats = text_features(model, tok.input_ids.to(dev), tok.attention_mask.to(dev)).float()
        if normalize:
            feats = F.normalize(feats, dim=-1)
        out[idx] = feats.cpu()
        bar.update(len(idx))
    bar.close()
    return out


@torch.no_grad()
def encode_pixels(bundle: "ClipBundle", pixel_values, normalize: bool = True
                  ) -> torch.Tensor:
    from .families.siglip import _to_device
    feats = image_features(bundle.model, _to_device(pixel_values, bundle.device, bundle.dtype)).float()
    return F.normalize(feats, dim=-1) if normalize else feats


@torch.no_grad()
def encode_images(bundle: "ClipBundle", images: Sequence[Image.Image | str | os.PathLike], *,
                  batch_size: int = 64, normalize: bool = True, show_progress: bool = True
                  ) -> torch.Tensor:
    """Embed PIL images or image paths (paths are opened with ``open_image(p, mode=None)``, in
    the file's own mode as ``preprocess(Image.open(p))`` sees them; a bad file is a
    NegationClipError naming it). For many images over many runs use ImageEmbeddingCache."""
    batch_size = positive_int(batch_size, "encode_images: batch_size")
    if isinstance(images, (str, os.PathLike, Image.Image)):
        raise NegationClipError("encode_images: images must be a list (of paths or PIL images), "
                                "not one image")
    images = list(images)
    out = torch.empty((len(images), bundle.embed_dim), dtype=torch.float32)
    bar = progress(total=len(images), desc="encode images", unit="img",
                   disable=None if (show_progress and len(images) > batch_size) else True)
    for s in range(0, len(images), batch_size):
        chunk = [im if isinstance(im, Image.Image) else open_image(im, mode=None)
                 for im in images[s: s + batch_size]]
        out[s: s + len(chunk)] = encode_pixels(bundle, bundle.transform(chunk), normalize).cpu()
        bar.update(len(chunk))
    bar.close()
    return out
