"""open_clip-layout SigLIP (timm ViT + MAP head, open_clip TextTransformer) loads by name as a
SiglipModel and matches a reference forward written here.

The reference ports, independently of the package:
- timm ``VisionTransformer`` (timm/models/vision_transformer.py: patch embed conv, no class
  token, pos_embed added, pre-norm blocks with fused qkv, final norm) and its MAP head
  ``AttentionPoolLatent`` (timm/layers/attention_pool.py: latent query, fused kv, proj, then
  ``x + mlp(norm(x))``, first token), eps 1e-6, exact GELU;
- open_clip ``TextTransformer`` (src/open_clip/transformer.py: token + positional embedding,
  pre-norm blocks with ``in_proj``, no causal mask, ``ln_final``, pool ``last``, then the
  projection: ``nn.Linear`` with ``proj_bias`` else ``x @ P``);
- open_clip ``HFTokenizer`` (src/open_clip/tokenizer.py: ``clean`` then the HF tokenizer padded
  to the context length, no attention mask) with ``_clean_canonicalize``;
- open_clip's SigLIP preprocessing (``resize_mode="squash"``: resize to the square, bicubic,
  mean/std 0.5).
"""

from __future__ import annotations

import html
import json
import string

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from negationclip.models import encode_images, encode_text, load_clip, save
from negationclip.utils import NegationClipError
from tests.models._siglip_fixtures import SENTENCES
from tests.models.test_families import _images

TEXTS = ["A Photo of a CAT!", "there's no apple, on the table.", "a_dog  with no ball",
         "two people and no umbrella next to a red car near the tree"]  # the last is truncated
W, DEPTH, HEADS, PATCH, IMG = 32, 2, 4, 8, 32
TW, TDEPTH, THEADS, CTX = 24, 2, 3, 12


# --- a tiny open_clip SigLIP state dict ---------------------------------------------------------

