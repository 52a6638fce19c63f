import torch
from PIL import Image

from negationclip.models import (ImageEmbeddingCache, encode_images, encode_text, export_text_encoder,
                                 open_image, text_features, text_features_by_length, tiny_clip_bundle)
from negationclip.utils import NegationClipError
import pytest

CAPTIONS = ["a cat", "a street with no cars and no people on a rainy evening", "two dogs",
            "a kitchen without a fridge", "a man"]


def test_dynamic_padding_equals_padding_to_77():
    b = tiny_clip_bundle(seed=1)
    dyn = encode_text(b, CAPTIONS, batch_size=2)
    full = encode_text(b, CAPTIONS, batch_size=2, padding="max_length")
    assert torch.allclose(dyn, full, atol=1e-5)
    one_by_one = torch.cat([encode_text(b, [c]) for c in CAPTIONS])
    assert torch.allclose(dyn, one_by_one, atol=1e-5)


def test_length_groups_give_the_same_features_and_gradients():
    """Training's --text-buckets: rows in length groups, each padded to its own longest, give
    the embeddings and gradients of one batch padded to 77 (the reference: clip.tokenize's width)."""
    b = tiny_clip_bundle(seed=2)
    texts = CAPTIONS * 3 + ["no", "a photo of a very long and winding road with no cars at all"]
    full = b.tokenizer(texts, padding="max_length")
    dyn = b.tokenizer(texts)

    def run(fn):
        b.model.zero_grad(set_to_none=True)
        f = fn()
        (f * torch.linspace(-1, 1, f.numel()).view_as(f)).sum().backward()
        g = b.model.text_model.encoder.layers[0].self_attn.q_proj.weight.grad.clone()
        return f.detach(), g

    ref, ref_g = run(lambda: text_features(b.model, full.input_ids, full.attention_mask))
    fwd = lambda ids, mask: text_features(b.model, ids, mask)  # noqa: E731
    widths = []
    spy = lambda ids, mask: (widths.append(ids.shape[1]), fwd(ids, mask))[1]  # noqa: E731
    for k in (1, 3, 4):
        got, got_g = run(lambda: text_features_by_length(spy, dyn.input_ids, dyn.attention_mask, k))
        assert torch.allclose(got, ref, atol=1e-5), k
        assert torch.allclose(got_g, ref_g, atol=1e-5), k
    assert widths[0] == dyn.input_ids.shape[1] and len(widths) == 1 + 3 + 4
    assert min(widths) < max(widths)  # short groups really were cut shorter


def _images(tmp_path, n=5):
    paths = []
    for i in range(n):
        p = tmp_path / f"im{i}.png"
        Image.new("RGB", (40 + i, 36), (50 * i % 255, 100, 200)).save(p)
        paths.append(p)
    return paths


def test_bad_images_are_named(tmp_path):
    trunc = tmp_path / "trunc.png"
    Image.new("RGB", (64, 64), "red").save(trunc)
    trunc.write_bytes(trunc.read_bytes()[:60])
    for bad in (tmp_path / "missing.png", trunc):
        with pytest.raises(NegationClipError, match=bad.name):
            open_image(bad)


def test_cache_reuses_and_counts_failures(tmp_path):
    b = tiny_clip_bundle(seed=2)
    paths = [str(p) for p in _images(tmp_path)] + [str(tmp_path / "missing.png")]
    cache = ImageEmbeddingCache(tmp_path / "cache", shard_size=2)
    r1 = cache.embed(b, paths, open_image, batch_size=2)
    assert r1.computed == 5 and list(r1.failed) == [paths[-1]] and r1.ok.tolist() == [True] * 5 + [False]
    direct = encode_images(b, paths[:5])
    assert torch.allclose(r1.embeddings[:5], direct, atol=1e-6)
    assert torch.isnan(r1.embeddings[5]).all()
    # a new cache object over the same folder reads from disk and computes nothing
    r2 = ImageEmbeddingCache(tmp_path / "cache").embed(b, paths[:5], open_image)
    assert r2.computed == 0 and torch.allclose(r2.embeddings, r1.embeddings[:5])
    # changing the vision tower changes the fingerprint: nothing stale is read
    with torch.no_grad():
        b.model.visual_projection.weight.mul_(2)
    r3 = ImageEmbeddingCache(tmp_path / "cache").embed(b, paths[:5], open_image)
    assert r3.computed == 5


def test_export_text_encoder_matches(tmp_path):
    from transformers import CLIPTextModel

    b = tiny_clip_bundle(seed=3)
    export_text_encoder(b, tmp_path / "te")
    te = CLIPTextModel.from_pretrained(tmp_path / "te").eval()
    tok = b.tokenizer(CAPTIONS)
    with torch.no_grad():
        ours = b.model.text_model(input_ids=tok.input_ids, attention_mask=tok.attention_mask).last_hidden_state
        theirs = te(input_ids=tok.input_ids, attention_mask=tok.attention_mask).last_hidden_state
    assert torch.equal(ours, theirs)
    from safetensors.torch import load_file
    saved = load_file(tmp_path / "te" / "model.safetensors")
    assert "text_model.final_layer_norm.weight" in saved  # Stable Diffusion's key layout
    assert (tmp_path / "te" / "tokenizer.json").exists() or (tmp_path / "te" / "vocab.json").exists()
