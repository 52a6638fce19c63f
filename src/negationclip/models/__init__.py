"""The model layer: every CLIP checkpoint becomes one Hugging Face ``CLIPModel`` bundle."""

from .cache import EmbeddingResult, ImageEmbeddingCache, vision_fingerprint
from .encode import (encode_images, encode_pixels, encode_text, image_features, text_features,
                     text_features_by_length)
from .load import ACTS, ClipBundle, load_clip, parse_dtype, set_activation
from .save import export_openai, export_text_encoder, save
from .tiny import bundle_from_config, tiny_clip_bundle, tiny_clip_config, vit_b32_config
from .tokenizer import ClipTokenizer, TokenBatch, clean_text
from .transform import ImageTransform, open_image

__all__ = [
    "ACTS", "ClipBundle", "ClipTokenizer", "EmbeddingResult", "ImageEmbeddingCache", "ImageTransform",
    "TokenBatch", "bundle_from_config", "clean_text", "encode_images", "encode_pixels",
    "encode_text", "export_openai", "export_text_encoder", "image_features", "load_clip",
    "open_image", "parse_dtype", "save", "set_activation", "text_features", "text_features_by_length",
    "tiny_clip_bundle", "tiny_clip_config",
    "vision_fingerprint", "vit_b32_config",
]
