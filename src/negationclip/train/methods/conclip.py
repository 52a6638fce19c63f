"""CoN-CLIP (Singh et al., WACV 2025; ``src/training_utils/loss_functions.py``,
``CustomLossWithNegatives``): per row an image I, its caption c, a text n that is false of I,
and a distractor image D of which n is true. With T = [c_1..c_B, n_1..n_B], V = [I, D],
T_rev = [n, c], labels 0..B-1 and normalised features,
    L = (CE(s I T^T) + CE(s c V^T) + CE(s D T_rev^T)) / 3.
Vision locked (``--lock-image-encoder on``), everything else of the model trains (text tower
with its final layer norm, and the logit scale).

Data mapping. CC-Neg's negative prompt negates something the image shows ("a man not riding a
horse"), so it is false of I and true of its distractor. In negationclip's records the texts
with those roles are: c = the negated caption ("X with no Y", true of I), n = its affirmed twin
("X with Y", false of I), D = the record's ``negative_image`` (the scene with Y put in, of which
the affirmed caption is true) or, with --mine-negative-images, a training image showing Y.
Commas are removed from n, as their dataset code does with the negative prompt.

SigLIP: each cross-entropy term becomes the family's pair loss over the same rows and
candidates (every (row, candidate) pair a sigmoid of ``scale * cos + bias``, +1 for the row's
positive, -1 for the rest, divided by the rows): the false twin stays a negative of the image,
the distractor a negative of the caption, and the distractor still matches the twin.
"""

from __future__ import annotations

from collections import Counter
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from ...utils import NegationClipError
from ..data import Example, build_examples
from .base import FIELD_HELP, Method, StepContext, softmax_choice


def conclip_loss(img: torch.Tensor, cap: torch.Tensor, neg: torch.Tensor, distractor: torch.Tensor,
                 scale: torch.Tensor | None = None, *,
                 choice: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None
                 ) -> torch.Tensor:
    """The three-term loss on row-aligned [B, D] features (normalised here). ``choice`` is the
    family's term for rows of cosines against their candidates (``StepContext.choice_loss``);
    the default is the released softmax cross-entropy of ``scale * cos``."""
    choice = choice or softmax_choice(scale)
    img, cap, neg, distractor = (F.normalize(x, dim=-1) for x in (img, cap, neg, distractor))
    b = img.shape[0]
    labels = torch.arange(b, device=img.device)
    texts = torch.cat([cap, neg])
    texts_rev = torch.cat([neg, cap])
    images = torch.cat([img, distractor])
    l1 = choice(img @ texts.t(), labels)
    l2 = choice(cap @ images.t(), labels)
    l3 = choice(distractor @ texts_rev.t(), labels)
    return (l1 + l2 + l3) / 3


def conclip_rows(records, *, image_root, cfg) -> tuple[list[Example], Counter]:
    """One row per record with a negated caption and an affirmed twin: text = negated,
    hard_texts = (affirmed without commas,), hard_image = the distractor (if known yet)."""
    rows, notes = build_examples(records, image_root=image_root, mix="negated",
                                 hard_negatives="affirmed", seed=cfg.seed)
    out = []
    for e in rows:
        if not e.hard_texts:
            notes["rows without an 'affirmed' caption (skipped)"] += 1
            continue
        out.append(Example(e.image, e.text, e.kind, (e.hard_texts[0].replace(",", ""),),
                           e.hard_image, e.where, e.object))
    notes.pop("negated rows without an 'affirmed' caption for a hard negative", None)
    return out, notes


class ConClip(Method):
    name = "conclip"
    families = ("clip", "siglip", "siglip2")  # each softmax term -> the family's choice_loss
    summary = "three-way CE over captions, false twins and distractor images; text tower"
    source = "github:jaisidhsingh/CoN-CLIP src/training_utils/loss_functions.py"
    needs = ("negated", "affirmed")
    # src/training_utils/helpers.py defaults and run_finetuning.sh
    recipe = dict(lr=1e-6, weight_decay=0.2, batch_size=200, epochs=5, warmup_steps=50,
                  schedule="cosine", freeze_final_layer_norm=False, train_logit_scale=True,
                  clamp_logit_scale=100.0)  # their open_clip training caps exp(logit_scale) at 100
    train_vision = "none"

    def __init__(self, options=None):
        self.opts = self.resolve_options(options or {})

    def setup(self, train, cfg) -> None:
        self.cfg = cfg

    def check_records(self, records, cfg) -> None:
        super().check_records(records, cfg)
        if records and not cfg.mine_negative_images and not any(r.negative_image for r in records):
            raise NegationClipError(f"method {self.name} needs the record field 'negative_image', "
                                    f"which no record has; {FIELD_HELP['negative_image']}")

    def build_rows(self, records, *, image_root, cfg, validation=False):
        return conclip_rows(records, image_root=image_root, cfg=cfg)

    def requires_distractor(self, cfg) -> bool:
        return True

    def loss(self, ctx: StepContext, rows: Sequence[Example]) -> tuple[torch.Tensor, float]:
        b = len(rows)
        feats = ctx.text([e.text for e in rows] + [e.hard_texts[0] for e in rows]).float()
        ims = ctx.image([e.image for e in rows] + [e.hard_image for e in rows]).float()
        loss = conclip_loss(ims[:b], feats[:b], feats[b:], ims[b:], choice=ctx.choice_loss)
        return ctx.finish(loss)
