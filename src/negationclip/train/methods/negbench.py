"""NegBench's fine-tuning (Alhamoud et al., CVPR 2025; their vendored ``open_clip/loss.py``
``ClipLoss`` + ``MCQLoss`` and ``training/train.py``): CLIP's symmetric InfoNCE on negated
captions plus a multiple-choice cross-entropy over each image's options, weighted
``contrastive_loss_weight * clip + mcq_loss_weight * mcq`` (0.99 / 0.01 in the released runs,
``NegCLIP_CC12M_NegFull_ViT-B-32_lr1e-8_clw0.99_mlw0.01``). Both towers train (no lock).

The released MCQ logits are ``logit_scale * einsum('bf,bnf->bn', image, options)`` on the
*unnormalised* ``encode_image`` / ``encode_text`` outputs (open_clip's default
``normalize=False``); that is kept (option ``mcq_normalize`` to normalise). With the vision
tower frozen (``--train-vision none``) the image side is the cache's normalised embedding. Options per image
here: the negated caption (correct) and its affirmed twin (wrong); NegBench draws its MCQ rows
from a separate CSV, here they are the same rows as the contrastive batch.

SigLIP: the contrastive term is SigLIP's pair loss (scale and bias), and the MCQ a sigmoid per
option (the correct one +1, the affirmed twin -1) on the same scores (``mcq_normalize`` as for
CLIP): both ask what NegBench asks, with the family's own objective.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from ..data import Example
from .base import Method, StepContext, softmax_choice
from .conclip import conclip_rows


def clip_loss(img: torch.Tensor, txt: torch.Tensor, scale: torch.Tensor | None = None, *,
              two_way: Callable[..., torch.Tensor] | None = None) -> torch.Tensor:
    """The symmetric image-text term; ``two_way`` is the family's (``StepContext.two_way_loss``:
    SigLIP's pair loss), the default CLIP's mean of both softmaxes of ``scale * cos``."""
    img, txt = F.normalize(img, dim=-1), F.normalize(txt, dim=-1)
    labels = torch.arange(img.shape[0], device=img.device)
    cos = img @ txt.t()
    if two_way is not None:
        return two_way(cos, labels, labels)
    choice = softmax_choice(scale)
    return (choice(cos, labels) + choice(cos.t(), labels)) / 2


def mcq_loss(img: torch.Tensor, options: torch.Tensor, correct: torch.Tensor,
             scale: torch.Tensor | None = None, normalize: bool = False, *,
             choice: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None
             ) -> torch.Tensor:
    """``img`` [B, D], ``options`` [B, N, D], ``correct`` [B] -> each image's choice among its
    options (``choice``: the family's term; default CLIP's cross-entropy of ``scale * dot``)."""
    if normalize:
        img, options = F.normalize(img, dim=-1), F.normalize(options, dim=-1)
    return (choice or softmax_choice(scale))(torch.einsum("bf,bnf->bn", img, options), correct)


class NegBench(Method):
    name = "negbench"
    families = ("clip", "siglip", "siglip2")  # its softmax terms -> the family's
    summary = "CLIP loss + multiple-choice CE (0.99 / 0.01); both towers"
    source = "github:m1k2zoo/negbench benchmarks/src/open_clip/loss.py"
    needs = ("negated", "affirmed")
    # open_clip's training loop (vendored there) caps exp(logit_scale) at 100 after each step
    recipe = dict(lr=1e-8, weight_decay=0.2, freeze_final_layer_norm=False, train_logit_scale=True,
                  clamp_logit_scale=100.0)
    options = {"contrastive_weight": 0.99, "mcq_weight": 0.01, "mcq_normalize": False}
    train_vision = "all"

    def __init__(self, options=None):
        self.opts = self.resolve_options(options or {})

    def setup(self, train, cfg) -> None:
        self.cfg = cfg

    def build_rows(self, records, *, image_root, cfg, validation=False):
        rows, notes = conclip_rows(records, image_root=image_root, cfg=cfg)
        # the wrong MCQ option keeps its commas (conclip_rows strips them for CoN-CLIP)
        aff = {}
        for r in records:
            if r.negated and r.affirmed:
                aff.setdefault(r.negated, r.affirmed)
        return [Example(e.image, e.text, e.kind, (aff.get(e.text, e.hard_texts[0]),), e.hard_image,
                        e.where, e.object) for e in rows], notes

    def loss(self, ctx: StepContext, rows: Sequence[Example]) -> tuple[torch.Tensor, float]:
        b = len(rows)
        feats = ctx.text([e.text for e in rows] + [e.hard_texts[0] for e in rows]).float()
        img = ctx.image([e.image for e in rows]).float()
        options = torch.stack([feats[:b], feats[b:]], dim=1)        # [B, 2, D], correct first
        correct = torch.zeros(b, dtype=torch.long, device=img.device)
        o = self.opts
        loss = (o["contrastive_weight"] * clip_loss(img, feats[:b], two_way=ctx.two_way_loss)
                + o["mcq_weight"] * mcq_loss(img, options, correct, normalize=o["mcq_normalize"],
                                             choice=ctx.choice_loss))
        return ctx.finish(loss)