def make_state_dict(vocab: int, seed: int, *, proj_bias: bool) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)

    def r(*shape, std=0.2):
        return torch.randn(*shape, generator=g) * std

    def ln(prefix, d):
        return {prefix + ".weight": 1 + r(d, std=0.1), prefix + ".bias": r(d, std=0.1)}

    sd: dict[str, torch.Tensor] = {}
    v, vm = "visual.trunk.", 3 * W  # timm mlp_ratio 3.0
    sd[v + "patch_embed.proj.weight"] = r(W, 3, PATCH, PATCH, std=0.05)
    sd[v + "patch_embed.proj.bias"] = r(W)
    sd[v + "pos_embed"] = r(1, (IMG // PATCH) ** 2, W)
    for i in range(DEPTH):
        b = f"{v}blocks.{i}."
        sd |= ln(b + "norm1", W) | ln(b + "norm2", W)
        sd[b + "attn.qkv.weight"], sd[b + "attn.qkv.bias"] = r(3 * W, W), r(3 * W)
        sd[b + "attn.proj.weight"], sd[b + "attn.proj.bias"] = r(W, W), r(W)
        sd[b + "mlp.fc1.weight"], sd[b + "mlp.fc1.bias"] = r(vm, W), r(vm)
        sd[b + "mlp.fc2.weight"], sd[b + "mlp.fc2.bias"] = r(W, vm), r(W)
    sd |= ln(v + "norm", W)
    a = v + "attn_pool."
    sd[a + "latent"] = r(1, 1, W, std=1.0)
    sd[a + "q.weight"], sd[a + "q.bias"] = r(W, W), r(W)
    sd[a + "kv.weight"], sd[a + "kv.bias"] = r(2 * W, W), r(2 * W)
    sd[a + "proj.weight"], sd[a + "proj.bias"] = r(W, W), r(W)
    sd |= ln(a + "norm", W)
    sd[a + "mlp.fc1.weight"], sd[a + "mlp.fc1.bias"] = r(vm, W), r(vm)
    sd[a + "mlp.fc2.weight"], sd[a + "mlp.fc2.bias"] = r(W, vm), r(W)
    t, tm = "text.", int(TW * 2.5)
    sd[t + "token_embedding.weight"] = r(vocab, TW, std=0.5)
    sd[t + "positional_embedding"] = r(CTX, TW)
    for i in range(TDEPTH):
        b = f"{t}transformer.resblocks.{i}."
        sd |= ln(b + "ln_1", TW) | ln(b + "ln_2", TW)
        sd[b + "attn.in_proj_weight"], sd[b + "attn.in_proj_bias"] = r(3 * TW, TW), r(3 * TW)
        sd[b + "attn.out_proj.weight"], sd[b + "attn.out_proj.bias"] = r(TW, TW), r(TW)
        sd[b + "mlp.c_fc.weight"], sd[b + "mlp.c_fc.bias"] = r(tm, TW), r(tm)
        sd[b + "mlp.c_proj.weight"], sd[b + "mlp.c_proj.bias"] = r(TW, tm), r(TW)
    sd |= ln(t + "ln_final", TW)
    if proj_bias:
        sd[t + "text_projection.weight"], sd[t + "text_projection.bias"] = r(W, TW), r(W)
    else:
        sd[t + "text_projection"] = r(TW, W)
    sd["logit_scale"] = torch.tensor(2.3)
    sd["logit_bias"] = torch.tensor(-1.5)
    return sd


def model_cfg(tokenizer: str, *, siglip2: bool) -> dict:
    text = {"context_length": CTX, "hf_tokenizer_name": tokenizer,
            "tokenizer_kwargs": {"clean": "canonicalize"}, "width": TW, "heads": THEADS,
            "layers": TDEPTH, "mlp_ratio": 2.5, "no_causal_mask": True, "proj_bias": not siglip2,
            "pool_type": "last", "norm_kwargs": {"eps": 1e-6}}
    if siglip2:
        text["act_kwargs"] = {"approximate": "tanh"}
    return {"embed_dim": W, "init_logit_bias": -10, "custom_text": True,
            "vision_cfg": {"image_size": IMG, "timm_model_name": "vit_base_patch16_siglip_224",
                           "timm_model_pretrained": False, "timm_pool": "map", "timm_proj": "none",
                           "timm_model_kwargs": {"embed_dim": W, "depth": DEPTH, "num_heads": HEADS,
                                                 "patch_size": PATCH, "img_size": IMG,
                                                 "mlp_ratio": 3.0}},
            "text_cfg": text}


# --- tokenizers (trained here) ------------------------------------------------------------------

def t5_tokenizer(folder):
    """A T5 SentencePiece tokenizer, as timm/ViT-B-16-SigLIP ships."""
    import sentencepiece as spm
    from transformers import T5Tokenizer

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "corpus.txt").write_text("\n".join(SENTENCES) + "\n")
    spm.SentencePieceTrainer.train(input=str(folder / "corpus.txt"), model_prefix=str(folder / "sp"),
                                   vocab_size=60, model_type="unigram", pad_id=0, eos_id=1,
                                   unk_id=2, bos_id=-1, hard_vocab_limit=False, minloglevel=2)
    sp = spm.SentencePieceProcessor(model_file=str(folder / "sp.model"))
    vocab = [(sp.id_to_piece(i), sp.get_score(i)) for i in range(sp.get_piece_size())]
    return T5Tokenizer(vocab=vocab, extra_ids=0, model_max_length=CTX)


def gemma_tokenizer():
    """A Gemma-style tokenizer (case-sensitive BPE), as SigLIP 2 ships."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import GemmaTokenizerFast

    raw = Tokenizer(models.BPE(unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.Metaspace()
    raw.train_from_iterator(SENTENCES + [s.upper() for s in SENTENCES], trainers.BpeTrainer(
        vocab_size=90, special_tokens=["<pad>", "<eos>", "<bos>", "<unk>"]))
    return GemmaTokenizerFast(tokenizer_object=raw, pad_token="<pad>", eos_token="<eos>",
                              bos_token="<bos>", unk_token="<unk>", model_max_length=CTX)


def open_clip_hf_tokenizer(folder):
    """As open_clip's HFTokenizer builds it: AutoTokenizer from the named repo, right padding."""
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(str(folder))
    tok.padding_side = "right"
    return tok


def _snapshot(cache, repo):
    d = cache / ("models--" + repo.replace("/", "--"))
    snap = d / "snapshots" / "89abcdef"
    snap.mkdir(parents=True)
    (d / "refs").mkdir()
    (d / "refs" / "main").write_text("89abcdef")
    return snap


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(1)
    return tmp_path / "hub"


def make_repo(cache, tmp_path, kind: str):
    """(name to load, state dict, tokenizer, model cfg). SigLIP: weights and T5 tokenizer in one
    repo (timm/ViT-B-16-SigLIP), safetensors; SigLIP 2: the Gemma tokenizer in another cached
    repo (named by hf_tokenizer_name), a .bin, a projection without bias, GELU tanh text."""
    siglip2 = kind == "siglip2"
    repo = "timm/ViT-B-16-SigLIP2" if siglip2 else "timm/ViT-B-16-SigLIP"
    tok_repo = "timm/ViT-B-16-SigLIP2-256" if siglip2 else repo
    tok = gemma_tokenizer() if siglip2 else t5_tokenizer(tmp_path / "spm")
    snap = _snapshot(cache, repo)
    tok_dir = snap if tok_repo == repo else _snapshot(cache, tok_repo)
    tok.save_pretrained(str(tok_dir))
    tok = open_clip_hf_tokenizer(tok_dir)
    sd = make_state_dict(len(tok), seed=3 if siglip2 else 4, proj_bias=not siglip2)
    if siglip2:
        torch.save(sd, snap / "open_clip_pytorch_model.bin")
    else:
        from safetensors.torch import save_file
        save_file({k: v.contiguous() for k, v in sd.items()}, str(snap / "open_clip_model.safetensors"))
    cfg = model_cfg(tok_repo, siglip2=siglip2)
    (snap / "open_clip_config.json").write_text(json.dumps({
        "model_cfg": cfg, "preprocess_cfg": {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5],
                                             "interpolation": "bicubic", "resize_mode": "squash"}}))
    name = "hf-hub:timm/ViT-B-16-SigLIP2" if siglip2 else "ViT-B-16-SigLIP/webli"
    return name, sd, tok, cfg, snap


