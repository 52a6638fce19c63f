"""The converter against OpenAI's own model code (tests/_reference, loaded by path)."""

import subprocess
import sys

import pytest
import torch
from PIL import Image

from negationclip.models import ClipTokenizer, encode_images, encode_text, export_openai, load_clip, save
from negationclip.models.convert import (hf_to_openai, infer_openai_config, openai_to_hf,
                                         read_checkpoint)
from negationclip.utils import NegationClipError
from tests.conftest import load_reference

TEXTS = ["a photo of a cat", "a street with no cars", "a woman not wearing a hat riding a horse",
         "two dogs"]


def make_openai_model(seed=0, width=128, vision_width=128, layers=2, image=32, patch=8, embed=64):
    ref = load_reference("openai_clip_model")
    torch.manual_seed(seed)
    m = ref.CLIP(embed_dim=embed, image_resolution=image, vision_layers=layers,
                 vision_width=vision_width, vision_patch_size=patch, context_length=77,
                 vocab_size=49408, transformer_width=width, transformer_heads=width // 64,
                 transformer_layers=layers).float().eval()
    # OpenAI initialises biases and layer norms to constants: randomise them so the test
    # would catch a swapped or dropped bias.
    with torch.no_grad():
        for name, p in m.named_parameters():
            if p.ndim == 1 and name != "class_embedding":
                p.add_(torch.randn_like(p) * 0.05)
        m.logit_scale.fill_(2.3)
    return m


def fake_images(n=3, size=(45, 37)):
    g = torch.Generator().manual_seed(1)
    return [Image.fromarray((torch.rand(size[1], size[0], 3, generator=g) * 255).byte().numpy())
            for _ in range(n)]


def reference_embeddings(model, bundle, texts, images):
    tok = ClipTokenizer()
    with torch.no_grad():
        t = model.encode_text(tok.tokenize_openai(texts))
        i = model.encode_image(bundle.transform(images))
    return torch.nn.functional.normalize(t, dim=-1), torch.nn.functional.normalize(i, dim=-1)


def test_infer_config_from_shapes():
    sd = make_openai_model(width=128, vision_width=192, layers=3, image=48, patch=16).state_dict()
    cfg = infer_openai_config(sd)
    assert cfg.text_config.hidden_size == 128 and cfg.text_config.num_attention_heads == 2
    assert cfg.text_config.num_hidden_layers == 3
    assert cfg.vision_config.hidden_size == 192 and cfg.vision_config.num_attention_heads == 3
    assert cfg.vision_config.patch_size == 16 and cfg.vision_config.image_size == 48
    assert cfg.projection_dim == 64 and cfg.text_config.max_position_embeddings == 77


def test_embeddings_match_openai_reference(tmp_path):
    m = make_openai_model()
    path = tmp_path / "tiny.pth"
    torch.save(m.state_dict(), path)
    bundle = load_clip(path)
    images = fake_images()
    ref_t, ref_i = reference_embeddings(m, bundle, TEXTS, images)
    ours_t, ours_i = encode_text(bundle, TEXTS), encode_images(bundle, images)
    assert torch.allclose(ours_t, ref_t, atol=1e-5)
    assert torch.allclose(ours_i, ref_i, atol=1e-5)
    assert torch.allclose(bundle.model.logit_scale.detach(), m.logit_scale.detach())


def test_roundtrip_openai_hf_openai_is_identical(tmp_path):
    sd = make_openai_model().state_dict()
    model = openai_to_hf(sd)
    back = hf_to_openai(model)
    expected = {k: v for k, v in sd.items() if k != "attn_mask"}
    assert set(back) == set(expected)
    for k in expected:
        assert torch.equal(back[k], expected[k]), k


