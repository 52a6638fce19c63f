"""Omni-NegCLIP (Xu, arXiv 2603.29258; no released code): only the front of the text tower
learns (token and position embeddings, text layers 0-5 of 12; the first half for other
depths), with three terms:
- absence data (CoN-CLIP's loss, see ``conclip.py``): image, negated caption "X with no Y" (true),
  its affirmed twin "X with Y" (false), the distractor image that shows Y;
- absence negation: a two-way cross-entropy per image between the true (negated) caption and
  its affirmed twin, ``CE(s [cos(I, neg), cos(I, aff)], 0)``;
- presence negation: a caption that negates an object the image DOES show ("X with no P", P
  present; made by putting P in place of Y in the negated caption) must score below the
  original caption by a margin: ``relu(m - cos(I, orig) + cos(I, presence))``, averaged over
  the rows that have one.
``L = conclip + absence_weight * two_way + presence_weight * hinge``. The objects present in an
image come from ``--instances`` (COCO-format) or the records' ``present_objects``.
Weights and margin are this implementation's (the paper's values are not public in a form we
could read); the recipe's lr / batch follow NegationCLIP's.

SigLIP: the CoN-CLIP terms and the two-way absence term are the family's pair loss (a sigmoid
per pair with the model's bias: negated caption +1, affirmed twin -1); the presence hinge stays
on cosines (SigLIP's score is monotone in the cosine).
"""

from __future__ import annotations

import random
import re
from typing import Sequence

import torch
import torch.nn.functional as F

from ...utils import NegationClipError
from ..data import Example
from .base import StepContext, mentions, present_objects, softmax_choice, text_layer, with_aux
from .conclip import ConClip, conclip_loss, conclip_rows


def presence_negation(negated: str, obj: str, present: Sequence[str], original: str,
                      rng: random.Random) -> str | None:
    """``negated`` with the absent object ``obj`` replaced by an object the image shows (one not
    named in ``original``, else any), or None when ``obj`` is not written in ``negated``."""
    cands = sorted(p for p in present if p != obj)
    if not cands:
        return None
    unnamed = [p for p in cands if not mentions(p, original)]
    p = rng.choice(unnamed or cands)
    pat = re.compile(rf"\b{re.escape(obj)}(?=(?:s|es)?\b)", re.IGNORECASE)
    if not pat.search(negated):
        return None
    return pat.sub(p, negated, count=1)


def omni_loss(img, neg, aff, distractor, orig, pres, has_pres, scale=None, *, absence_weight=1.0,
              presence_weight=1.0, margin=0.2, choice=None):
    """All [B, D] (``orig``/``pres`` rows where ``has_pres`` is False are ignored). ``choice``:
    the family's term (``StepContext.choice_loss``), default CLIP's softmax of ``scale * cos``;
    the presence hinge is on cosines, which every family's score orders alike."""
    choice = choice or softmax_choice(scale)
    loss = conclip_loss(img, neg, aff, distractor, choice=choice)
    i, n, a = (F.normalize(x, dim=-1) for x in (img, neg, aff))
    two = torch.stack([(i * n).sum(-1), (i * a).sum(-1)], dim=1)
    loss = loss + absence_weight * choice(
        two, torch.zeros(i.shape[0], dtype=torch.long, device=i.device))
    if presence_weight and bool(has_pres.any()):
        o, p = F.normalize(orig, dim=-1), F.normalize(pres, dim=-1)
        gap = (i * o).sum(-1) - (i * p).sum(-1)
        hinge = F.relu(margin - gap)[has_pres].mean()
        loss = loss + presence_weight * hinge
    return loss


class Omni(ConClip):
    name = "omni"
    families = ("clip", "siglip", "siglip2")  # softmax terms -> the family's choice_loss
    summary = "CoN-CLIP loss + absence two-way CE + presence hinge; front text layers only"
    source = "arXiv 2603.29258 (no code released)"
    needs = ("negated", "affirmed", "original")
    recipe = dict(lr=1e-6, batch_size=512, epochs=15, train_logit_scale=False)
    options = {"absence_weight": 1.0, "presence_weight": 1.0, "margin": 0.2}
    train_vision = "none"
    uses_instances = True

    def text_trainable(self, name, model, cfg) -> bool:
        from .base import n_layers
        if name.startswith(("text_model.embeddings.token_embedding.",
                            "text_model.embeddings.position_embedding.")):
            return True
        k = text_layer(name)
        depth = n_layers(model, "text")
        return k is not None and k < max(1, round(depth * 6 / 12))

    def check_records(self, records, cfg) -> None:
        super().check_records(records, cfg)
        self.present = present_objects(records, cfg.instances)
        if records and self.opts["presence_weight"] and not any(
                self.present.get(r.image_id) for r in records):
            raise NegationClipError(
                "method omni needs the objects present in each image for its presence-negation "
                "term ('present_objects'): pass --instances (COCO-format instances of the training "
                "images, e.g. NegWorld's instances_train.json) or give records a 'present_objects' "
                "list; or train without that term (--method-option presence_weight=0)")

    def build_rows(self, records, *, image_root, cfg, validation=False):
        rows, notes = conclip_rows(records, image_root=image_root, cfg=cfg)
        byneg = {}
        for r in records:
            if r.negated:
                byneg.setdefault(r.negated, r)
        rng = random.Random(cfg.seed)
        out = []
        for e in rows:
            r = byneg.get(e.text)
            pres = None
            if r is not None and r.object and r.original:
                objs = self.present.get(r.image_id) or ()
                pres = presence_negation(r.negated, r.object, sorted(objs), r.original, rng)
            if pres is None:
                notes["rows without a presence negation (no present object to negate)"] += 1
            out.append(with_aux(e, original=(r.original if r is not None else None) or e.text,
                                presence=pres))
        return out, notes

    def row_texts(self, e: Example) -> list[str]:
        return [e.text, *e.hard_texts] + [t for t in (e.aux.get("original"), e.aux.get("presence"))
                                          if t]

    def loss(self, ctx: StepContext, rows: Sequence[Example]) -> tuple[torch.Tensor, float]:
        b = len(rows)
        has = [bool(e.aux.get("presence")) for e in rows]
        texts = ([e.text for e in rows] + [e.hard_texts[0] for e in rows]
                 + [e.aux["original"] for e in rows]
                 + [e.aux["presence"] or e.text for e in rows])
        f = ctx.text(texts).float()
        ims = ctx.image([e.image for e in rows] + [e.hard_image for e in rows]).float()
        o = self.opts
        loss = omni_loss(ims[:b], f[:b], f[b:2 * b], ims[b:], f[2 * b:3 * b], f[3 * b:],
                         torch.tensor(has, device=f.device),
                         absence_weight=o["absence_weight"], presence_weight=o["presence_weight"],
                         margin=o["margin"], choice=ctx.choice_loss)
        return ctx.finish(loss)
