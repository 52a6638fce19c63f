"""SigLIP (``SiglipModel``) and SigLIP 2 (``Siglip2Model``, NaFlex) from Hugging Face folders.

Both pool a fixed text position (the last), so texts are always padded to the context length
(``padding="max_length"``, as SigLIP was trained): dynamic padding would change embeddings.
Tokenizers (SentencePiece for SigLIP, Gemma for SigLIP 2) and image processors (SigLIP: a
square resize, no centre crop; SigLIP 2: NaFlex patches with ``pixel_attention_mask`` and
``spatial_shapes``) are the folder's own Hugging Face ones, so pixels and ids are the
reference's by construction. The score is ``logit_scale.exp() * cos + logit_bias`` (ranks as
the cosine); training uses the sigmoid loss with its learned bias.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Sequence

import torch
from PIL import Image

from ...utils.errors import NegationClipError
from . import register
from .base import Family


class FixedLengthTokenizer:
    """A Hugging Face tokenizer that always pads to ``context_length`` (the tokenizer contract
    of ``ClipTokenizer``: ``__call__`` -> TokenBatch, ``save_pretrained``). Where the tokenizer
    returns no attention mask (SigLIP's), the model attends to every position, padding included,
    as it was trained; the batch then carries an all-ones mask, which is the same thing."""

    fixed_padding = True

    def __init__(self, hf, context_length: int):
        self.hf = hf
        self.context_length = int(context_length)
        self.pad_token_id = int(hf.pad_token_id if hf.pad_token_id is not None else 0)
        self.uses_mask = "attention_mask" in getattr(hf, "model_input_names", ())

    @property
    def vocab_size(self) -> int:
        return len(self.hf)

    def encode(self, text: str) -> list[int]:
        return self.hf(text, add_special_tokens=False)["input_ids"]

    def __call__(self, texts: str | Sequence[str], *, padding: str = "max_length",
                 context_length: int | None = None):
        from ..tokenizer import TokenBatch

        if isinstance(texts, str):
            texts = [texts]
        ctx = context_length or self.context_length
        enc = self.hf(list(texts), padding="max_length", truncation=True, max_length=ctx,
                      return_tensors="pt", return_attention_mask=self.uses_mask)
        ids = enc["input_ids"].long()
        mask = enc["attention_mask"].long() if self.uses_mask else torch.ones_like(ids)
        return TokenBatch(ids, mask)

    def save_pretrained(self, folder) -> None:
        self.hf.save_pretrained(str(folder))


class ProcessorTransform:
    """The folder's own Hugging Face image processor behind the ``ImageTransform`` contract:
    images -> pixel tensor, or a dict when the model needs more (SigLIP 2's NaFlex masks)."""

    def __init__(self, processor):
        self.processor = processor

    def __call__(self, images: Image.Image | Sequence[Image.Image]):
        if isinstance(images, Image.Image):
            images = [images]
        out = self.processor(images=list(images), return_tensors="pt")
        if set(out.keys()) == {"pixel_values"}:
            return out["pixel_values"]
        return {k: v for k, v in out.items()}

    def to_hf_config(self) -> dict:
        return self.processor.to_dict()

    def describe(self) -> dict:
        cfg = json.loads(json.dumps(self.to_hf_config(), default=str))
        return {"rule": "hf-processor", "reference": type(self.processor).__name__, **cfg}

    def fingerprint(self) -> str:
        return hashlib.sha1(json.dumps(self.describe(), sort_keys=True).encode()).hexdigest()[:12]

    def save_pretrained(self, folder) -> None:
        self.processor.save_pretrained(str(folder))


def _to_device(pixels, device, dtype):
    if isinstance(pixels, dict):
        return {k: (v.to(device, dtype) if k == "pixel_values" else v.to(device))
                for k, v in pixels.items()}
    return pixels.to(device, dtype)


class SiglipFamily(Family):
    name = "siglip"
    model_types = ("siglip",)
    model_class = "SiglipModel"
    text_prefixes = ("text_model.",)
    vision_prefixes = ("vision_model.",)
    scalars = ("logit_scale", "logit_bias")
    fixed_padding = True
    swap_refusal = ("a SigLIP text encoder cannot replace a CLIP text encoder: Stable Diffusion's "
                    "UNet and CLIPSeg's decoder cross-attend to CLIP text-token states (their width, "
                    "causal mask and EOT pooling); no pipeline was trained on SigLIP's")

    def text_features(self, model, input_ids, attention_mask=None):
        return model.text_model(input_ids=input_ids, attention_mask=attention_mask).pooler_output

    def image_features(self, model, pixels):
        kw = pixels if isinstance(pixels, dict) else {"pixel_values": pixels}
        return model.vision_model(**kw).pooler_output

    def embed_dim(self, model) -> int:
        # the text head projects to ``projection_size``; the vision pooler keeps its width
        vis = int(model.config.vision_config.hidden_size)
        txt = getattr(model.config.text_config, "projection_size", None) or vis
        if int(txt) != vis:
            raise NegationClipError(
                f"SigLIP config: text projection_size {txt} != vision hidden_size {vis}; "
                "image and text embeddings must share one space")
        return vis

    def similarity(self, model, image_emb, text_emb):
        return (model.logit_scale.exp().float() * image_emb @ text_emb.T
                + model.logit_bias.float())

    def loss(self, model, image_emb, text_emb, *, extra_text_emb=None, extra_image_emb=None):
        from ...train.loss import sigmoid_loss
        return sigmoid_loss(image_emb, text_emb, model.logit_scale.exp().float(),
                            model.logit_bias.float(), extra_text_emb=extra_text_emb,
                            extra_image_emb=extra_image_emb)

    def load(self, source, dtype, local_only, act):
        import transformers
        from transformers import AutoImageProcessor, AutoTokenizer

        from ..load import ClipBundle

        cls = getattr(transformers, self.model_class)
        try:
            model = cls.from_pretrained(source, dtype=dtype, local_files_only=local_only).eval()
        except (OSError, ValueError) as e:
            raise NegationClipError(f"{source}: not a loadable {self.model_class} folder "
                                    f"({str(e).splitlines()[0][:300]})") from None
        t_act = model.config.text_config.hidden_act
        if act is not None and act != t_act:
            raise NegationClipError(f"{source}: --act/act={act!r} applies to CLIP checkpoints; "
                                    f"{self.name} uses {t_act} as its config says")
        try:
            hf_tok = AutoTokenizer.from_pretrained(source, local_files_only=local_only)
        except (OSError, ValueError, ImportError) as e:
            raise NegationClipError(f"{source}: {self.name} needs its own tokenizer files beside "
                                    f"the weights ({str(e).splitlines()[0][:200]})") from None
        try:
            proc = AutoImageProcessor.from_pretrained(source, local_files_only=local_only)
        except (OSError, ValueError) as e:
            raise NegationClipError(f"{source}: {self.name} needs its preprocessor_config.json "
                                    f"({str(e).splitlines()[0][:200]})") from None
        ctx = model.config.text_config.max_position_embeddings
        prov = {"source": source, "format": "huggingface", "family": self.name, "act": t_act,
                "act_origin": "config.json hidden_act"}
        extra = os.path.join(source, "negationclip.json")
        if os.path.isfile(extra):
            from ...utils.io import load_json
            prov["saved_from"] = load_json(extra).get("provenance", {})
        return ClipBundle(model, FixedLengthTokenizer(hf_tok, ctx), ProcessorTransform(proc), prov)

    def save(self, bundle, folder) -> None:
        bundle.model.save_pretrained(str(folder), safe_serialization=True)
        bundle.tokenizer.save_pretrained(folder)
        bundle.transform.save_pretrained(folder)


class Siglip2Family(SiglipFamily):
    name = "siglip2"
    model_types = ("siglip2",)
    model_class = "Siglip2Model"
    swap_refusal = SiglipFamily.swap_refusal.replace("SigLIP", "SigLIP 2", 1)


SIGLIP = register(SiglipFamily())
SIGLIP2 = register(Siglip2Family())
__all__ = ["FixedLengthTokenizer", "ProcessorTransform", "SIGLIP", "SIGLIP2", "_to_device"]
