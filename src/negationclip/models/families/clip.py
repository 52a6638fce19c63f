"""OpenAI / LAION CLIP as a Hugging Face ``CLIPModel`` (every CLIP checkpoint format converts to it)."""

from __future__ import annotations

import json

import torch.nn.functional as F

from . import register
from .base import Family


def _pixels(pixels):
    return pixels["pixel_values"] if isinstance(pixels, dict) else pixels


def class_token_layer(layer, hidden):
    """A CLIP vision encoder layer's output at the class token only, ``[B, 1, D]``.

    Why: the head reads only the class token, so in the LAST layer every other token needs its
    key and value and nothing more; skipping their queries, attention outputs and MLPs makes
    ``--train-vision last-1`` several times cheaper per step, with the same result.
    """
    attn = layer.self_attn
    y = layer.layer_norm1(hidden)
    b, t, d = y.shape
    heads, hd = attn.num_heads, attn.head_dim
    q = attn.q_proj(y[:, :1]).view(b, 1, heads, hd).transpose(1, 2)
    k = attn.k_proj(y).view(b, t, heads, hd).transpose(1, 2)
    v = attn.v_proj(y).view(b, t, heads, hd).transpose(1, 2)
    o = F.scaled_dot_product_attention(q, k, v, scale=attn.scale,
                                       dropout_p=attn.dropout if attn.training else 0.0)
    x = hidden[:, :1] + attn.out_proj(o.transpose(1, 2).reshape(b, 1, d))
    return x + layer.mlp(layer.layer_norm2(x))


class ClipFamily(Family):
    name = "clip"
    model_types = ("clip",)
    text_prefixes = ("text_model.", "text_projection.")
    vision_prefixes = ("vision_model.", "visual_projection.")

    def text_features(self, model, input_ids, attention_mask=None):
        out = model.text_model(input_ids=input_ids, attention_mask=attention_mask)
        return model.text_projection(out.pooler_output)

    def image_features(self, model, pixels):
        out = model.vision_model(pixel_values=_pixels(pixels))
        return model.visual_projection(out.pooler_output)

    def embed_dim(self, model) -> int:
        return int(model.config.projection_dim)

    def vision_tokens(self, model) -> int:
        vc = model.config.vision_config
        return (int(vc.image_size) // int(vc.patch_size)) ** 2 + 1  # patches + class token

    def vision_embed(self, model, pixels):
        vm = model.vision_model
        return vm.pre_layrnorm(vm.embeddings(_pixels(pixels)))

    def vision_head(self, model, hidden):
        return model.visual_projection(model.vision_model.post_layernorm(hidden[:, 0, :]))

    def vision_suffix(self, model, hidden, split):
        layers = model.vision_model.encoder.layers
        for layer in layers[split:-1]:
            hidden = layer(hidden, None)
        return self.vision_head(model, class_token_layer(layers[-1], hidden))

    def loss(self, model, image_emb, text_emb, *, extra_text_emb=None, extra_image_emb=None):
        from ...train.loss import contrastive_loss
        return contrastive_loss(image_emb, text_emb, model.logit_scale.exp().float(),
                                extra_text_emb=extra_text_emb, extra_image_emb=extra_image_emb)

    def load(self, source, dtype, local_only, act):
        from ..load import _load_clip_hf
        return _load_clip_hf(source, dtype, local_only, act)

    def save(self, bundle, folder) -> None:
        bundle.model.save_pretrained(str(folder), safe_serialization=True)
        bundle.tokenizer.save_pretrained(folder)
        (folder / "preprocessor_config.json").write_text(
            json.dumps(bundle.transform.to_hf_config(), indent=2) + "\n")

    def describe(self, model) -> str:
        t, v = model.config.text_config, model.config.vision_config
        return (f"CLIP ViT (vision {v.num_hidden_layers}x{v.hidden_size}, patch {v.patch_size}, "
                f"{v.image_size}px; text {t.num_hidden_layers}x{t.hidden_size}, ctx "
                f"{t.max_position_embeddings}; embed {self.embed_dim(model)})")


CLIP = register(ClipFamily())
__all__ = ["CLIP", "ClipFamily"]
