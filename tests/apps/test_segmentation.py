from __future__ import annotations

import pytest
import torch
from PIL import Image

from negationclip.apps import segmentation as S
from negationclip.apps.diffusion import TextEncoder, text_encoder_from_clip_model
from negationclip.utils import NegationClipError

from .conftest import hf_tokenizer, tiny_clip_model, tiny_text_model


def _logits(model, processor, text="a dog with no collar"):
    img = Image.new("RGB", (40, 30), (120, 30, 200))
    with torch.no_grad():
        inp = processor(text=[text], images=[img], padding=True, return_tensors="pt")
        return model(**inp).logits


def test_swap_copies_text_tower_and_keeps_everything_else(clip_and_clipseg):
    negclip_dir, bundle, clipseg_dir = clip_and_clipseg
    model, proc = S.load_clipseg(clipseg_dir)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    logits_before = _logits(model, proc)
    model2, proc2, rep = S.load_negation_clipseg(clipseg_dir, negclip_dir)
    assert rep.vision.startswith("identical")
    assert rep.tokenizer.startswith("kept")
    after = model2.state_dict()
    src = bundle.model.state_dict()
    n_text = 0
    for k, v in after.items():
        if k.startswith("clip.text_model."):
            assert torch.equal(v, src["text_model." + k[len("clip.text_model."):]]), k
            n_text += 1
        elif k.startswith("clip.text_projection."):
            assert torch.equal(v, src[k[len("clip."):]])
        else:
            assert torch.equal(v, before[k]), f"{k} changed"
    assert n_text > 10 and rep.copied == n_text + 1
    assert not torch.allclose(_logits(model2, proc2), logits_before)
    # CLIPSeg's conditioning is now exactly NegationCLIP's projected text feature
    from negationclip.models import encode_text

    tok = proc2.tokenizer(["a dog with no collar"], return_tensors="pt")
    with torch.no_grad():
        cond = model2.get_conditional_embeddings(batch_size=1, input_ids=tok.input_ids,
                                                 attention_mask=tok.attention_mask)
    ours = encode_text(bundle, ["a dog with no collar"], normalize=False)
    torch.testing.assert_close(cond.float(), ours, atol=1e-5, rtol=1e-4)


def test_width_mismatch_refused_and_model_untouched(clip_and_clipseg):
    _, _, clipseg_dir = clip_and_clipseg
    model, proc = S.load_clipseg(clipseg_dir)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    wide = text_encoder_from_clip_model(tiny_clip_model(32, projection_dim=16), hf_tokenizer(),
                                        with_projection=True, provenance={"source": "b32.pth"})
    with pytest.raises(NegationClipError, match=r"b32.pth: text encoder hidden_size=32 but CLIPSeg's is 64"):
        S.swap_clipseg_text_encoder(model, wide, proc)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_shape_mismatch_is_listed():
    from negationclip.models import tiny_clip_config

    from .conftest import tiny_clipseg_from_clip

    model = tiny_clipseg_from_clip(tiny_clip_config(embed_dim=32))
    other = tiny_clip_config(embed_dim=16)
    from transformers import CLIPModel

    enc = text_encoder_from_clip_model(CLIPModel(other).eval(), hf_tokenizer(), with_projection=True,
                                       provenance={"source": "x"})
    with pytest.raises(NegationClipError, match=r"shape mismatch: clip.text_projection.weight \(16, 64\) vs CLIPSeg \(32, 64\)"):
        S.swap_clipseg_text_encoder(model, enc)


def test_heads_and_projection_checked():
    from negationclip.models import tiny_clip_config

    from .conftest import tiny_clipseg_from_clip

    model = tiny_clipseg_from_clip(tiny_clip_config())
    cfg = tiny_clip_config()
    cfg.text_config.num_attention_heads = 2  # same shapes, different attention
    from transformers import CLIPModel

    enc = text_encoder_from_clip_model(CLIPModel(cfg).eval(), hf_tokenizer(), with_projection=True,
                                       provenance={"source": "y"})
    with pytest.raises(NegationClipError, match="num_attention_heads=2"):
        S.swap_clipseg_text_encoder(model, enc)
    no_proj = TextEncoder(tiny_text_model(64), hf_tokenizer(), {"source": "te-folder"})
    with pytest.raises(NegationClipError, match="te-folder: .*no text_projection"):
        S.swap_clipseg_text_encoder(model, no_proj)


def test_segment_and_overlay(clip_and_clipseg, tmp_path):
    _, _, clipseg_dir = clip_and_clipseg
    model, proc = S.load_clipseg(clipseg_dir)
    img = Image.new("RGB", (50, 30), (0, 0, 0))
    long = " ".join(["a cat with no tail"] * 40)  # over 77 tokens: truncated, not an error
    probs = S.segment_probs(model, proc, [img, img, img], ["a cat", "a cat with no tail", long])[:2]
    assert [tuple(p.shape) for p in probs] == [(30, 50), (30, 50)]
    assert all(((p >= 0) & (p <= 1)).all() for p in probs)
    mask = S.segment(model, proc, img, "a cat")
    assert mask.dtype == torch.bool and torch.equal(mask, probs[0] >= 0.5)
    m = torch.zeros(30, 50, dtype=torch.bool)
    m[10:20, 5:15] = True
    ov = S.overlay(img, m, color=(200, 0, 0), alpha=0.5)
    assert ov.getpixel((6, 12)) == (100, 0, 0) and ov.getpixel((40, 25)) == (0, 0, 0)
    p = S.save_png(ov, tmp_path / "o.png")
    assert Image.open(p).size == (50, 30)
    with pytest.raises(NegationClipError, match="does not match"):
        S.overlay(img, torch.zeros(5, 5, dtype=torch.bool))


def test_load_errors(tmp_path):
    with pytest.raises(NegationClipError, match="no config.json"):
        S.load_clipseg(tmp_path)
    with pytest.raises(NegationClipError, match="CIDAS/not-cached"):
        S.load_clipseg("CIDAS/not-cached")


def test_exported_text_encoder_folder_into_clipseg(clip_and_clipseg, tmp_path):
    """export_text_encoder(with_projection=True) -> NegationCLIPSeg gives the same weights as
    swapping from the full checkpoint; a folder without projection is refused."""
    from negationclip.models import export_text_encoder

    negclip_dir, bundle, clipseg_dir = clip_and_clipseg
    export_text_encoder(bundle, tmp_path / "te-proj", with_projection=True)
    a, _, rep = S.load_negation_clipseg(clipseg_dir, tmp_path / "te-proj")
    b, _, _ = S.load_negation_clipseg(clipseg_dir, negclip_dir)
    assert rep.vision.startswith("not checked")
    sa, sb = a.state_dict(), b.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    export_text_encoder(bundle, tmp_path / "te-plain")
    with pytest.raises(NegationClipError, match=r"te-plain: the text encoder lacks .*text_projection"):
        S.load_negation_clipseg(clipseg_dir, tmp_path / "te-plain")


def test_batched_equals_one_at_a_time(clip_and_clipseg):
    """Padding in a batch of expressions of different lengths changes nothing."""
    _, _, clipseg_dir = clip_and_clipseg
    model, proc = S.load_clipseg(clipseg_dir)
    imgs = [Image.new("RGB", (30, 20), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    texts = ["a dog", "the dog on the left that is not wearing a red collar", "no cat"]
    batched = S.segment_probs(model, proc, imgs, texts)
    for im, t, b in zip(imgs, texts, batched):
        torch.testing.assert_close(S.segment_probs(model, proc, [im], [t])[0], b, atol=1e-5, rtol=1e-4)
