"""SigLIP fine-tuning: the sigmoid loss (against a port of open_clip's SigLipLoss) and one run
that changes only the text tower."""

from __future__ import annotations

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


def test_methods_written_for_clip_refuse_a_siglip_model(dataset, tmp_path):
    import pytest

    from negationclip.models import load_clip
    from negationclip.utils import NegationClipError

    root, recs = dataset
    b = load_clip(make_siglip(tmp_path / "siglip"))
    cfg = TrainConfig(epochs=1, batch_size=4, method="conclip", cache_dir=str(tmp_path / "cache"))
    with pytest.raises(NegationClipError, match="not available for a siglip model; methods for it: negationclip"):
        finetune(b, recs, cfg, tmp_path / "run", image_root=root / "images", verbose=False)
