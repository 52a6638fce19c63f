"""TNG-CLIP (Cai et al., arXiv 2505.18434; ``util.py``, ``train.py``, ``TNGCLIP.py``): negated
captions written during training from the batch itself, no offline negation data.

Per global batch of B (image, caption) rows, with image embeddings from the frozen tower:
each image's nearest other image (cosine); an object noun of that neighbour's caption that the
anchor's caption lacks gives an "align" negation of the anchor's caption ("{cap} with no
{obj}.", 46 templates; "butterfly" when none is found), a whole-caption negation of another
caption gives a "contrast" negation ("There's no {cap} in the image.", 18 templates; both true
of the anchor image), and the caption itself: three texts per image. Texts are cut at their
first ".", lower-cased, then capitalised, as released. Loss, with a fixed temperature 0.07
(the logit scale is not used): text->image CE over the B images (each text's own image), and
image->text over the 3B texts.

Choices (``--method-option``):
- ``image_labels``: ``paper`` (default): each image's three texts are its positives (CE with
  1/3 on each); ``released``: labels drawn by ``torch.randperm(3B)[:B]`` as TNGCLIP.py does
  (it matches images to random texts: it looks like a bug).
- ``contrast_from``: ``nearest`` (default, the neighbour's caption, the ``full_negation`` the
  released code computes) or ``reversed`` (caption ``B-1-i``, what train.py actually feeds).
- Nouns: the released code POS-tags with NLTK (no offline tagger here); a noun is a known
  object name (``--instances`` categories, records' ``object`` / ``present_objects``) found in
  the caption, in order of appearance, kept as written ("dogs"); the first one whose text is
  not a substring of the anchor caption is used (the released code appends every such noun,
  which misaligns objects and captions after the first caption with two).
Recipe: AdamW lr 5e-6, batch 128, 300 steps (train.py's total_steps), vision frozen.

SigLIP: the two softmaxes become SigLIP's pair loss on the [B, 3B] image-text pairs (an image's
three texts +1, every other text -1) with the model's own scale and bias instead of the fixed
temperature; ``image_labels=released`` (random softmax targets) is refused for it.
"""

from __future__ import annotations

import functools
import json
import random
import re
from pathlib import Path
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from ...utils import NegationClipError
from ..data import Example, build_examples
from .base import Method, StepContext, present_objects, softmax_choice

TEMPERATURE = 0.07


@functools.lru_cache(maxsize=1)
def templates() -> dict:
    return json.loads((Path(__file__).parent / "data" / "tng_templates.json").read_text())


def _finish(text: str) -> str:
    return text.lower().capitalize()


def align_negation(caption: str, obj: str, template: str) -> str:
    """'{cap} with no {obj}.'-style negation of an object absent from the caption."""
    return _finish(template.format(obj=obj, cap=caption.split(".")[0]))


def contrast_negation(caption: str, template: str) -> str:
    """Whole-caption negation: 'There's no {cap} in the image.'"""
    return _finish(template.format(cap=caption.split(".")[0]))


def caption_nouns(caption: str, vocab: Sequence[str]) -> list[str]:
    """Known object names in ``caption`` as written (plural kept), in order of appearance."""
    found = []
    for name in vocab:
        for m in re.finditer(rf"\b{re.escape(name)}(?:s|es)?\b", caption, re.IGNORECASE):
            found.append((m.start(), -len(m.group(0)), m.group(0)))
    found.sort()
    out, taken = [], -1
    for start, neglen, word in found:
        if start > taken:  # longest name wins at a position; no overlaps
            out.append(word)
            taken = start - neglen - 1
    return out


def negation_object(anchor: str, neighbour: str, vocab: Sequence[str]) -> str:
    for noun in caption_nouns(neighbour, vocab):
        if noun not in anchor:
            return noun
    return templates()["fallback_object"]


def tng_texts(captions: Sequence[str], nearest: Sequence[int], vocab: Sequence[str],
              rng: random.Random, contrast_from: str = "nearest") -> list[str]:
    """[align_i, contrast_i, caption_i] for each row i (3B texts)."""
    t = templates()
    b = len(captions)
    out = []
    for i, cap in enumerate(captions):
        obj = negation_object(cap, captions[nearest[i]], vocab)
        align = align_negation(cap, obj, rng.choice(t["align"]))
        src = nearest[i] if contrast_from == "nearest" else b - 1 - i
        out += [align, contrast_negation(captions[src], rng.choice(t["contrast"])), cap]
    return out


