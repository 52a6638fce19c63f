"""``--recipe paper`` against a port of the released NegationCLIP ``src/clip_finetune.py``
(github.com/parkquasar/NegationCLIP), written here independently of the package:

- the model is OpenAI's own ``clip/model.py`` (tests/_reference), frozen and optimised as the
  released ``main`` does (l.188-195: ``model.float()``, ``visual`` and ``ln_final`` frozen;
  l.217: ``torch.optim.AdamW(model.parameters(), lr=args.lr)``);
- the split is l.183 + l.203-207 (``np.random.seed(42)``, ``np.random.shuffle`` of the index
  list, the first ``floor(0.2 * n)`` for validation);
- a training step is ``train_one_epoch`` (l.95-118), the validation loss ``evaluate``
  (l.148-171: the mean of per-batch means, batches in ``Subset`` order, ``shuffle=False``);
- tokenisation is ``clip.tokenize(..., truncate=True)`` on the reference BPE tokenizer, and
  pixels are ``ToTensor`` + OpenAI's normalisation (the images already have the model's size,
  so ``Resize`` + ``CenterCrop`` leave them unchanged).
"""

from __future__ import annotations

import copy
import functools
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from negationclip.models import load_clip
from negationclip.train import TrainConfig, finetune
from negationclip.train.data import Example, split_examples
from negationclip.utils import read_jsonl
from tests.conftest import load_reference

MEAN = (0.48145466, 0.4578275, 0.40821073)
STD = (0.26862954, 0.26130258, 0.27577711)
SIZE = 32


# --- the port ------------------------------------------------------------------------------

def make_reference_model(logit_scale: float, seed: int = 0):
    ref = load_reference("openai_clip_model")
    torch.manual_seed(seed)
    m = ref.CLIP(embed_dim=16, image_resolution=SIZE, vision_layers=1, vision_width=64,
                 vision_patch_size=16, context_length=77, vocab_size=49408, transformer_width=64,
                 transformer_heads=1, transformer_layers=2).float()
    with torch.no_grad():  # OpenAI initialises biases/norms to constants: make them distinct
        for name, p in m.named_parameters():
            if p.ndim == 1 and name != "class_embedding":
                p.add_(torch.randn_like(p) * 0.05)
        m.logit_scale.fill_(math.log(logit_scale))
    return m


@functools.lru_cache(maxsize=1)
def _simple_tokenizer():
    from negationclip.models.tokenizer import default_bpe_path
    return load_reference("openai_simple_tokenizer").SimpleTokenizer(bpe_path=str(default_bpe_path()))


def reference_tokenize(texts):
    """``clip.tokenize(texts, truncate=True)`` (openai/CLIP clip/clip.py)."""
    st = _simple_tokenizer()
    sot, eot = st.encoder["<|startoftext|>"], st.encoder["<|endoftext|>"]
    out = torch.zeros(len(texts), 77, dtype=torch.long)
    for i, t in enumerate(texts):
        toks = [sot] + st.encode(t) + [eot]
        if len(toks) > 77:
            toks = toks[:77]
            toks[-1] = eot
        out[i, :len(toks)] = torch.tensor(toks)
    return out


def reference_pixels(path):
    a = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255.0
    t = torch.from_numpy(a).permute(2, 0, 1)
    return (t - torch.tensor(MEAN)[:, None, None]) / torch.tensor(STD)[:, None, None]


def released_split(n: int, seed: int = 42, fraction: float = 0.2):
    np.random.seed(seed)
    indices = list(range(n))
    np.random.shuffle(indices)
    split_idx = int(np.floor(fraction * n))
    return indices[split_idx:], indices[:split_idx]


def released_loss(model, images, texts):
    image_features = model.encode_image(images)
    text_features = model.encode_text(reference_tokenize(texts))
    image_features = image_features / image_features.norm(dim=-1, keepdim=True)
    text_features = text_features / text_features.norm(dim=-1, keepdim=True)
    logits_per_image = model.logit_scale.exp() * image_features @ text_features.t()
    labels = torch.arange(len(logits_per_image))
    return (F.cross_entropy(logits_per_image, labels) + F.cross_entropy(logits_per_image.t(), labels)) / 2


