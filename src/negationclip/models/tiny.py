"""Small random CLIPs with the real tokenizer: for tests, benchmarks and NegWorld."""

from __future__ import annotations

import torch

from .load import ClipBundle
from .tokenizer import ClipTokenizer
from .transform import ImageTransform


def tiny_clip_config(*, text_width: int = 64, text_layers: int = 2, vision_width: int = 64,
                     vision_layers: int = 2, image_size: int = 32, patch_size: int = 8,
                     embed_dim: int = 32, context_length: int = 77, mlp_ratio: int = 4,
                     hidden_act: str = "quick_gelu"):
    """A ``CLIPConfig`` in the OpenAI layout (heads = width // 64, QuickGELU, vocab 49408)."""
    from transformers import CLIPConfig

    text = dict(vocab_size=49408, hidden_size=text_width, intermediate_size=text_width * mlp_ratio,
                num_hidden_layers=text_layers, num_attention_heads=max(1, text_width // 64),
                max_position_embeddings=context_length, hidden_act=hidden_act,
                projection_dim=embed_dim, bos_token_id=49406, eos_token_id=49407, pad_token_id=1)
    vision = dict(hidden_size=vision_width, intermediate_size=vision_width * mlp_ratio,
                  num_hidden_layers=vision_layers, num_attention_heads=max(1, vision_width // 64),
                  image_size=image_size, patch_size=patch_size, hidden_act=hidden_act,
                  projection_dim=embed_dim)
    return CLIPConfig(text_config=text, vision_config=vision, projection_dim=embed_dim)


def vit_b32_config():
    """ViT-B/32's shapes (random weights), for benchmarks that need a realistic size."""
    return tiny_clip_config(text_width=512, text_layers=12, vision_width=768, vision_layers=12,
                            image_size=224, patch_size=32, embed_dim=512)


def bundle_from_config(config, seed: int = 0) -> ClipBundle:
    from transformers import CLIPModel

    torch.manual_seed(seed)
    model = CLIPModel(config).eval()
    return ClipBundle(model, ClipTokenizer(context_length=config.text_config.max_position_embeddings),
                      ImageTransform(image_size=config.vision_config.image_size),
                      {"source": f"random(seed={seed})", "format": "config"})


def tiny_clip_bundle(seed: int = 0, **overrides) -> ClipBundle:
    return bundle_from_config(tiny_clip_config(**overrides), seed=seed)