def tng_loss(text_feats: torch.Tensor, img_feats: torch.Tensor, image_labels: str = "paper",
             generator: torch.Generator | None = None, *,
             two_way: Callable[..., torch.Tensor] | None = None) -> torch.Tensor:
    """``text_feats`` [3B, D] (row i's texts at 3i..3i+2), ``img_feats`` [B, D]. ``two_way`` is
    the family's symmetric term on the [B, 3B] cosines (``StepContext.two_way_loss``); the
    default is the released one: the mean of both softmaxes at temperature 0.07."""
    txt = F.normalize(text_feats, dim=-1)
    img = F.normalize(img_feats, dim=-1)
    b = img.shape[0]
    cos = img @ txt.t()                                       # [B, 3B]
    labels = torch.arange(b, device=img.device)
    if image_labels == "released":
        row = torch.randperm(3 * b, generator=generator)[:b].to(img.device)
    else:  # each image's own three texts are its positives, 1/3 each
        row = torch.zeros(b, 3 * b, device=img.device)
        for k in range(3):
            row[labels, 3 * labels + k] = 1.0 / 3
    col = labels.repeat_interleave(3)
    if two_way is None:
        choice = softmax_choice(1.0 / TEMPERATURE)
        return (choice(cos, row) + choice(cos.t(), col)) / 2
    return two_way(cos, row, col)


class Tng(Method):
    name = "tng"
    families = ("clip", "siglip", "siglip2")  # its symmetric term -> the family's two_way_loss
    summary = "negations written per batch from nearest-image nouns; text tower"
    source = "github:YuliangCai2022/TNG-CLIP util.py, train.py, TNGCLIP.py"
    needs = ("original",)
    # train.py: AdamW(lr=5e-6) defaults, batch 128, total_steps 300; model.visual frozen; the
    # fixed temperature leaves logit_scale without gradient (frozen here: the same weights)
    recipe = dict(lr=5e-6, weight_decay=0.01, batch_size=128, max_steps=300,
                  freeze_final_layer_norm=False, train_logit_scale=False, mix="original")
    options = {"image_labels": "paper", "contrast_from": "nearest"}
    train_vision = "none"
    uses_instances = True

    def __init__(self, options=None):
        self.opts = self.resolve_options(options or {})
        if self.opts["image_labels"] not in ("paper", "released"):
            raise NegationClipError("method tng: image_labels must be paper or released")
        if self.opts["contrast_from"] not in ("nearest", "reversed"):
            raise NegationClipError("method tng: contrast_from must be nearest or reversed")
        self.vocab: list[str] = []

    def check_family(self, family) -> None:
        super().check_family(family)
        if family.pair_loss_kind != "softmax" and self.opts["image_labels"] == "released":
            raise NegationClipError(
                f"method tng: image_labels=released reproduces TNGCLIP.py's random softmax "
                f"targets; a {family.name} model's sigmoid loss labels every pair itself (an "
                "image's three texts +1, the rest -1): use image_labels=paper")

    def check_records(self, records, cfg) -> None:
        super().check_records(records, cfg)
        names = {r.object for r in records if r.object}
        for objs in present_objects(records, cfg.instances).values():
            names |= objs
        self.vocab = sorted(names, key=lambda s: (-len(s), s))
        if records and not self.vocab:
            raise NegationClipError(
                "method tng needs object names to find the nouns of captions: pass --instances "
                "(COCO-format instances of the training images; their category names) or records "
                "with an 'object' or 'present_objects' field")

    def setup(self, train, cfg) -> None:
        self.cfg = cfg

    def build_rows(self, records, *, image_root, cfg, validation=False):
        rows, notes = build_examples(records, image_root=image_root, mix="original", seed=cfg.seed)
        return rows, notes

    def loss(self, ctx: StepContext, rows: Sequence[Example]) -> tuple[torch.Tensor, float]:
        caps = [e.text for e in rows]
        with torch.no_grad():
            img = F.normalize(ctx.image([e.image for e in rows]).float(), dim=-1)
            sim = img @ img.t()
            sim.fill_diagonal_(-float("inf"))
            nearest = sim.argmax(dim=1).tolist()
        tag = f"{ctx.seed}:{ctx.step}:{len(rows)}:{caps[0]}:{caps[-1]}"
        rng = random.Random(tag)
        texts = tng_texts(caps, nearest, self.vocab, rng, self.opts["contrast_from"])
        gen = torch.Generator().manual_seed(random.Random(tag + ":perm").getrandbits(62))
        feats = ctx.text(texts).float()
        img_live = ctx.image([e.image for e in rows]).float()
        # a softmax family keeps the released fixed temperature; a sigmoid score is calibrated
        # by the model's own scale and bias (frozen in the recipe), which 0.07 without a bias
        # would break
        fixed = ctx._family().pair_loss_kind == "softmax"
        two_way = functools.partial(ctx.two_way_loss, scale=1.0 / TEMPERATURE if fixed else None)
        return ctx.finish(tng_loss(feats, img_live, self.opts["image_labels"], gen, two_way=two_way))