def released_setup(model):
    model = model.float()
    for p in model.visual.parameters():
        p.requires_grad = False
    for p in model.ln_final.parameters():
        p.requires_grad = False
    return model, torch.optim.AdamW(model.parameters(), lr=LR)


def released_evaluate(model, rows, batch_size):
    """Mean of per-batch means (and, to show the difference, the per-row mean)."""
    model.eval()
    losses, sizes = [], []
    with torch.no_grad():
        for i in range(0, len(rows), batch_size):
            b = rows[i:i + batch_size]
            losses.append(float(released_loss(model, torch.stack([r[0] for r in b]), [r[1] for r in b])))
            sizes.append(len(b))
    return sum(losses) / len(losses), sum(l * s for l, s in zip(losses, sizes)) / sum(sizes)


# name mapping OpenAI -> Hugging Face CLIPModel, text side (written from both models' layouts)
def openai_to_hf_text(name: str, value: torch.Tensor, layers: int) -> dict[str, torch.Tensor]:
    if name == "token_embedding.weight":
        return {"text_model.embeddings.token_embedding.weight": value}
    if name == "positional_embedding":
        return {"text_model.embeddings.position_embedding.weight": value}
    if name == "text_projection":
        return {"text_projection.weight": value.t()}
    if name == "logit_scale":
        return {"logit_scale": value}
    if name.startswith("ln_final."):
        return {"text_model.final_layer_norm." + name.split(".")[-1]: value}
    parts = name.split(".")  # transformer.resblocks.I.<module>...
    i, rest = parts[2], ".".join(parts[3:])
    pre = f"text_model.encoder.layers.{i}."
    if rest.startswith("attn.in_proj_"):
        kind = rest.split("_")[-1]
        q, k, v = value.chunk(3, dim=0)
        return {pre + f"self_attn.{x}_proj.{kind}": t for x, t in zip("qkv", (q, k, v))}
    simple = {"attn.out_proj.": "self_attn.out_proj.", "ln_1.": "layer_norm1.", "ln_2.": "layer_norm2.",
              "mlp.c_fc.": "mlp.fc1.", "mlp.c_proj.": "mlp.fc2."}
    for a, b in simple.items():
        if rest.startswith(a):
            return {pre + b + rest[len(a):]: value}
    raise AssertionError(f"unmapped {name}")


# --- the data ------------------------------------------------------------------------------

LR = 1e-3


def write_released_layout(root, n_captions: int, n_images: int):
    """A COCO captions file in the released negationclip_captions_train2014.json layout."""
    (root / "images").mkdir(parents=True)
    g = torch.Generator().manual_seed(3)
    images = []
    for i in range(n_images):
        px = (torch.rand(SIZE, SIZE, 3, generator=g) * 255).byte().numpy()
        Image.fromarray(px).save(root / "images" / f"{i:012d}.png")
        images.append({"id": 100 + i, "file_name": f"{i:012d}.png"})
    objects = ["tree", "hat", "dog", "car", "cup", "bench", "kite"]
    anns = []
    for j in range(n_captions):
        im = j % n_images
        cap = f"a picture number {j} of a {['red', 'green', 'blue'][j % 3]} scene"
        anns.append({"id": 1000 + j, "image_id": 100 + im, "caption": cap,
                     "updated_caption": f"{cap} with no {objects[j % len(objects)]}"})
    path = root / "captions.json"
    path.write_text(json.dumps({"images": images, "annotations": anns}))
    return path, images, anns


def rows_of(root, images, anns, idx):
    files = {im["id"]: im["file_name"] for im in images}
    return [(reference_pixels(root / "images" / files[anns[i]["image_id"]]), anns[i]["updated_caption"])
            for i in idx]


def run_package(ref_model, tmp_path, data, **kw):
    torch.save(ref_model.state_dict(), tmp_path / "start.pth")
    bundle = load_clip(tmp_path / "start.pth")
    cfg = TrainConfig(device="cpu", cache_dir=str(tmp_path / "cache"), checkpoint_every_steps=1000,
                      **kw)
    res = finetune(bundle, str(data), cfg, tmp_path / kw.get("extra", {}).get("name", "run"),
                   image_root=data.parent / "images", verbose=False)
    return bundle, res


# --- the tests -----------------------------------------------------------------------------

