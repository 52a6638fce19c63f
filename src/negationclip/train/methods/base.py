"""What a training method is: its trainable set, the data fields it needs, its rows, its loss.

The loop (``train/loop.py``) is the same for every method: it reads the records, asks the
method for its rows (``build_rows``), embeds each image once through the shared cache, then
per step hands the method the step's global batch and a :class:`StepContext` that encodes
texts and images. A method writes its loss on the *global* batch as if it ran in one process;
the context makes that exact under torch.distributed: each process encodes only its share of
every list of texts (or images, when vision trains) and gathers the rest without gradient, and
``ctx.finish(loss)`` scales the result so that averaging gradients over processes gives the
single-process gradient (see ``loss.contrastive_loss`` for the argument).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F

from ...utils import NegationClipError
from ..data import CaptionRecord, Example, build_examples


# --- what trains ---------------------------------------------------------------------------

VISION_ALL = ("vision_model.", "visual_projection.")
_LAYER = re.compile(r"^(text|vision)_model\.encoder\.layers\.(\d+)\.")


def parse_train_vision(spec: str) -> tuple[str, int]:
    """``none`` | ``all`` | ``last-K`` -> (kind, K); a bad spec is a clear error."""
    if spec in ("none", "all"):
        return spec, 0
    m = re.fullmatch(r"last-(\d+)", spec or "")
    if not m or int(m.group(1)) < 1:
        raise NegationClipError(f"train config: train_vision must be none, all or last-K (K >= 1), "
                                f"got {spec!r}")
    return "last", int(m.group(1))


def n_layers(model, tower: str) -> int:
    cfg = model.config.text_config if tower == "text" else model.config.vision_config
    return int(cfg.num_hidden_layers)


def vision_trainable(name: str, spec: str, depth: int) -> bool:
    """Is vision parameter ``name`` trained under ``--train-vision spec``?

    ``last-K`` trains the last K encoder layers, the post layer norm and the visual projection
    or SigLIP's attention-pool head (what the frozen prefix feeds); ``all`` the whole tower.
    """
    kind, k = parse_train_vision(spec)
    if kind == "none":
        return False
    if kind == "all":
        return True
    if k > depth:
        raise NegationClipError(f"train_vision last-{k}: the vision tower has only {depth} layers")
    if name.startswith(("visual_projection.", "vision_model.post_layernorm.", "vision_model.head.")):
        return True
    m = _LAYER.match(name)
    return bool(m and m.group(1) == "vision" and int(m.group(2)) >= depth - k)


def text_layer(name: str) -> int | None:
    m = _LAYER.match(name)
    return int(m.group(2)) if m and m.group(1) == "text" else None


# --- the step context ----------------------------------------------------------------------

def _span(n: int, rank: int, world: int) -> tuple[int, int]:
    return rank * n // world, (rank + 1) * n // world


@dataclass
class StepContext:
    """Encoders and constants for one step; every tensor it returns covers the global batch.

    ``text(texts)``: projected text features [len(texts), D], not normalised; this process
    computes (and holds the graph of) only its contiguous share of the list.
    ``image(keys)``: image features [len(keys), D]: the cached, normalised embeddings when the
    vision tower is frozen, else computed now through the transform (its share, gathered).
    ``logit_scale``: exp(logit_scale), its gradient already divided by the number of processes.
    """

    encode_text: Callable[[Sequence[str]], torch.Tensor]        # local texts -> features
    encode_images: Callable[[Sequence[str]], torch.Tensor]      # local keys -> features
    cached_image: Callable[[Sequence[str]], torch.Tensor] | None  # keys -> cached features
    logit_scale: torch.Tensor
    raw_logit_scale: torch.Tensor                               # exp(logit_scale), plain
    device: torch.device
    info: Any = None                                            # distributed.DistInfo
    rank: int = 0
    world: int = 1
    seed: int = 0
    step: int = 0
    options: dict[str, Any] = field(default_factory=dict)
    #: the model family's image-text loss on local features (CLIP: contrastive_loss; SigLIP:
    #: sigmoid_loss with its bias): ``pair_loss(img, txt, extra_text_emb=, extra_image_emb=)``
    pair_loss: Callable[..., torch.Tensor] | None = None
    #: the model family (``models.families``; None: CLIP) and its learned score bias (SigLIP),
    #: the bias's gradient divided by the number of processes like ``logit_scale``'s
    family: Any = None
    logit_bias: torch.Tensor | None = None
    #: unit text features of the model as it was before training, no gradient (only for a
    #: method with ``needs_base_text``): ``base_text(texts)`` -> [len(texts), D]
    base_text: Callable[[Sequence[str]], torch.Tensor] | None = None

    def _family(self):
        if self.family is None:
            from ...models.families import get_family
            return get_family("clip")
        return self.family

    def choice_loss(self, scores: torch.Tensor, targets: torch.Tensor,
                    scale: torch.Tensor | float | None = None) -> torch.Tensor:
        """The family's loss for rows of ``scores`` against their candidates (CLIP: softmax
        cross-entropy; SigLIP: a sigmoid per pair with its bias); ``scale`` defaults to
        ``logit_scale``. A method written with softmax terms calls this for each."""
        return self._family().choice_loss(scores, targets, self.logit_scale if scale is None
                                          else scale, self.logit_bias)

    def two_way_loss(self, scores: torch.Tensor, row_targets: torch.Tensor,
                     col_targets: torch.Tensor, scale: torch.Tensor | float | None = None
                     ) -> torch.Tensor:
        """The family's symmetric term on one pair matrix (CLIP: mean of both softmaxes;
        SigLIP: the pair loss once)."""
        return self._family().two_way_loss(scores, row_targets, col_targets, self.logit_scale
                                           if scale is None else scale, self.logit_bias)

    def _gather(self, local: torch.Tensor, n: int) -> torch.Tensor:
        if self.world == 1:
            return local
        from ..loss import gather_with_grad
        out, _ = gather_with_grad(local)
        if out.shape[0] != n:
            raise RuntimeError(f"gathered {out.shape[0]} rows, expected {n}")
        return out

    def text(self, texts: Sequence[str]) -> torch.Tensor:
        a, b = _span(len(texts), self.rank, self.world)
        return self._gather(self.encode_text(list(texts[a:b])), len(texts))

    def image(self, keys: Sequence[str]) -> torch.Tensor:
        if self.cached_image is not None:
            return self.cached_image(list(keys))
        a, b = _span(len(keys), self.rank, self.world)
        return self._gather(self.encode_images(list(keys[a:b])), len(keys))

    def local_image(self, keys: Sequence[str]) -> torch.Tensor:
        """Features of images this process owns (no gathering)."""
        if self.cached_image is not None:
            return self.cached_image(list(keys))
        return self.encode_images(list(keys))

    def finish(self, loss: torch.Tensor) -> tuple[torch.Tensor, float]:
        """(loss to backpropagate, its true value): ``world * loss`` under torch.distributed."""
        value = float(loss.detach().float().item())
        return (loss * self.world if self.world > 1 else loss), value


def scaled_logit_bias(model, family, world: int) -> torch.Tensor | None:
    """The family's learned score bias (None for CLIP), its gradient divided by ``world``."""
    from ..loss import _scale_grad
    b = family.logit_bias(model)
    if b is not None and world > 1 and b.requires_grad:
        b = _scale_grad(b, 1.0 / world)
    return b


