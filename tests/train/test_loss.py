import math

import torch
import torch.nn.functional as F

from negationclip.models import image_features, open_image, text_features
from negationclip.train.loop import _prepare, _Trainer
from negationclip.train import TrainConfig
from negationclip.train.distributed import DistInfo
from negationclip.train.loss import contrastive_loss, hard_negative_hinge


def _reference_loss(model, pixels, ids, mask):
    """The released script's step: encode images and texts, symmetric cross-entropy."""
    img = F.normalize(image_features(model, pixels), dim=-1)
    txt = F.normalize(text_features(model, ids, mask), dim=-1)
    logits = model.logit_scale.exp() * img @ txt.t()
    labels = torch.arange(len(img))
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels)) / 2


def test_cached_embeddings_and_dynamic_padding_give_the_reference_loss_and_grads(dataset, tiny, tmp_path):
    root, recs = dataset
    cfg = TrainConfig(batch_size=6, val_fraction=0.0, cache_dir=str(tmp_path / "cache"))
    data = _prepare(tiny, recs, root / "images", cfg, DistInfo(), lambda m: None, None)
    trainer = _Trainer(tiny, data, cfg, DistInfo(), torch.device("cpu"))
    rows = data.train[:6]
    model = tiny.model
    params = [p for n, p in model.named_parameters() if n.startswith("text_model.encoder")]

    ours, value = trainer.batch_loss(rows)
    assert value == ours.item()
    g_ours = torch.autograd.grad(ours, params)

    # reference: every image decoded and encoded at this step, captions padded to 77
    pixels = tiny.transform([open_image(e.image) for e in rows])
    tok = tiny.tokenizer([e.text for e in rows], padding="max_length")
    assert tok.input_ids.shape[1] == 77 > data.tokens.batch([e.text for e in rows])[0].shape[1]
    ref = _reference_loss(model, pixels, tok.input_ids, tok.attention_mask)
    g_ref = torch.autograd.grad(ref, params)

    assert math.isclose(ours.item(), ref.item(), rel_tol=1e-5, abs_tol=1e-6)
    for a, b in zip(g_ours, g_ref):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_dynamic_padding_equals_padding_to_77(tiny):
    texts = ["a dog", "a cat sitting on a red sofa with no cushion", "there is no tree"]
    short = tiny.tokenizer(texts)
    full = tiny.tokenizer(texts, padding="max_length")
    with torch.no_grad():
        a = text_features(tiny.model, short.input_ids, short.attention_mask)
        b = text_features(tiny.model, full.input_ids, full.attention_mask)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_hard_negative_columns_and_hinge():
    torch.manual_seed(0)
    img, txt, hard = torch.randn(4, 8), torch.randn(4, 8), torch.randn(2, 8)
    scale = torch.tensor(10.0)
    base = contrastive_loss(img, txt, scale)
    more = contrastive_loss(img, txt, scale, extra_text_emb=hard)
    # extra negatives only add to the image->text partition functions
    i, t, h = F.normalize(img, dim=-1), F.normalize(txt, dim=-1), F.normalize(hard, dim=-1)
    logits = scale * torch.cat([i @ t.t(), i @ h.t()], 1)
    want = (F.cross_entropy(logits, torch.arange(4)) + F.cross_entropy(scale * t @ i.t(), torch.arange(4))) / 2
    torch.testing.assert_close(more, want)
    assert more > base
    extra_img = torch.randn(3, 8)
    both = contrastive_loss(img, txt, scale, extra_image_emb=extra_img)
    e = F.normalize(extra_img, dim=-1)
    want = (F.cross_entropy(scale * i @ t.t(), torch.arange(4))
            + F.cross_entropy(scale * torch.cat([t @ i.t(), t @ e.t()], 1), torch.arange(4))) / 2
    torch.testing.assert_close(both, want)
    owner = torch.tensor([0, 2])
    hinge = hard_negative_hinge(img, txt, hard, owner, margin=0.2)
    pos = (i[owner] * t[owner]).sum(-1)
    neg = (i[owner] * h).sum(-1)
    torch.testing.assert_close(hinge, F.relu(0.2 - pos + neg).mean())