@pytest.mark.timeout(300)
def test_one_step_matches_the_released_step_loss_trainable_set_weights_and_unclamped_scale(tmp_path):
    data, images, anns = write_released_layout(tmp_path / "d", n_captions=5, n_images=5)
    train_idx, val_idx = released_split(len(anns))
    rows = rows_of(tmp_path / "d", images, anns, train_idx)
    # A start where the matching pairs already score highest (a few plain Adam steps at scale
    # 10), then logit scale 100: from there the released step raises the scale (a random
    # model, which ranks pairs at chance, would lower it and say nothing about a clamp).
    start = make_reference_model(logit_scale=10.0)
    fit = torch.optim.Adam([p for n, p in start.named_parameters() if n != "logit_scale"], lr=1e-3)
    for _ in range(8):
        fit.zero_grad()
        released_loss(start, torch.stack([r[0] for r in rows]), [r[1] for r in rows]).backward()
        fit.step()
    with torch.no_grad():
        start.logit_scale.fill_(math.log(100.0))
    start.zero_grad(set_to_none=True)
    # the package: --recipe paper defaults; the 4 training captions in one batch = one step
    before, res = run_package(start, tmp_path, data, lr=LR, batch_size=4, epochs=1)
    assert res.steps == 1 and res.n_train == 4 and res.n_val == 1
    # the port: the released main(), one epoch of one batch
    model, opt = released_setup(copy.deepcopy(start))
    model.train()
    loss = released_loss(model, torch.stack([r[0] for r in rows]), [r[1] for r in rows])
    opt.zero_grad()
    loss.backward()
    opt.step()
    for blk in model.transformer.resblocks:  # the key bias's gradient is rounding noise
        g = blk.attn.in_proj_bias.grad
        assert float(g[64:128].abs().max()) < 1e-4 * float(g[:64].abs().max())
    log = [h for h in read_jsonl(res.out_dir / "log.jsonl") if h["kind"] == "train"]
    assert log[0]["loss"] == pytest.approx(loss.item(), rel=1e-5)

    # the trainable set, parameter by parameter: every tensor the port let learn moved by the
    # same update; everything else (visual tower, ln_final) is bit-identical to the start
    layers = 2
    ref_trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert "logit_scale" in ref_trainable and not any(n.startswith(("visual.", "ln_final."))
                                                      for n in ref_trainable)
    start_sd = before.model.state_dict()  # converted start (load_clip gave a fresh copy)
    ours = res.bundle.model.state_dict()
    ours_trainable = {n for n, p in res.bundle.model.named_parameters() if p.requires_grad}
    expected_trainable: set[str] = set()
    grads = {k: v for n, p in model.named_parameters() if p.grad is not None
             for k, v in openai_to_hf_text(n, p.grad, layers).items()}
    worst = 0.0
    for name, value in model.state_dict().items():
        if name.startswith("visual."):
            continue
        for hf_name, ref_value in openai_to_hf_text(name, value, layers).items():
            if name in ref_trainable:
                expected_trainable.add(hf_name)
                assert not torch.equal(ours[hf_name], start_sd[hf_name]), hf_name
            else:
                assert torch.equal(ours[hf_name], start_sd[hf_name]), hf_name
            if hf_name.endswith("k_proj.bias"):
                # softmax ignores a shift shared by all keys, so the key bias's gradient is 0
                # in exact arithmetic: both updates are AdamW acting on rounding noise (each at
                # most lr in size) and cannot be compared element by element
                for w in (ours[hf_name], ref_value):
                    assert float((w - start_sd[hf_name]).abs().max()) <= LR * 1.01
                continue
            # AdamW's first step is lr * g / (|g| + eps): where the released gradient is above
            # fp32 rounding noise (1e-5 of the tensor's largest), the updates agree to 2e-5 (2%
            # of a step); below it, g's sign is noise in any implementation, the step is still
            # at most lr
            diff = (ours[hf_name] - ref_value).abs()
            g = grads.get(hf_name)
            if g is None:
                worst = max(worst, float(diff.max()))
                continue
            clear = g.abs() > 1e-5 * g.abs().max()
            worst = max(worst, float(diff[clear].max()))
            noisy = ~clear & (g != 0)  # (exact zeros, e.g. unused token rows, see only decay)
            assert float(diff.max()) <= 2 * LR and int(noisy.sum()) <= 0.001 * g.numel() + 2
    assert worst < 2e-5, worst  # 2% of a step: one AdamW step moves each weight by ~lr = 1e-3
    assert ours_trainable == expected_trainable
    vision = [n for n in ours if n.startswith(("vision_model.", "visual_projection."))]
    assert vision and all(torch.equal(ours[n], start_sd[n]) for n in vision)

    # the logit scale is not clamped: the released step takes it above 100, and so do we
    ref_scale = model.logit_scale.exp().item()
    assert ref_scale > 100.05
    assert res.bundle.model.logit_scale.exp().item() == pytest.approx(ref_scale, abs=1e-4)
    # the validation loss after the epoch (2 captions, one batch) is the port's
    val_rows = rows_of(tmp_path / "d", images, anns, val_idx)
    assert res.best_val_loss == pytest.approx(released_evaluate(model, val_rows, 4)[0], abs=1e-6)

    # --clamp-logit-scale 100 (an explicit option): the same step ends at 100
    _, clamped = run_package(start, tmp_path, data, lr=LR, batch_size=4, epochs=1,
                             clamp_logit_scale=100.0, extra={"name": "clamped"})
    assert clamped.bundle.model.logit_scale.exp().item() == pytest.approx(100.0, abs=1e-4)


