"""Tiny random diffusers pipelines, CLIPs and CLIPSegs built from configs (no downloads)."""

from __future__ import annotations

import pytest
import torch

TEXT = dict(intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
            vocab_size=49408, max_position_embeddings=77)
VISION = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
              image_size=32, patch_size=8)


def hf_tokenizer():
    from negationclip.models.tokenizer import ClipTokenizer

    tok = ClipTokenizer().hf
    tok.model_max_length = 77
    return tok


def tiny_text_model(width: int = 32, seed: int = 0, layers: int = 2, projection: bool = False):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(seed)
    cfg = CLIPTextConfig(hidden_size=width, projection_dim=width,
                         **{**TEXT, "num_hidden_layers": layers})
    cls = CLIPTextModelWithProjection if projection else CLIPTextModel
    return cls(cfg).eval()


def tiny_clip_model(width: int = 32, seed: int = 1, layers: int = 2, projection_dim: int = 16):
    from transformers import CLIPConfig, CLIPModel

    torch.manual_seed(seed)
    cfg = CLIPConfig(text_config={**TEXT, "hidden_size": width, "num_hidden_layers": layers},
                     vision_config=VISION, projection_dim=projection_dim)
    return CLIPModel(cfg).eval()


def build_sd_pipeline(width: int = 32, seed: int = 0):
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(16, 32), layers_per_block=1, sample_size=16, in_channels=4,
        out_channels=4, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=width,
        norm_num_groups=8, attention_head_dim=4)
    vae = AutoencoderKL(block_out_channels=(8, 16), in_channels=3, out_channels=3,
                        down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=4,
                        norm_num_groups=8, sample_size=32)
    sched = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                          clip_sample=False, set_alpha_to_one=False, steps_offset=1)
    return StableDiffusionPipeline(vae=vae, text_encoder=tiny_text_model(width, seed=seed),
                                   tokenizer=hf_tokenizer(), unet=unet, scheduler=sched,
                                   safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)


@pytest.fixture(scope="session")
def sd_folder(tmp_path_factory):
    """A tiny Stable Diffusion pipeline saved as a diffusers folder (width 32)."""
    folder = tmp_path_factory.mktemp("sd") / "tiny-sd"
    build_sd_pipeline().save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="session")
def text_encoder_folder(tmp_path_factory):
    """A CLIPTextModel + tokenizer folder (what export_text_encoder writes), width 32."""
    folder = tmp_path_factory.mktemp("te") / "negclip-te"
    tiny_text_model(32, seed=7).save_pretrained(str(folder))
    hf_tokenizer().save_pretrained(str(folder))
    return folder


def tiny_clipseg_from_clip(clip_config, seed: int = 0, vision_from=None):
    """A tiny CLIPSeg whose CLIP part has ``clip_config``'s shapes (random weights, or the
    vision tower of ``vision_from``, a CLIPModel, as when CLIPSeg was built on that CLIP)."""
    from transformers import CLIPSegConfig, CLIPSegForImageSegmentation

    torch.manual_seed(seed)
    cfg = CLIPSegConfig(text_config=clip_config.text_config.to_dict(),
                        vision_config=clip_config.vision_config.to_dict(),
                        projection_dim=clip_config.projection_dim, extract_layers=[0, 1],
                        reduce_dim=16, decoder_num_attention_heads=2, decoder_intermediate_size=32)
    model = CLIPSegForImageSegmentation(cfg).eval()
    if vision_from is not None:
        model.clip.vision_model.load_state_dict(vision_from.vision_model.state_dict())
    return model


def tiny_clipseg_processor():
    from transformers import CLIPSegProcessor, ViTImageProcessor

    ip = ViTImageProcessor(size={"height": 32, "width": 32}, image_mean=[0.485, 0.456, 0.406],
                           image_std=[0.229, 0.224, 0.225])
    return CLIPSegProcessor(image_processor=ip, tokenizer=hf_tokenizer())


@pytest.fixture(scope="session")
def clip_and_clipseg(tmp_path_factory):
    """(folder of a tiny NegationCLIP saved by negationclip.models.save, its bundle,
    folder of a tiny CLIPSeg built on the same vision tower)."""
    from negationclip.models import save, tiny_clip_bundle

    root = tmp_path_factory.mktemp("seg")
    bundle = tiny_clip_bundle(seed=11)
    save(bundle, root / "negclip")
    base = tiny_clip_bundle(seed=12)  # "the original CLIP" CLIPSeg was trained on: same vision
    base.model.vision_model.load_state_dict(bundle.model.vision_model.state_dict())
    seg = tiny_clipseg_from_clip(base.model.config, vision_from=base.model)
    seg.clip.text_model.load_state_dict(base.model.text_model.state_dict())
    seg.save_pretrained(str(root / "clipseg"))
    tiny_clipseg_processor().save_pretrained(str(root / "clipseg"))
    return root / "negclip", bundle, root / "clipseg"
