import math
import dataclasses
import pytest

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


def test_prototype_hinge_is_the_mean_hinge_to_each_groups_mean_direction():
    from negationclip.train.loss import prototype_hinge

    g = torch.Generator().manual_seed(0)
    txt, img, neg = (torch.randn(7, 5, generator=g, requires_grad=True) for _ in range(3))
    groups = [0, 1, 0, 2, 1, 0, -1]  # group 2 has one row, -1 none: both left out
    got = prototype_hinge(txt, img, neg, groups, margin=0.3)
    terms = []
    for k in (0, 1):
        rows = [i for i, x in enumerate(groups) if x == k]
        d = sum(img[i].detach() / img[i].detach().norm() - neg[i].detach() / neg[i].detach().norm()
                for i in rows) / len(rows)
        u = d / d.norm()
        terms += [max(0.0, 0.3 - float(txt[i].detach() @ u / txt[i].detach().norm())) for i in rows]
    assert abs(float(got.detach()) - sum(terms) / len(terms)) < 1e-6
    got.backward()
    assert img.grad is None and neg.grad is None  # the direction is a target, not trained
    assert txt.grad[3].abs().sum() == 0 and txt.grad[6].abs().sum() == 0
    assert txt.grad[0].abs().sum() > 0


def test_keep_loss_is_one_minus_cosine_to_the_anchor():
    from negationclip.train.loss import keep_loss

    a, b = torch.randn(4, 6), torch.randn(4, 6)
    want = 1 - F.cosine_similarity(a, b, dim=-1).mean()
    assert abs(float(keep_loss(a, b)) - float(want)) < 1e-6
    assert float(keep_loss(b * 3.0, b)) < 1e-6
    assert float(keep_loss(a[:0], b[:0])) == 0.0  # no original caption in the batch


def test_negationclip_options_add_the_terms_and_base_text_stays_the_starting_model(dataset, tiny, tmp_path):
    import copy

    from negationclip.train.methods import get_method
    from negationclip.utils import NegationClipError

    root, recs = dataset
    cfg = TrainConfig(batch_size=6, val_fraction=0.0, mix="ratio", original_ratio=1.0,
                      cache_dir=str(tmp_path / "cache"),
                      method_options={"keep_weight": 2.0})
    base = copy.deepcopy(tiny)
    data = _prepare(tiny, recs, root / "images", cfg, DistInfo(), lambda m: None, None)
    trainer = _Trainer(tiny, data, cfg, DistInfo(), torch.device("cpu"))
    rows = [e for e in data.train if e.kind == "negated"][:3] + \
        [e for e in data.train if e.kind == "original"][:3]
    orig = [e for e in rows if e.kind == "original"]
    assert len(orig) == 3 and len(rows) == 6
    ctx = trainer.context()
    loss, value = trainer.batch_loss(rows)
    plain_cfg = dataclasses.replace(cfg, method_options={})
    plain = _Trainer(tiny, data, plain_cfg, DistInfo(), torch.device("cpu")).batch_loss(rows)[0]
    assert ctx.base_text is not None and abs(float(loss - plain)) < 1e-6  # nothing moved yet
    with torch.no_grad():  # move the text tower: the term grows, base_text does not move
        for n, p in tiny.model.named_parameters():
            if n.startswith("text_model.encoder"):
                p.add_(0.05 * torch.randn_like(p))
    ids, mask = data.tokens.batch([e.text for e in orig])
    want = F.normalize(text_features(base.model.eval(), ids, mask), dim=-1)
    torch.testing.assert_close(ctx.base_text([e.text for e in orig]), want, atol=1e-5, rtol=1e-5)
    now = F.normalize(text_features(tiny.model.eval(), ids, mask), dim=-1)
    loss2 = trainer.batch_loss(rows)[0]
    plain2 = _Trainer(tiny, data, plain_cfg, DistInfo(), torch.device("cpu")).batch_loss(rows)[0]
    keep = 2.0 * (1 - (now * want).sum(-1)).mean()
    assert float(keep) > 1e-4 and abs(float(loss2 - plain2 - keep)) < 1e-4
    with pytest.raises(NegationClipError, match="unknown option"):
        get_method("negationclip", {"keep": 1.0})


def test_prototype_term_groups_attribute_negations_by_their_negated_property(dataset, tiny, tmp_path):
    """Scene-graph part records ("a square that is not yellow") name no object: the prototype
    term groups them by ``negated_property``, exactly as if that were their object."""
    root, recs = dataset
    props = ["color:red", "color:red", "size:small", "size:small", "color:red", "size:small"]
    recs = [dict(r, negative_image=f"{(i + 1) % len(recs):03d}.png") for i, r in enumerate(recs)]
    for r, p in zip(recs, props):
        del r["object"]
        r["negated_property"] = p
    cfg = TrainConfig(batch_size=6, val_fraction=0.0, mix="negated", mine_negative_images=False,
                      cache_dir=str(tmp_path / "cache"), method_options={"prototype_weight": 1.0})
    data = _prepare(tiny, recs, root / "images", cfg, DistInfo(), lambda m: None, None)
    trainer = _Trainer(tiny, data, cfg, DistInfo(), torch.device("cpu"))
    rows = [e for e in data.train if e.negated_property]  # read from the record
    assert len(rows) == len(props) and not any(e.object for e in rows)
    as_object = [dataclasses.replace(e, object=f"property:{e.negated_property}", negated_property=None)
                 if e.negated_property else e for e in rows]
    neither = [dataclasses.replace(e, negated_property=None) if e.negated_property else e for e in rows]
    got, as_obj = trainer.batch_loss(rows)[0], trainer.batch_loss(as_object)[0]
    assert abs(float(got - as_obj)) < 1e-6
    plain = _Trainer(tiny, data, dataclasses.replace(cfg, method_options={}), DistInfo(),
                     torch.device("cpu")).batch_loss(neither)[0]
    assert abs(float(trainer.batch_loss(neither)[0] - plain)) < 1e-6  # nothing to group by
    assert float(got - plain) > 1e-4  # the grouped rows add the term