@pytest.mark.parametrize("n", [2, 5, 10, 37, 1000, 12_345])
def test_caption_split_is_the_released_numpy_split(n):
    rows = [Example(image=f"img{i % 7}", text=str(i)) for i in range(n)]
    train, val = split_examples(rows, 0.2, by="caption", seed=42)
    ref_train, ref_val = released_split(n)
    assert [int(e.text) for e in val] == ref_val      # same rows, same (Subset) order
    assert [int(e.text) for e in train] == ref_train


def test_released_split_is_not_pythons_random():
    """The old rule (random.Random(42)) shared only chance overlap with the released split."""
    import random
    idx = list(range(1000))
    random.Random(42).shuffle(idx)
    val = {int(e.text) for e in split_examples([Example("i", str(i)) for i in range(1000)], 0.2,
                                                by="caption", seed=42)[1]}
    assert len(val & set(idx[:200])) < 100 and len(val) == 200


@pytest.mark.timeout(300)
def test_validation_loss_is_the_mean_of_per_batch_means(tmp_path):
    data, images, anns = write_released_layout(tmp_path / "d", n_captions=25, n_images=9)
    start = make_reference_model(logit_scale=1 / 0.07)
    # 5 validation captions in batches of 2, 2, 1; before any step (initial validation)
    _, res = run_package(start, tmp_path, data, lr=1e-6, batch_size=2, epochs=1, max_steps=1)
    _, val_idx = released_split(len(anns))
    batch_mean, row_mean = released_evaluate(copy.deepcopy(start),
                                             rows_of(tmp_path / "d", images, anns, val_idx), 2)
    assert abs(batch_mean - row_mean) > 1e-4  # the two rules differ on this data
    assert res.initial_val_loss == pytest.approx(batch_mean, rel=1e-5)
    _, rows = run_package(start, tmp_path, data, lr=1e-6, batch_size=2, epochs=1, max_steps=1,
                          val_loss="row_mean", extra={"name": "rows"})
    # row_mean is a different rule (per-caption weights over a shuffled batch order)
    assert abs(rows.initial_val_loss - batch_mean) > 1e-4


def test_recipes_and_options():
    paper = TrainConfig.recipe("paper")
    assert paper.to_dict() == {**TrainConfig().to_dict(), "extra": {"recipe": "paper"}}
    assert (paper.clamp_logit_scale, paper.precision, paper.split_by, paper.val_loss,
            paper.adamw_kernel) == (None, "fp32", "caption", "batch_mean", "default")
    assert (paper.lr, paper.batch_size, paper.epochs, paper.val_fraction, paper.seed) == (
        1e-6, 512, 15, 0.2, 42)
    # torch.optim.AdamW's defaults, as the released script gets them
    d = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))]).defaults
    assert (paper.betas, paper.eps, paper.weight_decay) == (d["betas"], d["eps"], d["weight_decay"])
    ours = TrainConfig.recipe("negationclip", lr=1e-5)
    assert (ours.clamp_logit_scale, ours.precision, ours.split_by, ours.val_loss, ours.lr) == (
        100.0, "auto", "image", "row_mean", 1e-5)
