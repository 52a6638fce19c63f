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


#: beside a saved tokenizer: how texts are cleaned and masked before it (open_clip-converted SigLIP)
TOKENIZER_SETTINGS = "negationclip_tokenizer.json"


class FixedLengthTokenizer:
    """A Hugging Face tokenizer that always pads to ``context_length`` (the tokenizer contract
    of ``ClipTokenizer``: ``__call__`` -> TokenBatch, ``save_pretrained``). Where the tokenizer
    returns no attention mask (SigLIP's), the model attends to every position, padding included,
    as it was trained; the batch then carries an all-ones mask, which is the same thing.

    ``clean`` names an open_clip cleaning rule (``models.tokenizer.TEXT_CLEANERS``) applied to
    each text first, and ``use_mask=False`` drops the tokenizer's mask: an open_clip SigLIP
    tokenizes with ``clean="canonicalize"`` and its text tower attends to padding. Both are
    saved beside the tokenizer (``negationclip_tokenizer.json``) so a reload tokenizes alike."""

    fixed_padding = True

    def __init__(self, hf, context_length: int, *, clean: str | None = None,
                 use_mask: bool | None = None):
        from ..tokenizer import TEXT_CLEANERS

        self.hf = hf
        self.context_length = int(context_length)
        self.pad_token_id = int(hf.pad_token_id if hf.pad_token_id is not None else 0)
        has_mask = "attention_mask" in getattr(hf, "model_input_names", ())
        self.uses_mask = has_mask if use_mask is None else bool(use_mask and has_mask)
        if clean is not None and clean not in TEXT_CLEANERS:
            raise NegationClipError(f"unknown text cleaning rule {clean!r}; one of "
                                    f"{', '.join(TEXT_CLEANERS)}")
        self.clean = clean
        self._clean = TEXT_CLEANERS[clean] if clean else (lambda t: t)

    @classmethod
    def from_folder(cls, hf, context_length: int, folder) -> "FixedLengthTokenizer":
        """Wrap ``hf`` with the settings saved beside it in ``folder`` (if any)."""
        f = os.path.join(str(folder), TOKENIZER_SETTINGS)
        if not os.path.isfile(f):
            return cls(hf, context_length)
        from ...utils.io import load_json
        st = load_json(f)
        if not isinstance(st, dict):
            raise NegationClipError(f"{f}: expected a JSON object")
        return cls(hf, context_length, clean=st.get("clean"), use_mask=st.get("attention_mask"))

    @property
    def vocab_size(self) -> int:
        return len(self.hf)

    def encode(self, text: str) -> list[int]:
        return self.hf(self._clean(text), add_special_tokens=False)["input_ids"]

    def __call__(self, texts: str | Sequence[str], *, padding: str = "max_length",
                 context_length: int | None = None):
        from ..tokenizer import TokenBatch

        if isinstance(texts, str):
            texts = [texts]
        ctx = context_length or self.context_length
        enc = self.hf([self._clean(t) for t in texts], padding="max_length", truncation=True,
                      max_length=ctx, return_tensors="pt", return_attention_mask=self.uses_mask)
        ids = enc["input_ids"].long()
        mask = enc["attention_mask"].long() if self.uses_mask else torch.ones_like(ids)
        return TokenBatch(ids, mask)

    def save_pretrained(self, folder) -> None:
        self.hf.save_pretrained(str(folder))
        has_mask = "attention_mask" in getattr(self.hf, "model_input_names", ())
        if self.clean is not None or self.uses_mask != has_mask:
            from ...utils.io import atomic_write_json
            atomic_write_json(os.path.join(str(folder), TOKENIZER_SETTINGS),
                              {"clean": self.clean, "attention_mask": self.uses_mask})


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

    def vision_tokens(self, model):
        vc = model.config.vision_config
        return (int(vc.image_size) // int(vc.patch_size)) ** 2  # no class token

    def vision_embed(self, model, pixels):
        return model.vision_model.embeddings(pixels["pixel_values"] if isinstance(pixels, dict)
                                             else pixels)

    def vision_head(self, model, hidden):
        vm = model.vision_model
        return vm.head(vm.post_layernorm(hidden))  # the attention-pool head pools

    def similarity(self, model, image_emb, text_emb):
        return (model.logit_scale.exp().float() * image_emb @ text_emb.T
                + model.logit_bias.float())

    pair_loss_kind = "sigmoid"

    def logit_bias(self, model):
        return model.logit_bias.float()

    def choice_loss(self, scores, targets, scale, bias=None):
        """Each (row, candidate) pair its own binary problem: sigmoid of ``scale * score + bias``,
        positive where ``targets`` says, summed over pairs and divided by the rows."""
        from ...train.loss import positive_mask, sigmoid_pairs_loss
        if bias is None:
            raise NegationClipError(f"{self.name}: the sigmoid loss needs the model's logit bias")
        return sigmoid_pairs_loss(scale * scores + bias, positive_mask(targets, tuple(scores.shape)))

    def two_way_loss(self, scores, row_targets, col_targets, scale, bias=None):
        """A pair is one binary problem read either way: the column view adds nothing, so the
        symmetric term is the pair loss once (``sigmoid_loss`` on a batch, as SigLIP)."""
        from ...train.loss import positive_mask
        rows = positive_mask(row_targets, tuple(scores.shape))
        cols = positive_mask(col_targets, (scores.shape[1], scores.shape[0]))
        if not torch.equal(rows, cols.t()):
            raise NegationClipError(f"{self.name}: the row and column targets name different "
                                    "positive pairs; a sigmoid loss has one label per pair")
        return self.choice_loss(scores, row_targets, scale, bias)

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
        return ClipBundle(model, FixedLengthTokenizer.from_folder(hf_tok, ctx, source),
                          ProcessorTransform(proc), prov)

    def save(self, bundle, folder) -> None:
        bundle.model.save_pretrained(str(folder), safe_serialization=True)
        bundle.tokenizer.save_pretrained(folder)
        bundle.transform.save_pretrained(folder)


class Siglip2Family(SiglipFamily):
    name = "siglip2"
    model_types = ("siglip2",)
    model_class = "Siglip2Model"

    def vision_tokens(self, model):
        return None  # NaFlex: per-image patch masks; the whole tower runs when it trains
    swap_refusal = SiglipFamily.swap_refusal.replace("SigLIP", "SigLIP 2", 1)


SIGLIP = register(SiglipFamily())
SIGLIP2 = register(Siglip2Family())
__all__ = ["FixedLengthTokenizer", "TOKENIZER_SETTINGS", "ProcessorTransform", "SIGLIP", "SIGLIP2", "_to_device"]
