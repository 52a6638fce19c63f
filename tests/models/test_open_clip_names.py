"""open_clip names resolve from a (fake) local Hugging Face cache and match the reference."""

from __future__ import annotations

import json

import pytest
import torch

from negationclip.models import encode_images, encode_text, load_clip
from negationclip.utils import NegationClipError
from tests.models.test_activation import _with_act
from tests.models.test_convert import TEXTS, fake_images, make_openai_model, reference_embeddings


def _cached_repo(cache, repo, sd, model_cfg, *, safetensors=False):
    """``models--ORG--REPO/snapshots/<rev>/`` + ``refs/main``, as huggingface_hub lays it out."""
    d = cache / ("models--" + repo.replace("/", "--"))
    snap = d / "snapshots" / "0123abcd"
    snap.mkdir(parents=True)
    (d / "refs").mkdir()
    (d / "refs" / "main").write_text("0123abcd")
    if safetensors:
        from safetensors.torch import save_file
        save_file({k: v.contiguous() for k, v in sd.items()}, str(snap / "open_clip_model.safetensors"))
    else:
        torch.save(sd, snap / "open_clip_pytorch_model.bin")
    (snap / "open_clip_config.json").write_text(json.dumps({
        "model_cfg": model_cfg, "preprocess_cfg": {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}}))
    return snap


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return tmp_path / "hub"


def test_openai_tag_loads_with_quick_gelu(cache, capsys):
    m = make_openai_model(seed=5)
    # the config does not say quick_gelu: the "openai" tag does (open_clip forces it)
    _cached_repo(cache, "timm/vit_base_patch32_clip_224.openai", m.state_dict(), {"embed_dim": 64})
    b = load_clip("ViT-B-32/openai")
    assert b.provenance["act"] == "quick_gelu" and "openai" in b.provenance["act_origin"]
    assert "note:" not in capsys.readouterr().err
    ref_t, ref_i = reference_embeddings(m, b, TEXTS, fake_images())
    assert torch.allclose(encode_text(b, TEXTS), ref_t, atol=1e-5)
    assert torch.allclose(encode_images(b, fake_images()), ref_i, atol=1e-5)
    assert b.transform.mean == (0.5, 0.5, 0.5)  # preprocess_cfg read


@pytest.mark.parametrize("quick_gelu", [False, True])
def test_hf_hub_name_reads_the_activation_from_the_config(cache, quick_gelu):
    m = make_openai_model(seed=6)
    _cached_repo(cache, "laion/CLIP-ViT-B-32-laion2B-s34B-b79K", m.state_dict(),
                 {"embed_dim": 64, "quick_gelu": quick_gelu}, safetensors=True)
    for name in ("hf-hub:laion/CLIP-ViT-B-32-laion2B-s34B-b79K", "ViT-B-32/laion2b_s34b_b79k"):
        b = load_clip(name)
        act = "quick_gelu" if quick_gelu else "gelu"
        assert b.provenance["act"] == act
        ref = _with_act(make_openai_model(seed=6), act)
        ref_t, ref_i = reference_embeddings(ref, b, TEXTS, fake_images())
        assert torch.allclose(encode_text(b, TEXTS), ref_t, atol=1e-5)
        assert torch.allclose(encode_images(b, fake_images()), ref_i, atol=1e-5)


def test_uncached_unknown_and_unsupported_timm_towers_are_clear_errors(cache):
    m = make_openai_model(seed=5)
    _cached_repo(cache, "laion/CLIP-ViT-B-32-laion2B-s34B-b79K", m.state_dict(), {"embed_dim": 64})
    with pytest.raises(NegationClipError, match=r"not in the local Hugging Face cache.*"
                                                r"hf-hub:laion/CLIP-ViT-B-32-laion2B-s34B-b79K"):
        load_clip("ViT-B-16/openai")
    with pytest.raises(NegationClipError, match="unknown open_clip name.*ViT-B-32/openai"):
        load_clip("ViT-B-32/no_such_tag")
    # open_clip SigLIP (timm_pool "map") converts (tests/models/test_open_clip_siglip.py); a timm
    # tower without the MAP head is neither that nor CLIP
    _cached_repo(cache, "timm/ViT-B-16-SigLIP", m.state_dict(),
                 {"embed_dim": 64, "init_logit_bias": -10, "custom_text": True,
                  "vision_cfg": {"timm_model_name": "vit_base_patch16_siglip_224",
                                 "timm_pool": "avg"}})
    with pytest.raises(NegationClipError, match="timm vision tower.*not supported.*open_clip SigLIP"):
        load_clip("ViT-B-16-SigLIP/webli")
