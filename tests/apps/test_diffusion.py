from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from negationclip.apps import diffusion as D
from negationclip.utils import NegationClipError, read_jsonl

from .conftest import hf_tokenizer, tiny_clip_model, tiny_text_model


def _embeds(pipe, prompt="a street with no cars"):
    with torch.no_grad():
        pos, _ = pipe.encode_prompt(prompt, "cpu", 1, False)
    return pos


def _state(module):
    return {k: v.clone() for k, v in module.state_dict().items()}


def test_swap_changes_text_embeddings_and_nothing_else(sd_folder, text_encoder_folder):
    pipe = D.load_pipeline(sd_folder)
    before = {name: _state(getattr(pipe, name)) for name in ("unet", "vae")}
    emb_before = _embeds(pipe)
    enc = D.load_text_encoder(text_encoder_folder)
    report = D.swap_text_encoder(pipe, enc)
    assert report.tokenizer.startswith("kept")
    assert pipe.text_encoder is enc.model
    emb_after = _embeds(pipe)
    assert emb_after.shape == emb_before.shape
    assert not torch.allclose(emb_after, emb_before)
    # the pipeline now conditions on exactly what the new encoder outputs
    ids = pipe.tokenizer(["a street with no cars"], padding="max_length", max_length=77,
                         return_tensors="pt").input_ids
    with torch.no_grad():
        direct = enc.model(ids)[0]
    torch.testing.assert_close(emb_after, direct)
    for name, sd in before.items():
        now = getattr(pipe, name).state_dict()
        assert sd.keys() == now.keys()
        for k in sd:
            assert torch.equal(sd[k], now[k]), f"{name}.{k} changed"


def test_swap_from_clip_model_keeps_weights(sd_folder):
    pipe = D.load_pipeline(sd_folder)
    clip = tiny_clip_model(32, seed=3)
    enc = D.text_encoder_from_clip_model(clip, hf_tokenizer(), provenance={"source": "tiny"})
    D.swap_text_encoder(pipe, enc)
    src = D.text_tower(clip.text_model).state_dict()
    dst = D.text_tower(pipe.text_encoder).state_dict()
    assert src.keys() == dst.keys()
    assert all(torch.equal(src[k], dst[k]) for k in src)


def test_width_mismatch_is_refused_clearly(sd_folder):
    pipe = D.load_pipeline(sd_folder)
    enc = D.TextEncoder(tiny_text_model(48), hf_tokenizer(), {"source": "negclip-b32.pth"})
    old = pipe.text_encoder
    with pytest.raises(NegationClipError, match=r"negclip-b32.pth: .*width 48.*does not fit.*width 32"):
        D.swap_text_encoder(pipe, enc)
    assert pipe.text_encoder is old


def test_real_sizes_message():
    # the message a user sees for a B/32 encoder in SD 1.5, without building the real models
    assert "Stable Diffusion 1.x" in D.describe_width(768)
    assert "ViT-B" in D.describe_width(512)


def test_deeper_encoder_is_truncated_like_sd2(sd_folder):
    pipe = D.load_pipeline(sd_folder)
    deep = tiny_text_model(32, seed=5, layers=3)
    rep = D.swap_text_encoder(pipe, D.TextEncoder(deep, hf_tokenizer(), {"source": "x"}))
    assert (rep.layers_source, rep.layers_used) == (3, 2)
    assert pipe.text_encoder.config.num_hidden_layers == 2
    torch.testing.assert_close(D.text_tower(pipe.text_encoder).encoder.layers[1].mlp.fc1.weight,
                               D.text_tower(deep).encoder.layers[1].mlp.fc1.weight)
    shallow = tiny_text_model(32, seed=5, layers=1)
    with pytest.raises(NegationClipError, match="1 layers"):
        D.swap_text_encoder(pipe, D.TextEncoder(shallow, hf_tokenizer(), {"source": "y"}))


