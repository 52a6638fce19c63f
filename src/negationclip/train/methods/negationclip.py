"""NegationCLIP (Park et al., ICCV 2025; released ``clip_finetune.py``): CLIP's symmetric InfoNCE
between images and negation-inclusive captions, text tower only (final text layer norm frozen).

This project's additions stay available: hard-negative texts (original / affirmed caption) in
the image->text softmax, a negative image in the text->image softmax, and an optional hinge.
Two more terms are options (``--method-option``), off by default: ``prototype_weight`` adds,
beside the per-pair hinge on negative images, a hinge toward the batch's mean (image -
negative image) direction of the rows negating the same object, or the same attribute for
records that carry ``negated_property`` (``loss.prototype_hinge``);
``keep_weight`` keeps the original captions' text features at the base model's
(``loss.keep_loss``), which holds image-text retrieval when the hinges are heavy.
"""

from __future__ import annotations

from typing import Sequence

import torch

from ...utils import NegationClipError
from .. import distributed as D
from ..data import Example, shard
from ..loss import contrastive_loss, hard_negative_hinge, keep_loss, loss_value, prototype_hinge
from .base import FIELD_HELP, Method, StepContext


def _negates(e: Example) -> str | None:
    """What a row's caption negates, the prototype term's group: its object ("dog"), else its
    negated attribute or part ("color:yellow"; kinds never collide with object names)."""
    if e.object:
        return e.object
    return f"property:{e.negated_property}" if e.negated_property else None


class NegationClip(Method):
    name = "negationclip"
    families = ("clip", "siglip", "siglip2")  # its loss is the family's (ctx.pair_loss)
    summary = "CLIP loss on negated captions; text tower only (the paper's recipe)"
    source = "github:parkquasar/NegationCLIP clip_finetune.py"
    needs = ()
    recipe = {}
    train_vision = "none"
    # prototype_weight: times hard_negative_weight, like the per-pair hinge it sits beside;
    # prototype_margin: on the cosine between a "no Y" text and Y's mean direction
    options = {"prototype_weight": 0.0, "prototype_margin": 0.2, "keep_weight": 0.0}

    def __init__(self, options=None):
        self.opts = self.resolve_options(options or {})
        self.use_hard_texts = False
        self.use_hard_images = False

    @property
    def needs_base_text(self) -> bool:
        return self.opts["keep_weight"] > 0

    def check_records(self, records, cfg) -> None:
        super().check_records(records, cfg)
        if records and cfg.mix in ("negated", "ratio") and not any(r.negated for r in records):
            raise NegationClipError(
                f"method {self.name} with --mix {cfg.mix} needs the record field 'negated', which "
                f"no record has; {FIELD_HELP['negated']}; or train on the original captions "
                "with --mix original")

    def setup(self, train: Sequence[Example], cfg) -> None:
        # collectives must match across processes: decide once, from the whole training set
        self.cfg = cfg
        # records' own negative_texts (presence negation) count even with hard_negatives none
        self.use_hard_texts = cfg.hard_negatives != "none" or any(e.hard_texts for e in train)
        self.use_hard_images = any(e.hard_image for e in train)

    def loss(self, ctx: StepContext, rows: Sequence[Example]) -> tuple[torch.Tensor, float]:
        batch = rows  # the global batch: group ids mean the same on every process
        rows = [rows[i] for i in shard(range(len(rows)), ctx.rank, ctx.world)]
        texts = [e.text for e in rows]
        hard, owner = [], []
        for i, e in enumerate(rows):
            for t in e.hard_texts:
                hard.append(t)
                owner.append(i)
        feats = ctx.encode_text(texts + hard).float()
        txt, hard_emb = feats[: len(texts)], feats[len(texts):]
        img = ctx.local_image([e.image for e in rows])
        hard_keys = [e.hard_image for e in rows if e.hard_image]
        hard_img = ctx.local_image(hard_keys) if hard_keys else img[:0]
        extra = dict(extra_text_emb=hard_emb if self.use_hard_texts else None,
                     extra_image_emb=hard_img if self.use_hard_images else None)
        if ctx.pair_loss is not None:  # the model family's loss (SigLIP: sigmoid with bias)
            loss = ctx.pair_loss(img, txt, **extra)
        else:
            loss = contrastive_loss(img, txt, ctx.raw_logit_scale, **extra)
        value = loss_value(loss)
        margin = self.cfg.hard_negative_margin
        if margin is not None:
            hinge = torch.zeros((), device=ctx.device)
            if self.use_hard_texts:  # image -> text: cos(img, negated) > cos(img, hard text)
                owner_t = torch.tensor(owner, dtype=torch.long, device=ctx.device)
                hinge = hinge + hard_negative_hinge(img, txt, hard_emb, owner_t, margin)
            if self.use_hard_images:  # text -> image: cos(negated, img) > cos(negated, hard img)
                owner_i = torch.tensor([i for i, e in enumerate(rows) if e.hard_image],
                                       dtype=torch.long, device=ctx.device)
                hinge = hinge + hard_negative_hinge(txt, img, hard_img, owner_i, margin)
            hinge = self.cfg.hard_negative_weight * hinge
            loss = loss + hinge
            # each process holds its own rows' share (times world): sum the shares
            value += D.all_sum(float(hinge.detach()), ctx.info, ctx.device) / ctx.world
        extra_terms = torch.zeros((), device=ctx.device)
        if self.opts["prototype_weight"] and self.use_hard_images:
            with_img = [i for i, e in enumerate(rows) if e.hard_image]
            names = {o: k for k, o in enumerate(sorted({_negates(e) for e in batch} - {None}))}
            groups = [names.get(_negates(rows[i]), -1) for i in with_img]
            ix = torch.tensor(with_img, dtype=torch.long, device=ctx.device)
            extra_terms = extra_terms + self.cfg.hard_negative_weight * self.opts["prototype_weight"] * \
                prototype_hinge(txt[ix], img[ix], hard_img, groups, self.opts["prototype_margin"])
        if self.opts["keep_weight"]:
            orig = [i for i, e in enumerate(rows) if e.kind == "original"]
            ix = torch.tensor(orig, dtype=torch.long, device=ctx.device)
            extra_terms = extra_terms + self.opts["keep_weight"] * keep_loss(
                txt[ix], ctx.base_text([rows[i].text for i in orig]))
        if self.opts["prototype_weight"] or self.opts["keep_weight"]:
            loss = loss + extra_terms
            value += D.all_sum(float(extra_terms.detach()), ctx.info, ctx.device) / ctx.world
        return loss, value
