"""SigLIP fine-tuning: the sigmoid loss (against a port of open_clip's SigLipLoss), one run
that changes only the text tower, and every --method on sigmoid scores (each softmax term
replaced by the family's pair loss) against a reference written here."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from negationclip.train import TrainConfig, finetune
from negationclip.train.loss import sigmoid_loss
from tests.models._siglip_fixtures import make_siglip


def _open_clip_siglip_loss(image_features, text_features, logit_scale, logit_bias):
    """Port of open_clip src/open_clip/loss.py SigLipLoss._loss (single process, no chunks):
    labels 2*eye - 1, -logsigmoid(labels * (scale * I @ T.T + bias)).sum() / batch."""
    logits = logit_scale * image_features @ text_features.T + logit_bias
    n = image_features.shape[0]
    labels = -torch.ones((n, n)) + 2 * torch.eye(n)
    return -F.logsigmoid(labels * logits).sum() / n


def test_sigmoid_loss_equals_open_clip_siglip_loss():
    g = torch.Generator().manual_seed(0)
    img, txt = torch.randn(6, 8, generator=g), torch.randn(6, 8, generator=g)
    scale, bias = torch.tensor(10.0), torch.tensor(-10.0)
    ref = _open_clip_siglip_loss(F.normalize(img, dim=-1), F.normalize(txt, dim=-1), scale, bias)
    assert torch.allclose(sigmoid_loss(img, txt, scale, bias), ref, atol=1e-6)
    # extra texts are negatives of every image: the same as appending them as unmatched columns
    extra = torch.randn(3, 8, generator=g)
    ni, nt, ne = (F.normalize(x, dim=-1) for x in (img, txt, extra))
    logits = scale * ni @ torch.cat([nt, ne]).T + bias
    labels = torch.cat([2 * torch.eye(6) - 1, -torch.ones(6, 3)], dim=1)
    want = -F.logsigmoid(labels * logits).sum() / 6
    assert torch.allclose(sigmoid_loss(img, txt, scale, bias, extra_text_emb=extra), want, atol=1e-6)


def test_one_siglip_finetune_changes_only_the_text_tower(dataset, tmp_path):
    from negationclip.models import load_clip

    torch.set_num_threads(1)
    root, recs = dataset
    b = load_clip(make_siglip(tmp_path / "siglip"))
    before = {n: p.detach().clone() for n, p in b.model.named_parameters()}
    cfg = TrainConfig(epochs=1, batch_size=4, lr=1e-3, val_fraction=0.25, seed=7,
                      cache_dir=str(tmp_path / "cache"), checkpoint_every_steps=100)
    res = finetune(b, recs, cfg, tmp_path / "run", image_root=root / "images", verbose=False)
    after = dict(res.bundle.model.named_parameters())
    vision = [n for n in before if n.startswith("vision_model.")]
    assert vision and all(torch.equal(before[n], after[n]) for n in vision)
    changed = [n for n in before if not torch.equal(before[n], after[n])]
    assert changed and all(n.startswith("text_model.") or n in ("logit_scale", "logit_bias")
                           for n in changed)
    assert "logit_bias" in changed  # the sigmoid loss's learned bias trains
    assert not any(n.startswith("text_model.final_layer_norm.") for n in changed)
    # the best model saves in SigLIP's own layout and reloads as SigLIP
    again = load_clip(res.best_dir)
    assert again.family.name == "siglip"


# --- every method on sigmoid scores -----------------------------------------------------------

def _sig(logits, positive):
    """SigLIP's binary loss written out: log(1 + exp(-z * logit)) with z = +1 for a positive
    pair and -1 otherwise, summed over the pairs and divided by the rows (the batch)."""
    z = positive.double() * 2 - 1
    return torch.log1p(torch.exp(-z * logits)).sum() / logits.shape[0]


def _eye_then_zeros(b, extra):
    return torch.cat([torch.eye(b, dtype=torch.bool), torch.zeros(b, extra, dtype=torch.bool)], 1)


def _siglip_ctx(table, images, scale, bias):
    from negationclip.models.families import get_family
    from negationclip.train.methods.base import StepContext

    return StepContext(encode_text=lambda ts: torch.stack([table[t] for t in ts]),
                       encode_images=lambda ks: torch.stack([images[k] for k in ks]),
                       cached_image=None, logit_scale=scale, raw_logit_scale=scale,
                       device=torch.device("cpu"), family=get_family("siglip"), logit_bias=bias)


def _ref_conclip(img, cap, neg, dis, s, b):
    """CoN-CLIP's three terms (rows vs [positives | other candidates]) on sigmoid pairs."""
    n = lambda x: F.normalize(x, dim=-1)  # noqa: E731
    img, cap, neg, dis = n(img), n(cap), n(neg), n(dis)
    k = img.shape[0]
    pos = _eye_then_zeros(k, k)
    return (_sig(s * img @ torch.cat([cap, neg]).T + b, pos)
            + _sig(s * cap @ torch.cat([img, dis]).T + b, pos)
            + _sig(s * dis @ torch.cat([neg, cap]).T + b, pos)) / 3


