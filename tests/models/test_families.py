"""SigLIP / SigLIP 2 through the whole loop, against the transformers reference forward."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from negationclip.models import encode_images, encode_text, load_clip, save
from negationclip.utils import NegationClipError
from tests.models._siglip_fixtures import make_siglip, make_siglip2

TEXTS = ["a photo of a cat", "there is no apple on the table", "A dog", "a bowl without fruit "
         "and two people with no umbrella next to a red car"]  # the last is truncated


@pytest.fixture(scope="module", params=["siglip", "siglip2"])
def folder(request, tmp_path_factory):
    torch.set_num_threads(1)
    make = make_siglip if request.param == "siglip" else make_siglip2
    return request.param, make(tmp_path_factory.mktemp(request.param) / "m")


def _images():
    ims = []
    for i, (w, h) in enumerate([(40, 30), (17, 53), (64, 64)]):
        im = Image.new("RGB", (w, h), (30 * i, 200 - 40 * i, 90))
        for x in range(0, w, 3 + i):
            im.putpixel((x, h // 2), (255, 255, 255))
        ims.append(im)
    return ims


def _reference(folder, texts, images):
    """The transformers reference: the folder's own tokenizer with padding="max_length" and
    its own image processor, then the model's get_*_features."""
    from transformers import AutoImageProcessor, AutoModel, AutoTokenizer

    model = AutoModel.from_pretrained(folder).eval()
    tok = AutoTokenizer.from_pretrained(folder)
    proc = AutoImageProcessor.from_pretrained(folder)
    with torch.no_grad():
        t = model.get_text_features(**tok(texts, padding="max_length", truncation=True,
                                          max_length=16, return_tensors="pt"))
        i = model.get_image_features(**proc(images=images, return_tensors="pt"))
    t = getattr(t, "pooler_output", t)
    i = getattr(i, "pooler_output", i)
    return model, F.normalize(t, dim=-1), F.normalize(i, dim=-1)


def test_load_encode_equals_transformers_forward(folder):
    name, path = folder
    b = load_clip(path)
    assert b.family.name == name and b.provenance["family"] == name
    ref_model, ref_t, ref_i = _reference(path, TEXTS, _images())
    got_t = encode_text(b, TEXTS, batch_size=2)  # batches sorted by length: padding must not matter
    assert torch.allclose(got_t, ref_t, atol=1e-5)
    assert torch.allclose(encode_images(b, _images(), batch_size=2), ref_i, atol=1e-5)
    # the score is the family's own: scale * cos + bias, ordered as the cosine
    sim = b.family.similarity(b.model, ref_i, ref_t)
    want = ref_model.logit_scale.exp() * ref_i @ ref_t.T + ref_model.logit_bias
    assert torch.allclose(sim, want.detach(), atol=1e-5)
    assert torch.equal(sim.argsort(dim=1), (ref_i @ ref_t.T).argsort(dim=1))


def test_dynamic_padding_would_change_siglip_embeddings(folder):
    """Why max_length is kept: the text tower pools the last position."""
    _, path = folder
    b = load_clip(path)
    full = b.tokenizer(["a photo of a cat"])
    assert full.input_ids.shape[1] == b.tokenizer.context_length
    n = int(full.attention_mask.sum()) if b.tokenizer.uses_mask else 6
    short_ids, short_mask = full.input_ids[:, :n], full.attention_mask[:, :n]
    with torch.no_grad():
        a = b.family.text_features(b.model, full.input_ids, full.attention_mask)
        c = b.family.text_features(b.model, short_ids, short_mask)
    assert not torch.allclose(a, c, atol=1e-4)


def test_save_load_identical(folder, tmp_path):
    name, path = folder
    b = load_clip(path)
    out = save(b, tmp_path / "saved")
    assert (out / "config.json").exists() and (out / "preprocessor_config.json").exists()
    assert json.loads((out / "config.json").read_text())["model_type"] == name
    b2 = load_clip(out)
    assert b2.family.name == name
    assert torch.equal(encode_text(b, TEXTS), encode_text(b2, TEXTS))
    assert torch.equal(encode_images(b, _images()), encode_images(b2, _images()))
    with pytest.raises(NegationClipError, match="OpenAI state-dict layout is CLIP's"):
        from negationclip.models import export_openai
        export_openai(b, tmp_path / "x.pt")