# --- the reference forward ----------------------------------------------------------------------

def _attn(q, k, v, heads):
    """Multi-head scaled dot-product attention on [B, N, D] projections."""
    b, n, d = q.shape
    split = lambda x: x.reshape(b, x.shape[1], heads, d // heads).transpose(1, 2)  # noqa: E731
    w = (split(q) @ split(k).transpose(-2, -1)) * (d // heads) ** -0.5
    return (w.softmax(-1) @ split(v)).transpose(1, 2).reshape(b, n, d)


def ref_image(sd, pixels):
    v = "visual.trunk."
    lin = lambda x, p: F.linear(x, sd[p + ".weight"], sd[p + ".bias"])  # noqa: E731
    ln = lambda x, p: F.layer_norm(x, (x.shape[-1],), sd[p + ".weight"], sd[p + ".bias"], 1e-6)  # noqa: E731
    x = F.conv2d(pixels, sd[v + "patch_embed.proj.weight"], sd[v + "patch_embed.proj.bias"], stride=PATCH)
    x = x.flatten(2).transpose(1, 2) + sd[v + "pos_embed"]
    for i in range(DEPTH):
        b = f"{v}blocks.{i}."
        q, k, vv = lin(ln(x, b + "norm1"), b + "attn.qkv").chunk(3, dim=-1)
        x = x + lin(_attn(q, k, vv, HEADS), b + "attn.proj")
        x = x + lin(F.gelu(lin(ln(x, b + "norm2"), b + "mlp.fc1")), b + "mlp.fc2")
    x = ln(x, v + "norm")
    a = v + "attn_pool."
    q = lin(sd[a + "latent"].expand(x.shape[0], -1, -1), a + "q")
    k, vv = lin(x, a + "kv").chunk(2, dim=-1)
    o = lin(_attn(q, k, vv, HEADS), a + "proj")
    o = o + lin(F.gelu(lin(ln(o, a + "norm"), a + "mlp.fc1")), a + "mlp.fc2")
    return o[:, 0]


def ref_text(sd, ids, *, tanh: bool):
    lin = lambda x, p: F.linear(x, sd[p + ".weight"], sd[p + ".bias"])  # noqa: E731
    ln = lambda x, p: F.layer_norm(x, (TW,), sd[p + ".weight"], sd[p + ".bias"], 1e-6)  # noqa: E731
    act = (lambda x: F.gelu(x, approximate="tanh")) if tanh else F.gelu
    x = sd["text.token_embedding.weight"][ids] + sd["text.positional_embedding"][: ids.shape[1]]
    for i in range(TDEPTH):
        b = f"text.transformer.resblocks.{i}."
        qkv = F.linear(ln(x, b + "ln_1"), sd[b + "attn.in_proj_weight"], sd[b + "attn.in_proj_bias"])
        x = x + lin(_attn(*qkv.chunk(3, dim=-1), THEADS), b + "attn.out_proj")  # no mask at all
        x = x + lin(act(lin(ln(x, b + "ln_2"), b + "mlp.c_fc")), b + "mlp.c_proj")
    pooled = ln(x, "text.ln_final")[:, -1]
    if "text.text_projection.weight" in sd:
        return lin(pooled, "text.text_projection")
    return pooled @ sd["text.text_projection"]


def ref_clean(text: str) -> str:
    """open_clip _clean_canonicalize: basic_clean (ftfy, html unescape twice, strip), then
    canonicalize_text (underscores, punctuation, lower case, whitespace)."""
    import ftfy
    text = html.unescape(html.unescape(ftfy.fix_text(text))).strip()
    text = text.replace("_", " ").translate(str.maketrans("", "", string.punctuation)).lower()
    return " ".join(text.split()).strip()


def ref_pixels(images):
    out = []
    for im in images:
        a = np.asarray(im.convert("RGB").resize((IMG, IMG), Image.BICUBIC), dtype=np.float32) / 255.0
        out.append((torch.from_numpy(a).permute(2, 0, 1) - 0.5) / 0.5)
    return torch.stack(out)


def reference(sd, tok, texts, images, *, tanh):
    ids = tok([ref_clean(t) for t in texts], max_length=CTX, padding="max_length", truncation=True,
              return_tensors="pt").input_ids
    with torch.no_grad():
        return (F.normalize(ref_text(sd, ids, tanh=tanh), dim=-1),
                F.normalize(ref_image(sd, ref_pixels(images)), dim=-1))


# --- tests --------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["siglip", "siglip2"])
def test_open_clip_siglip_loads_by_name_and_matches_the_reference(cache, tmp_path, kind):
    name, sd, tok, _, snap = make_repo(cache, tmp_path, kind)
    b = load_clip(name)
    assert b.family.name == "siglip" and b.provenance["format"] == "open_clip"
    assert b.provenance["text_clean"] == "canonicalize"
    ref_t, ref_i = reference(sd, tok, TEXTS, _images(), tanh=kind == "siglip2")
    got_t = encode_text(b, TEXTS, batch_size=2)
    assert (got_t - ref_t).abs().max() < 1e-5
    assert (encode_images(b, _images(), batch_size=2) - ref_i).abs().max() < 1e-5
    # cleaning matters: the reference without it differs (so the check above has teeth)
    raw = tok(TEXTS, max_length=CTX, padding="max_length", truncation=True, return_tensors="pt").input_ids
    with torch.no_grad():
        assert not torch.allclose(F.normalize(ref_text(sd, raw, tanh=kind == "siglip2"), dim=-1),
                                  ref_t, atol=1e-3)
    # the score is SigLIP's: exp(logit_scale) * cos + logit_bias, with the checkpoint's scalars
    sim = b.family.similarity(b.model, ref_i, ref_t)
    assert torch.allclose(sim, sd["logit_scale"].exp() * ref_i @ ref_t.T + sd["logit_bias"], atol=1e-5)
    # the same folder loads by path and by its weights file
    again = load_clip(next(snap.glob("open_clip_*model*")))
    assert torch.equal(encode_text(again, TEXTS), encode_text(b, TEXTS))


def test_save_reload_keeps_the_open_clip_tokenization(cache, tmp_path):
    name, *_ = make_repo(cache, tmp_path, "siglip")
    b = load_clip(name)
    out = save(b, tmp_path / "saved")
    assert json.loads((out / "config.json").read_text())["model_type"] == "siglip"
    b2 = load_clip(out)
    assert b2.tokenizer.clean == "canonicalize" and not b2.tokenizer.uses_mask
    assert torch.equal(encode_text(b, TEXTS), encode_text(b2, TEXTS))
    assert torch.equal(encode_images(b, _images()), encode_images(b2, _images()))


def test_missing_tokenizer_and_unsupported_layouts_are_clear_errors(cache, tmp_path):
    name, sd, tok, cfg, snap = make_repo(cache, tmp_path, "siglip2")
    import shutil
    shutil.rmtree(cache / "models--timm--ViT-B-16-SigLIP2-256")
    with pytest.raises(NegationClipError, match=r"tokenizer timm/ViT-B-16-SigLIP2-256.*not in the local"):
        load_clip(name)
    tok.save_pretrained(str(snap))  # beside the weights: found there
    assert load_clip(name).family.name == "siglip"

    def with_cfg(**vis):
        c = json.loads(json.dumps(cfg))
        c["vision_cfg"].update(vis)
        (snap / "open_clip_config.json").write_text(json.dumps({"model_cfg": c}))

    with_cfg(timm_proj="linear")
    with pytest.raises(NegationClipError, match="vision projection.*not converted"):
        load_clip(name)
    with_cfg(timm_model_name="vit_weird_patch16_siglip_224", timm_model_kwargs={})
    with pytest.raises(NegationClipError, match="attention heads of timm model"):
        load_clip(name)
    with_cfg(timm_model_name="naflexvit_base_patch16_siglip")
    with pytest.raises(NegationClipError, match="NaFlex"):
        load_clip(name)
    with_cfg(timm_pool="avg")  # not SigLIP's MAP head: the generic refusal
    with pytest.raises(NegationClipError, match="timm vision tower.*not supported"):
        load_clip(name)