def test_cli_convert_roundtrip(tmp_path):
    m = make_openai_model(seed=3)
    src = tmp_path / "ckpt.pth"
    torch.save(m.state_dict(), src)
    hf_dir, back = tmp_path / "hf", tmp_path / "back.pt"
    py = [sys.executable, "-m", "negationclip.cli"]
    r = subprocess.run(py + ["convert", "--input", str(src), "--output", str(hf_dir)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert (hf_dir / "model.safetensors").exists() and (hf_dir / "config.json").exists()
    r = subprocess.run(py + ["convert", "--input", str(hf_dir), "--output", str(back), "--to", "openai"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    a, b = torch.load(src, weights_only=True), torch.load(back, weights_only=True)
    for k in b:
        assert torch.equal(a[k], b[k]), k
    bundle = load_clip(hf_dir)
    images = fake_images(2)
    ref_t, ref_i = reference_embeddings(m, bundle, TEXTS, images)
    assert torch.allclose(encode_text(bundle, TEXTS), ref_t, atol=1e-5)
    assert torch.allclose(encode_images(bundle, images), ref_i, atol=1e-5)


def test_torchscript_archive_read_without_executing(tmp_path):
    m = make_openai_model(seed=5)
    scripted = torch.jit.trace(m.visual, torch.randn(1, 3, 32, 32))
    path = tmp_path / "vis.pt"
    torch.jit.save(scripted, path)
    sd = read_checkpoint(path)
    expected = m.visual.state_dict()
    assert set(sd) == set(expected)
    for k in expected:
        assert torch.equal(sd[k], expected[k]), k


def test_save_and_reload_hf_folder(tmp_path):
    bundle = load_clip(_save_tiny(tmp_path))
    save(bundle, tmp_path / "hf")
    again = load_clip(tmp_path / "hf")
    assert torch.allclose(encode_text(bundle, TEXTS), encode_text(again, TEXTS))
    export_openai(again, tmp_path / "x.safetensors")
    third = load_clip(tmp_path / "x.safetensors")
    assert torch.allclose(encode_text(bundle, TEXTS), encode_text(third, TEXTS), atol=1e-6)


def _save_tiny(tmp_path):
    p = tmp_path / "t.pth"
    torch.save(make_openai_model(seed=7).state_dict(), p)
    return p


@pytest.mark.parametrize("case", ["not_ckpt", "missing_key", "extra_key", "bad_shape", "no_file",
                                  "hub_offline", "code_pickle"])
def test_bad_checkpoints_give_clear_errors(tmp_path, case, monkeypatch):
    sd = make_openai_model().state_dict()
    p = tmp_path / "bad.pth"
    if case == "not_ckpt":
        p.write_text("hello, I am not a checkpoint")
    elif case == "missing_key":
        sd.pop("transformer.resblocks.1.mlp.c_fc.bias")
        torch.save(sd, p)
    elif case == "extra_key":
        sd["surprise.weight"] = torch.zeros(3)
        torch.save(sd, p)
    elif case == "bad_shape":
        sd["visual.positional_embedding"] = torch.zeros(18, 128)
        torch.save(sd, p)
    elif case == "no_file":
        p = tmp_path / "nope" / "missing.pt"
    elif case == "hub_offline":
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
        p = "someone/clip-that-is-not-cached"
    elif case == "code_pickle":
        import os
        import pickle

        class Evil:
            def __reduce__(self):
                return (os.system, (f"touch {tmp_path / 'pwned'}",))
        p.write_bytes(pickle.dumps({"a": Evil()}))
    with pytest.raises(NegationClipError) as e:
        load_clip(p)
    assert str(p) in str(e.value)
    assert not (tmp_path / "pwned").exists()


def test_cli_error_exit_code_and_no_partial_output(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x00garbage")
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-m", "negationclip.cli", "convert", "--input", str(bad),
                        "--output", str(out)], capture_output=True, text=True)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr and str(bad) in r.stderr
    assert not out.exists() and not any(p.name.startswith(".out") for p in tmp_path.iterdir())


def test_uncached_hub_id_fails_fast_without_network(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens on the discard port
    # the message comes from the one-connect probe, not from huggingface_hub's retry loop
    with pytest.raises(NegationClipError, match="unreachable"):
        load_clip("someone/clip-that-is-not-cached")