def test_every_method_on_sigmoid_scores_equals_the_reference():
    import functools

    from negationclip.train.methods import get_method
    from negationclip.train.methods.omni import omni_loss
    from negationclip.train.methods.tng import tng_loss
    from tests.train.test_methods_losses import _feats, _rows_and_tables

    rows, table, images = _rows_and_tables()
    s = torch.tensor(9.0, dtype=torch.float64)
    bias = torch.tensor(-2.5, dtype=torch.float64, requires_grad=True)
    img = torch.stack([images[e.image] for e in rows])
    dis = torch.stack([images[e.hard_image] for e in rows])
    cap = torch.stack([table[e.text] for e in rows])
    neg = torch.stack([table[e.hard_texts[0]] for e in rows])
    ctx = _siglip_ctx(table, images, s, bias)
    # conclip
    loss, v = get_method("conclip").loss(ctx, rows)
    assert abs(v - float(_ref_conclip(img, cap, neg, dis, s, bias).detach())) < 1e-6
    loss.backward()
    assert bias.grad is not None and bias.grad != 0  # the bias is in the loss
    # negbench: SigLIP's pair loss (= open_clip's SigLipLoss) + a sigmoid per MCQ option
    m = get_method("negbench")
    m.setup(rows, None)
    _, v = m.loss(ctx, rows)
    n = lambda x: F.normalize(x, dim=-1)  # noqa: E731
    opts = torch.stack([cap, neg], 1)
    mcq_pos = torch.zeros(4, 2, dtype=torch.bool)
    mcq_pos[:, 0] = True
    want = (0.99 * _open_clip_siglip_loss(n(img), n(cap), s, bias)
            + 0.01 * _sig(s * torch.einsum("bf,bnf->bn", img, opts) + bias, mcq_pos))
    assert abs(v - float(want.detach())) < 1e-6
    # tng: an image's three texts are its positives, every other text a negative
    txt3, img3 = _feats(12, seed=31), _feats(4, seed=32)
    pos = torch.zeros(4, 12, dtype=torch.bool)
    for i in range(4):
        pos[i, 3 * i: 3 * i + 3] = True
    got = tng_loss(txt3, img3, "paper", two_way=functools.partial(ctx.two_way_loss, scale=None))
    assert abs(float(got.detach()) - float(_sig(s * n(img3) @ n(txt3).T + bias, pos).detach())) < 1e-6
    # omni: CoN-CLIP terms + the two-way absence term as sigmoid pairs + the cosine hinge
    orig, pres = _feats(4, seed=33), _feats(4, seed=34)
    has = torch.tensor([True, False, True, True])
    cos = lambda a, c: F.cosine_similarity(a, c, dim=-1)  # noqa: E731
    two = torch.stack([cos(img, cap), cos(img, neg)], 1)
    hinge = sum(max(0.0, 0.3 - float(cos(img[i], orig[i]) - cos(img[i], pres[i])))
                for i in range(4) if has[i]) / 3
    want = _ref_conclip(img, cap, neg, dis, s, bias) + 0.5 * _sig(s * two + bias, mcq_pos) + 2.0 * hinge
    got = omni_loss(img, cap, neg, dis, orig, pres, has, absence_weight=0.5, presence_weight=2.0,
                    margin=0.3, choice=ctx.choice_loss)
    assert abs(float(got.detach()) - float(want.detach())) < 1e-6