def test_other_vocabulary_replaces_tokenizer(sd_folder, tmp_path):
    from transformers import CLIPTokenizer

    pipe = D.load_pipeline(sd_folder)
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1, "a</w>": 2, "cat</w>": 3}
    d = tmp_path
    (d / "v.json").write_text(json.dumps(vocab))
    (d / "m.txt").write_text("#version: 0.2\n")
    tok = CLIPTokenizer(str(d / "v.json"), str(d / "m.txt"))
    rep = D.swap_text_encoder(pipe, D.TextEncoder(tiny_text_model(32), tok, {"source": "z"}))
    assert rep.tokenizer == "replaced" and pipe.tokenizer is tok
    assert tok.model_max_length == 77


def test_missing_folder_and_offline_hub_id_are_clear(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(NegationClipError, match="model_index.json"):
        D.load_pipeline(tmp_path)
    with pytest.raises(NegationClipError, match="not a diffusers pipeline folder"):
        D.load_pipeline(tmp_path / "nope" / "deeper")
    with pytest.raises(NegationClipError, match="no-such-org/no-such-model"):
        D.load_pipeline("no-such-org/no-such-model")


def test_read_prompts(tmp_path):
    t = tmp_path / "p.txt"
    t.write_text("# comment\na cat\n\na dog with no collar\n")
    assert [p.prompt for p in D.read_prompts(t)] == ["a cat", "a dog with no collar"]
    j = tmp_path / "p.jsonl"
    j.write_text('{"id": "a", "prompt": "a street with no cars", "present": "street", "absent": "car"}\n'
                 '{"prompt": 3}\n')
    with pytest.raises(NegationClipError, match=r"p.jsonl:2: .*\"prompt\""):
        D.read_prompts(j)
    j.write_text('{"id": "a", "prompt": "x"}\n{"id": "a", "prompt": "y"}\n')
    with pytest.raises(NegationClipError, match="duplicate"):
        D.read_prompts(j)


def test_generate_end_to_end_deterministic_and_resumable(sd_folder, text_encoder_folder, tmp_path):
    pipe = D.load_pipeline(sd_folder)
    prompts = [D.Prompt("a", "a street with no cars", "street", "car"),
               D.Prompt("b", "a kitchen with no people", "kitchen", "person")]
    cfg = D.GenerationConfig(seeds=(0, 1), steps=2, height=32, width=32, batch_size=3)
    recs = D.generate(pipe, prompts, tmp_path / "orig", cfg)
    assert [(r["id"], r["seed"]) for r in recs] == [("a", 0), ("a", 1), ("b", 0), ("b", 1)]
    imgs = [Image.open(tmp_path / "orig" / r["file"]) for r in recs]
    assert all(im.size == (32, 32) for im in imgs)
    assert recs[0]["absent"] == "car" and recs[0]["present"] == "street"
    # same (prompt, seed) gives the same image whatever the batch: regenerate one alone
    one = D.generate(pipe, prompts[1:], tmp_path / "alone",
                     D.GenerationConfig(seeds=(1,), steps=2, height=32, width=32, batch_size=1))
    a = Image.open(tmp_path / "alone" / one[0]["file"]).tobytes()
    assert a == imgs[3].tobytes()
    # resume: drop one image and its record's file -> only that one is regenerated
    (tmp_path / "orig" / recs[2]["file"]).unlink()
    again = D.generate(pipe, prompts, tmp_path / "orig", cfg)
    assert len(again) == 4 and (tmp_path / "orig" / recs[2]["file"]).is_file()
    assert Image.open(tmp_path / "orig" / recs[2]["file"]).tobytes() == imgs[2].tobytes()
    assert len(read_jsonl(tmp_path / "orig" / D.MANIFEST)) == 5  # 4 + the regenerated one
    # an edited prompt (same id) is regenerated; the others are kept
    edited = [prompts[0], D.Prompt("b", "a kitchen with no chairs", "kitchen", "chair")]
    D.generate(pipe, edited, tmp_path / "orig", cfg)
    recs_e = read_jsonl(tmp_path / "orig" / D.MANIFEST)
    assert len(recs_e) == 7 and [r["prompt"] for r in recs_e[-2:]] == ["a kitchen with no chairs"] * 2
    assert set(D.finished_images(tmp_path / "orig", edited)) == {("a", 0), ("a", 1), ("b", 0), ("b", 1)}
    assert set(D.finished_images(tmp_path / "orig", prompts)) == {("a", 0), ("a", 1)}

    D.swap_text_encoder(pipe, D.load_text_encoder(text_encoder_folder))
    recs2 = D.generate(pipe, prompts, tmp_path / "neg",
                       D.GenerationConfig(seeds=(0,), steps=2, height=32, width=32, batch_size=2))
    assert Image.open(tmp_path / "neg" / recs2[0]["file"]).tobytes() != imgs[0].tobytes()
    sheet = D.contact_sheet({"original": tmp_path / "orig", "negationclip": tmp_path / "neg"},
                            tmp_path / "sheet.png", thumb=32)
    im = Image.open(sheet)
    assert im.size[0] == 4 * (32 + 4) + 4   # (original, negationclip) x seeds (0, 1); one tile missing
    # the thumbnail of run 2, seed 0, prompt a is the generated image
    x, y = 4 + 2 * 36, 18
    assert im.crop((x, y, x + 32, y + 32)).tobytes() == \
        Image.open(tmp_path / "neg" / recs2[0]["file"]).convert("RGB").tobytes()


def test_text_encoder_folder_layouts(tmp_path):
    """A text-encoder folder in either key layout (transformers 5, or Stable Diffusion's
    ``text_model.*``) loads the same weights; export_text_encoder's folder loads too."""
    from safetensors.torch import load_file, save_file

    from negationclip.models import export_text_encoder, tiny_clip_bundle

    m = tiny_text_model(32, seed=9)
    m.save_pretrained(str(tmp_path / "new"))
    sd = load_file(str(tmp_path / "new" / "model.safetensors"))
    (tmp_path / "old").mkdir()
    m.config.save_pretrained(str(tmp_path / "old"))
    save_file({("text_model." + k if not k.startswith("text_model.") else k): v.contiguous()
               for k, v in sd.items()}, str(tmp_path / "old" / "model.safetensors"), metadata={"format": "pt"})
    for name in ("new", "old"):
        enc = D.load_text_encoder(tmp_path / name)
        assert all(torch.equal(a, b) for a, b in zip(D.text_tower(enc.model).state_dict().values(),
                                                    D.text_tower(m).state_dict().values()))
        assert enc.tokenizer.get_vocab() == hf_tokenizer().get_vocab()  # no tokenizer: CLIP's own
    bundle = tiny_clip_bundle(seed=2)
    export_text_encoder(bundle, tmp_path / "exp")
    enc = D.load_text_encoder(tmp_path / "exp")
    ref = D.text_tower(bundle.model.text_model).state_dict()
    got = D.text_tower(enc.model).state_dict()
    assert ref.keys() == got.keys() and all(torch.equal(ref[k], got[k]) for k in ref)


def test_b32_into_sd15_shaped_pipeline_message():
    """The message a user gets for a ViT-B/32 NegationCLIP in an SD 1.x-shaped pipeline."""
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    small = dict(num_hidden_layers=1, vocab_size=1000, max_position_embeddings=77)
    unet = UNet2DConditionModel(block_out_channels=(8, 16), layers_per_block=1, sample_size=8,
                                down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
                                cross_attention_dim=768, norm_num_groups=8, attention_head_dim=4)
    vae = AutoencoderKL(block_out_channels=(8,), down_block_types=("DownEncoderBlock2D",),
                        up_block_types=("UpDecoderBlock2D",), latent_channels=4, norm_num_groups=8)
    sd15_te = CLIPTextModel(CLIPTextConfig(hidden_size=768, intermediate_size=64, num_attention_heads=12, **small))
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=sd15_te, tokenizer=hf_tokenizer(), unet=unet,
                                   scheduler=DDIMScheduler(), safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)
    b32 = CLIPTextModel(CLIPTextConfig(hidden_size=512, intermediate_size=64, num_attention_heads=8, **small))
    with pytest.raises(NegationClipError) as e:
        D.swap_text_encoder(pipe, D.TextEncoder(b32, hf_tokenizer(), {"source": "negclip-B32.pth"}))
    assert str(e.value).startswith(
        "negclip-B32.pth: a text encoder of width 512, a ViT-B CLIP's (B/32, B/16) does not fit "
        "StableDiffusionPipeline: its UNet cross-attends to width 768, CLIP ViT-L/14's, as in "
        "Stable Diffusion 1.x")