def softmax_choice(scale) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """CLIP's choice term (softmax cross-entropy of ``scale * scores``), for the loss functions'
    defaults; in a run the family's comes from ``StepContext.choice_loss``."""
    return lambda scores, targets: F.cross_entropy(scale * scores, targets)


def scaled_logit_scale(model, world: int) -> torch.Tensor:
    """exp(logit_scale) whose gradient is divided by ``world`` (it is shared by all rows)."""
    from ..loss import _scale_grad
    s = model.logit_scale.exp().float()
    if world > 1 and s.requires_grad:
        s = _scale_grad(s, 1.0 / world)
    return s


# --- the method interface ------------------------------------------------------------------

class Method:
    """One training objective. Subclasses set the class attributes and override what differs.

    ``needs``: the record fields the method cannot run without (checked before any work).
    ``recipe``: ``TrainConfig`` field defaults of the released recipe (``recipe_config``).
    ``options``: the method's own knobs (``--method-option KEY=VALUE``) with their defaults.
    ``train_vision``: the released vision setting (``none``, ``all``, ``last-K``).
    ``uses_instances``: the method reads ``--instances`` (COCO-format objects per image); for
    the others a given file is ignored with a note (``negationclip compare`` passes one file
    to every method).
    ``needs_base_text``: the trainer keeps a frozen copy of the model as it was before training
    and offers its text features as ``StepContext.base_text``.
    """

    name: str = ""
    summary: str = ""
    source: str = ""
    needs: tuple[str, ...] = ()
    recipe: dict[str, Any] = {}
    options: dict[str, Any] = {}
    train_vision: str = "none"
    uses_instances: bool = False
    needs_base_text: bool = False
    #: model families the method is defined for: a method whose softmax terms go through
    #: ``StepContext.choice_loss`` / ``two_way_loss`` (or ``pair_loss``) takes every family
    families: tuple[str, ...] = ("clip",)

    def check_family(self, family) -> None:
        """Refuse, before any work, a model family the method is not defined for."""
        if family.name not in self.families:
            from . import METHODS
            raise NegationClipError(
                f"method {self.name!r} is defined with CLIP's contrastive loss and is not "
                f"available for a {family.name} model; methods for it: "
                + ", ".join(n for n, m in METHODS.items() if family.name in m.families))

    # what learns (text side; the vision side follows --train-vision) --------------------
    def text_trainable(self, name: str, model, cfg) -> bool:
        """Default: every text parameter and the shared scalars (CLIP: the logit scale; SigLIP:
        scale and bias), as in the released CLIP fine-tuning scripts that only lock
        ``model.visual``; the model's family names its text tower and scalars."""
        from ...models.families import family_of
        from ..trainable import is_trainable

        return is_trainable(name, train_logit_scale=cfg.train_logit_scale,
                            freeze_final_layer_norm=cfg.freeze_final_layer_norm,
                            family=family_of(model))

    # data --------------------------------------------------------------------------------
    def check_records(self, records: Sequence[CaptionRecord], cfg) -> None:
        """Fail before any work when a needed field is absent from every record."""
        missing = [f for f in self.needs if records and not any(getattr(r, f, None) for r in records)]
        if missing:  # every missing field at once, each with how to make it
            names = " and ".join(f"'{f}'" for f in missing)
            raise NegationClipError(
                f"method {self.name} needs the record field{'s' if len(missing) > 1 else ''} "
                f"{names}, which no record has; " + "; ".join(FIELD_HELP.get(f, "") for f in missing))

    def build_rows(self, records: Sequence[CaptionRecord], *, image_root, cfg,
                   validation: bool = False) -> tuple[list[Example], Counter]:
        """Training rows; the default is one row per negated caption (NegationCLIP's data)."""
        return build_examples(records, image_root=image_root, mix=cfg.mix,
                              original_ratio=cfg.original_ratio,
                              hard_negatives="none" if validation else cfg.hard_negatives,
                              seed=cfg.seed)

    def row_texts(self, e: Example) -> list[str]:
        """Every text a row may feed the text tower (tokenised once, before training)."""
        return [e.text, *e.hard_texts, *[t for t in e.aux.get("texts", ())]]

    def requires_distractor(self, cfg) -> bool:
        """Rows without a ``hard_image`` are dropped (and counted) when True."""
        return False

    # the objective -----------------------------------------------------------------------
    def loss(self, ctx: StepContext, rows: Sequence[Example]) -> tuple[torch.Tensor, float]:
        raise NotImplementedError

    def resolve_options(self, given: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(given) - set(self.options))
        if unknown:
            known = ", ".join(f"{k}={v!r}" for k, v in self.options.items()) or "none"
            raise NegationClipError(f"method {self.name}: unknown option(s) {unknown}; "
                                    f"its options: {known}")
        out = dict(self.options)
        for k, v in given.items():
            want = type(self.options[k])
            try:
                out[k] = _coerce(v, want)
            except (TypeError, ValueError):
                raise NegationClipError(f"method {self.name}: option {k}={v!r} is not a "
                                        f"{want.__name__}") from None
        return out


