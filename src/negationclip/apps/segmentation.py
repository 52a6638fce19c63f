"""NegationCLIPSeg: CLIPSeg with its CLIP text encoder replaced by a NegationCLIP one.

CLIPSeg (CIDAS/clipseg-rd64-refined) conditions its decoder on CLIP ViT-B/16's projected text
embedding; NegationCLIP only fine-tunes the text tower, so the vision features the decoder
was trained on stay valid. The swap copies the text transformer and the text projection by
name, checks every name and shape, and refuses anything that does not line up.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch
from PIL import Image

from ..utils import NegationClipError, atomic_write_bytes
from .diffusion import TextEncoder, _is_text_encoder_folder, load_text_encoder, quiet_hf_progress, text_tower


def load_clipseg(source: str | os.PathLike, *, device: str = "cpu", dtype: torch.dtype = torch.float32):
    """``(CLIPSegForImageSegmentation, CLIPSegProcessor)`` from a folder or the local HF cache."""
    from transformers import CLIPSegForImageSegmentation, CLIPSegProcessor

    path = Path(source)
    if not path.is_dir():
        s = str(source)
        if path.exists() or s.startswith(("/", ".", "~")) or s.count("/") > 1:
            raise NegationClipError(f"{source}: not a CLIPSeg folder (and not a Hugging Face id)")
    elif not (path / "config.json").is_file():
        raise NegationClipError(f"{path}: not a CLIPSeg folder (no config.json)")
    quiet_hf_progress()
    try:
        model = CLIPSegForImageSegmentation.from_pretrained(str(source), dtype=dtype,
                                                            local_files_only=True)
        processor = CLIPSegProcessor.from_pretrained(str(source), local_files_only=True)
    except (OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise NegationClipError(f"{source}: cannot load CLIPSeg (offline: only local folders and "
                                f"the local Hugging Face cache are read): {first}") from None
    if getattr(model.config, "model_type", "") != "clipseg":
        raise NegationClipError(f"{source}: not a CLIPSeg model (model_type "
                                f"{model.config.model_type!r})")
    return model.to(device).eval(), processor


@dataclass
class ClipSegSwap:
    copied: int                            # tensors copied
    source: dict
    tokenizer: str                         # "kept (same vocabulary)" or "replaced"
    vision: str = "not checked (the source has no vision tower)"
    notes: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        return [f"CLIPSeg text encoder <- {self.source.get('source', '?')}: {self.copied} tensors",
                f"  tokenizer {self.tokenizer}", f"  vision tower: {self.vision}", *self.notes]


_CONFIG_KEYS = ("hidden_size", "num_attention_heads", "num_hidden_layers", "intermediate_size",
                "max_position_embeddings", "hidden_act")


def clipseg_text_state(encoder_model) -> dict[str, torch.Tensor]:
    """The encoder's tensors under CLIPSeg's names (``clip.text_model.*``, ``clip.text_projection.*``)."""
    out = {f"clip.text_model.{k}": v for k, v in text_tower(encoder_model).state_dict().items()}
    proj = getattr(encoder_model, "text_projection", None)
    if proj is not None:
        out.update({f"clip.text_projection.{k}": v for k, v in proj.state_dict().items()})
    return out


def swap_clipseg_text_encoder(model, encoder: TextEncoder, processor=None, *,
                              vision_state: dict[str, torch.Tensor] | None = None) -> ClipSegSwap:
    """Copy ``encoder`` (a CLIPTextModelWithProjection) into ``model`` in place.

    Every CLIPSeg text tensor must receive exactly one tensor of the same shape; the text
    configs must agree on what shapes do not show (heads, activation). Nothing is changed
    unless all checks pass. ``vision_state`` (the source CLIP's ``vision_model`` state dict)
    is compared with CLIPSeg's to warn when the NegationCLIP was not tuned from ViT-B/16.
    """
    src = encoder.provenance.get("source", "the given checkpoint")
    if getattr(encoder.model, "text_projection", None) is None:
        raise NegationClipError(f"{src}: CLIPSeg conditions on the projected text embedding, and this "
                                "text encoder has no text_projection; pass the full CLIP checkpoint")
    mine = model.config.text_config
    theirs = encoder.model.config
    for key in _CONFIG_KEYS:
        a, b = getattr(theirs, key, None), getattr(mine, key, None)
        if a != b:
            raise NegationClipError(
                f"{src}: text encoder {key}={a!r} but CLIPSeg's is {b!r}; CLIPSeg is built on "
                "CLIP ViT-B/16, so use a NegationCLIP fine-tuned from ViT-B/16")
    target = {k: v for k, v in model.state_dict().items()
              if k.startswith(("clip.text_model.", "clip.text_projection."))}
    new = clipseg_text_state(encoder.model)
    missing = sorted(set(target) - set(new))
    extra = sorted(set(new) - set(target))
    bad = [(k, tuple(new[k].shape), tuple(target[k].shape)) for k in sorted(set(new) & set(target))
           if new[k].shape != target[k].shape]
    if missing or extra or bad:
        parts = []
        if bad:
            parts.append("shape mismatch: " + "; ".join(f"{k} {a} vs CLIPSeg {b}" for k, a, b in bad[:3])
                         + (f" (+{len(bad) - 3} more)" if len(bad) > 3 else ""))
        if missing:
            parts.append("missing: " + ", ".join(missing[:3]) + (f" (+{len(missing) - 3})" if len(missing) > 3 else ""))
        if extra:
            parts.append("unexpected: " + ", ".join(extra[:3]) + (f" (+{len(extra) - 3})" if len(extra) > 3 else ""))
        raise NegationClipError(f"{src}: text encoder does not fit CLIPSeg: " + " | ".join(parts))
    tok_state = "kept (same vocabulary)"
    if processor is not None:
        try:
            same = processor.tokenizer.get_vocab() == encoder.tokenizer.get_vocab()
        except Exception:
            same = False
        if not same:
            if len(encoder.tokenizer) > mine.vocab_size:
                raise NegationClipError(f"{src}: tokenizer has {len(encoder.tokenizer)} tokens, "
                                        f"CLIPSeg embeds {mine.vocab_size}")
            processor.tokenizer = encoder.tokenizer
            tok_state = "replaced"
    vision = ClipSegSwap.__dataclass_fields__["vision"].default
    if vision_state is not None:
        vision = _compare_vision(model, vision_state)
    ref = next(model.parameters())
    # load_state_dict copies into the existing tensors (keeping CLIPSeg's dtype and device)
    res = model.load_state_dict({k: v.to(ref.device) for k, v in new.items()}, strict=False)
    if res.unexpected_keys:  # cannot happen after the checks above; never continue silently
        raise NegationClipError(f"{src}: CLIPSeg did not take {res.unexpected_keys[:3]}")
    return ClipSegSwap(copied=len(new), source=dict(encoder.provenance), tokenizer=tok_state,
                       vision=vision)


def _compare_vision(model, vision_state: dict[str, torch.Tensor]) -> str:
    mine = {k[len("clip.vision_model."):]: v for k, v in model.state_dict().items()
            if k.startswith("clip.vision_model.")}
    if set(mine) != set(vision_state) or any(mine[k].shape != vision_state[k].shape for k in mine):
        return "DIFFERENT ARCHITECTURE from CLIPSeg's: the decoder will see unfamiliar text features"
    diff = max(float((mine[k].float().cpu() - vision_state[k].float().cpu()).abs().max()) for k in mine)
    if diff == 0.0:
        return "identical to CLIPSeg's (as expected: NegationCLIP freezes the vision tower)"
    return (f"differs from CLIPSeg's (max |diff| {diff:.3g}): the NegationCLIP was probably not tuned "
            "from CLIPSeg's ViT-B/16; results may be poor")


def load_negation_clipseg(clipseg: str | os.PathLike, text_encoder: str | os.PathLike | None = None,
                          *, device: str = "cpu", dtype: torch.dtype = torch.float32,
                          act: str | None = None):
    """CLIPSeg (and processor) with the text encoder from ``text_encoder`` (any source
    ``load_clip`` reads, or a CLIPTextModelWithProjection folder); None keeps the original."""
    model, processor = load_clipseg(clipseg, device=device, dtype=dtype)
    report = None
    if text_encoder is not None:
        vision_state = None
        if _is_text_encoder_folder(Path(text_encoder)):
            enc = load_text_encoder(text_encoder, with_projection=True, dtype=dtype, act=act)
        else:
            from ..models import load_clip
            from .diffusion import text_encoder_from_clip_model

            bundle = load_clip(str(text_encoder), dtype=dtype, act=act)
            prov = dict(bundle.provenance or {})
            prov.setdefault("source", str(text_encoder))
            enc = text_encoder_from_clip_model(bundle.model, bundle.tokenizer.hf,
                                               with_projection=True, provenance=prov)
            vision = getattr(bundle.model, "vision_model", None)
            vision_state = vision.state_dict() if vision is not None else None
        report = swap_clipseg_text_encoder(model, enc, processor, vision_state=vision_state)
    return model, processor, report


@torch.no_grad()
def segment_probs(model, processor, images: Sequence[Image.Image], texts: Sequence[str]
                  ) -> list[torch.Tensor]:
    """Per (image, text) pair, P(pixel belongs to the referred region) at the image's size."""
    import torch.nn.functional as F

    if len(images) != len(texts):
        raise NegationClipError(f"segment: {len(images)} images but {len(texts)} texts")
    if not images:
        return []
    images = [im.convert("RGB") for im in images]
    ctx = int(model.config.text_config.max_position_embeddings)
    inputs = processor(text=list(texts), images=images, padding=True, truncation=True,
                       max_length=ctx, return_tensors="pt")
    dev = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    inputs = {k: (v.to(dev, dtype) if v.is_floating_point() else v.to(dev)) for k, v in inputs.items()}
    logits = model(**inputs).logits
    if logits.ndim == 2:
        logits = logits.unsqueeze(0)
    out = []
    for im, lg in zip(images, logits):
        w, h = im.size
        up = F.interpolate(lg[None, None].float(), size=(h, w), mode="bilinear", align_corners=False)
        out.append(torch.sigmoid(up[0, 0]).cpu())
    return out


def segment(model, processor, image: Image.Image, text: str, threshold: float = 0.5) -> torch.Tensor:
    """Boolean mask [H, W] of the region ``text`` refers to."""
    return segment_probs(model, processor, [image], [text])[0] >= threshold


def overlay(image: Image.Image, mask: torch.Tensor, *, color=(255, 40, 40), alpha: float = 0.55,
            caption: str | None = None) -> Image.Image:
    """The image with the mask tinted in, and the expression written on top."""
    import numpy as np
    from PIL import ImageDraw

    base = np.asarray(image.convert("RGB"), dtype=np.float32)
    m = mask.numpy().astype(bool) if isinstance(mask, torch.Tensor) else np.asarray(mask, bool)
    if m.shape != base.shape[:2]:
        raise NegationClipError(f"overlay: mask {m.shape} does not match image {base.shape[:2]}")
    tint = np.array(color, dtype=np.float32)
    base[m] = (1 - alpha) * base[m] + alpha * tint
    out = Image.fromarray(base.clip(0, 255).astype(np.uint8))
    if caption:
        d = ImageDraw.Draw(out)
        d.rectangle([0, 0, out.width, 14], fill=(0, 0, 0))
        d.text((3, 2), caption, fill=(255, 255, 255))
    return out


def save_png(image: Image.Image, path: str | os.PathLike) -> Path:
    import io

    buf = io.BytesIO()
    image.save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())
    return Path(path)