def test_vision_fingerprint_and_cache(folder, tmp_path):
    from negationclip.models import ImageEmbeddingCache, open_image, vision_fingerprint

    _, path = folder
    b = load_clip(path)
    fp = vision_fingerprint(b)
    with torch.no_grad():
        b.model.text_model.embeddings.token_embedding.weight.add_(1.0)
    assert vision_fingerprint(b) == fp  # the text tower is not part of it
    with torch.no_grad():
        next(b.model.vision_model.parameters()).add_(1.0)
    assert vision_fingerprint(b) != fp
    paths = []
    for i, im in enumerate(_images()):
        paths.append(str(tmp_path / f"{i}.png"))
        im.save(paths[-1])
    res = ImageEmbeddingCache(tmp_path / "cache").embed(b, paths, open_image)
    want = encode_images(b, [open_image(p) for p in paths])
    assert torch.allclose(F.normalize(res.embeddings, dim=-1), want, atol=1e-5)


def test_swaps_refuse_siglip_with_the_reason(folder):
    from negationclip.apps.diffusion import text_encoder_from_clip_model
    from negationclip.models import export_text_encoder

    name, path = folder
    b = load_clip(path)
    with pytest.raises(NegationClipError, match="cross-attend"):
        text_encoder_from_clip_model(b.model, b.tokenizer.hf, provenance={"source": str(path)})
    with pytest.raises(NegationClipError, match="cannot replace a CLIP text encoder"):
        export_text_encoder(b, path.parent / "te")


def test_act_option_is_refused_for_siglip(folder):
    _, path = folder
    with pytest.raises(NegationClipError, match="applies to CLIP"):
        load_clip(path, act="quick_gelu")


def test_valse_runs_on_siglip(folder, tmp_path):
    from negationclip.evaluate.valse import evaluate_valse
    from tests.evaluate.conftest import fabricate_image

    _, path = folder
    b = load_clip(path)
    recs = {f"k{i}": {"image_file": f"i{i}.jpg", "caption": "There are no dogs.",
                      "foil": "There are dogs."} for i in range(3)}
    p = tmp_path / "existence.json"
    p.write_text(json.dumps(recs))
    for i in range(3):
        fabricate_image(tmp_path / "im" / f"i{i}.jpg", 20, 20, str(i))
    res = evaluate_valse(b, p, tmp_path / "im")
    assert res["total"] == 3 and 0.0 <= res["accuracy"] <= 1.0


def test_siglip_pixels_are_a_square_resize_without_crop(tmp_path_factory):
    """SigLIP's rule, written here from big_vision's ``resize(224)|value_range(-1, 1)``: the
    whole image resized (bicubic, PIL) to the square, no centre crop, x/255 mapped to [-1, 1]."""
    import numpy as np

    b = load_clip(make_siglip(tmp_path_factory.mktemp("px") / "m"))
    for im in _images():
        want = np.asarray(im.convert("RGB").resize((32, 32), Image.Resampling.BICUBIC), dtype=np.float32)
        want = torch.from_numpy((want / 255.0 - 0.5) / 0.5).permute(2, 0, 1)
        assert torch.allclose(b.transform([im])[0], want, atol=1e-5)


def test_registry_is_complete_whatever_is_imported_first():
    """Importing one family module directly first (as open_clip_siglip does) registers all."""
    import subprocess
    import sys

    code = ("import negationclip.models.families.siglip\n"
            "from negationclip.models.families import registry\n"
            "print(sorted(registry()))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "['clip', 'siglip', 'siglip2']"


@pytest.mark.parametrize("split", [0, 1, 2])
def test_clip_vision_suffix_equals_the_transformers_tower(split):
    """--train-vision last-K runs the last layer at the class token only: same features and
    same gradients as the full Hugging Face tower (the reference)."""
    from negationclip.models import tiny_clip_bundle
    from negationclip.models.families import family_of

    b = tiny_clip_bundle(seed=3, vision_layers=3)
    m, fam = b.model, family_of(b.model)
    px = torch.randn(5, 3, m.config.vision_config.image_size, m.config.vision_config.image_size)
    w = torch.randn(5, fam.embed_dim(m))
    last = m.vision_model.encoder.layers[-1]

    def grads(features):
        m.zero_grad(set_to_none=True)
        (features * w).sum().backward()
        return [p.grad.clone() for p in last.parameters()]

    want = m.visual_projection(m.vision_model(pixel_values=px).pooler_output)
    want_g = grads(want)
    with torch.no_grad():
        prefix = fam.vision_prefix(m, px, split)
    got = fam.vision_suffix(m, prefix, split)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    for g, r in zip(grads(got), want_g):
        torch.testing.assert_close(g, r, rtol=1e-4, atol=1e-6)