def _coerce(v, want):
    if want is bool and isinstance(v, str):
        if v.lower() in ("1", "true", "yes", "on"):
            return True
        if v.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError(v)
    return want(v)


FIELD_HELP = {
    "negated": "records need a negated caption ('negated'; `negationclip generate p1/p2` writes it)",
    "original": "records need the original caption ('original'; plain COCO captions have it as "
                "'caption')",
    "affirmed": "records need the caption stating the negated object's presence ('affirmed'): "
                "`negationclip generate p1` writes it with the rules rewriter, or with an LLM "
                "rewriter that answers the affirmed twin",
    "negative_image": "records need a distractor image ('negative_image', an image where the "
                      "negated object IS present): NegWorld's scene-graph negatives write it "
                      "(`negationclip demo` does; `negationclip.data.negworld.counterfactual."
                      "add_scene_negatives` in Python), or pass --mine-negative-images to pick a training image whose "
                      "captions mention the object",
}


# --- helpers shared by methods ---------------------------------------------------------------

def with_aux(e: Example, **aux) -> Example:
    return replace(e, aux={**e.aux, **aux})


def present_objects(records: Sequence[CaptionRecord], instance_files: Sequence[str]) -> dict:
    """image_id -> names of the objects in it, from COCO-format instances and records' own
    ``present_objects`` lists."""
    from ...data.coco import load_coco_instances

    out: dict[Any, set[str]] = {}
    for path in instance_files:
        inst = load_coco_instances(path)
        for iid in inst.images:
            names = inst.category_names_in_image(iid)
            if names:
                out.setdefault(iid, set()).update(names)
                out.setdefault(str(iid), set()).update(names)
    for r in records:
        if r.present_objects:
            out.setdefault(r.image_id, set()).update(r.present_objects)
    return out


def mentions(name: str, text: str) -> bool:
    return re.search(rf"\b{re.escape(name)}(?:s|es)?\b", text, re.IGNORECASE) is not None


__all__ = ["Method", "StepContext", "parse_train_vision", "vision_trainable", "text_layer",
           "n_layers", "scaled_logit_scale", "scaled_logit_bias", "softmax_choice", "present_objects", "mentions", "with_aux"]