@pytest.mark.parametrize("method,kw", [
    ("conclip", dict(mine_negative_images=True)),
    ("negbench", dict(train_vision="last-1")),
    ("tng", {}),
    ("omni", dict(mine_negative_images=True)),
])
def test_each_method_trains_only_its_set_on_siglip(dataset, tmp_path, method, kw):
    from negationclip.models import load_clip
    from negationclip.train.methods import get_method
    from negationclip.train.trainable import configure_method_trainable
    from tests.train.test_methods import _cfg, _with_present

    torch.set_num_threads(1)
    root, recs = dataset
    b = load_clip(make_siglip(tmp_path / "siglip"))
    before = {n: p.detach().clone() for n, p in b.model.named_parameters()}
    cfg = _cfg(tmp_path, method, epochs=1, **kw)
    res = finetune(b, _with_present(recs), cfg, tmp_path / method, image_root=root / "images",
                   verbose=False)
    after = dict(res.bundle.model.named_parameters())
    probe = load_clip(make_siglip(tmp_path / "probe"))
    m = get_method(method)
    configure_method_trainable(probe.model, m, cfg, cfg.train_vision or m.train_vision)
    on = {n for n, p in probe.model.named_parameters() if p.requires_grad}
    moved = {n for n in before if not torch.equal(before[n], after[n])}
    assert moved and moved <= on, sorted(moved - on)[:5]
    assert any(n.startswith("text_model.encoder") for n in moved)
    vision = {n for n in moved if n.startswith("vision_model.")}
    if method == "negbench":  # last-1: the last layer, the post norm and the MAP head
        assert vision and all(n.startswith(("vision_model.encoder.layers.1.",
                                            "vision_model.post_layernorm.", "vision_model.head."))
                              for n in vision)
        assert "vision_model.head.probe" in vision
    else:
        assert not vision
    assert res.steps > 0 and again_siglip(res.best_dir)


def again_siglip(folder) -> bool:
    from negationclip.models import load_clip
    return load_clip(folder).family.name == "siglip"


def test_tng_released_labels_are_refused_for_sigmoid_scores(dataset, tmp_path):
    from negationclip.models import load_clip
    from negationclip.utils import NegationClipError

    root, recs = dataset
    b = load_clip(make_siglip(tmp_path / "siglip"))
    cfg = TrainConfig(epochs=1, batch_size=4, method="tng", method_options={"image_labels": "released"},
                      cache_dir=str(tmp_path / "cache"))
    with pytest.raises(NegationClipError, match="image_labels=released.*sigmoid.*image_labels=paper"):
        finetune(b, recs, cfg, tmp_path / "run", image_root=root / "images", verbose=False)
    assert not (tmp_path / "cache").exists()  # refused before any work


def test_live_vision_split_equals_the_full_siglip_tower(dataset, tmp_path):
    from negationclip.models import image_features, load_clip
    from negationclip.models.transform import open_image
    from negationclip.train.vision import LiveVision
    from tests.models._siglip_fixtures import make_siglip2

    root, _ = dataset
    keys = [str(root / "images" / f"{i:03d}.png") for i in range(5)]
    for make, prefix in ((make_siglip, True), (make_siglip2, False)):  # NaFlex: no split
        b = load_clip(make(tmp_path / make.__name__))
        with torch.no_grad():
            want = image_features(b.model, b.transform([open_image(k) for k in keys]))
            lv = LiveVision(b.model, b.transform, torch.device("cpu"), "last-1", n_images=len(keys))
            assert lv.use_prefix is prefix
            torch.testing.assert_close(lv.encode(keys[::-1]), want.flip(0), rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(lv.encode(keys), want, rtol=1e-5, atol=1e-6)
