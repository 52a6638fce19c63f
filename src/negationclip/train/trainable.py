"""What learns in NegationCLIP fine-tuning, stated once and explicitly.

The released script freezes ``model.visual`` (the vision tower and its projection) and
``ln_final`` (the final text layer norm); everything else in the OpenAI model trains: token
and position embeddings, the text transformer, ``text_projection`` and ``logit_scale``.
In a Hugging Face ``CLIPModel`` those are:
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..utils import NegationClipError

FROZEN_ALWAYS = ("vision_model.", "visual_projection.")
FINAL_LN = "text_model.final_layer_norm."
TEXT = ("text_model.", "text_projection.")


@dataclass
class TrainableSummary:
    trainable: list[str]
    frozen: list[str]
    n_trainable: int
    n_frozen: int
    train_vision: str = "none"

    def describe(self) -> str:
        if self.train_vision != "none" or not any(n.startswith(TEXT) for n in self.trainable) or \
                any(n.startswith(TEXT) for n in self.frozen if not n.startswith(FINAL_LN)):
            vis = sum(n.startswith(FROZEN_ALWAYS) for n in self.trainable)
            txt = sum(n.startswith(TEXT) for n in self.trainable)
            return (f"trainable {self.n_trainable / 1e6:.2f}M parameters in {len(self.trainable)} "
                    f"tensors ({txt} text, {vis} vision (--train-vision {self.train_vision})"
                    f"{', logit scale' if 'logit_scale' in self.trainable else ''}); frozen "
                    f"{self.n_frozen / 1e6:.2f}M in {len(self.frozen)} tensors")
        return (f"trainable {self.n_trainable / 1e6:.2f}M parameters in {len(self.trainable)} tensors "
                f"(text encoder{', logit scale' if 'logit_scale' in self.trainable else ''}); "
                f"frozen {self.n_frozen / 1e6:.2f}M (vision tower, visual projection"
                f"{', final text layer norm' if any(n.startswith(FINAL_LN) for n in self.frozen) else ''}"
                f"{', logit scale' if 'logit_scale' in self.frozen else ''})")


def is_trainable(name: str, *, train_logit_scale: bool = True,
                 freeze_final_layer_norm: bool = True, family=None) -> bool:
    """``family`` (models.families; default CLIP) names the text and vision towers and the
    shared scalars (CLIP: logit_scale; SigLIP: logit_scale and logit_bias)."""
    frozen = family.vision_prefixes if family is not None else FROZEN_ALWAYS
    text = family.text_prefixes if family is not None else TEXT
    scalars = family.scalars if family is not None else ("logit_scale",)
    if name.startswith(frozen):
        return False
    if name in scalars:
        return train_logit_scale
    if name.startswith(FINAL_LN):
        return not freeze_final_layer_norm
    return name.startswith(text)


def configure_trainable(model: torch.nn.Module, *, train_logit_scale: bool = True,
                        freeze_final_layer_norm: bool = True) -> TrainableSummary:
    """Set ``requires_grad`` on every parameter of a model of a registered family (its text
    tower and shared scalars train, its vision tower is frozen); return what trains."""
    from ..models.families import family_of

    _check_two_towers(model)
    family = family_of(model)
    return _apply(model, lambda n: is_trainable(
        n, train_logit_scale=train_logit_scale, freeze_final_layer_norm=freeze_final_layer_norm,
        family=family))


def _check_two_towers(model: torch.nn.Module) -> None:
    """The trainable rules name parameters by tower: refuse a model without both."""
    names = [n for n, _ in model.named_parameters()]
    if not any(n.startswith("text_model.") for n in names) or not any(
            n.startswith("vision_model.") for n in names):
        raise NegationClipError(
            f"expected a Hugging Face CLIPModel/SiglipModel (text_model + vision_model), got "
            f"{type(model).__name__}")


def _apply(model: torch.nn.Module, rule, *extra) -> TrainableSummary:
    """Set ``requires_grad`` of every parameter from ``rule(name)``; return what trains."""
    tr, fr = [], []
    n_tr = n_fr = 0
    for n, p in model.named_parameters():
        on = bool(rule(n))
        p.requires_grad_(on)
        if on:
            tr.append(n)
            n_tr += p.numel()
        else:
            fr.append(n)
            n_fr += p.numel()
    return TrainableSummary(tr, fr, n_tr, n_fr, *extra)


def configure_method_trainable(model: torch.nn.Module, method, cfg, train_vision: str = "none"
                               ) -> TrainableSummary:
    """Set ``requires_grad`` from a training method's text-side rule and ``train_vision``
    (``none`` | ``all`` | ``last-K``); return what trains."""
    from .methods.base import n_layers, vision_trainable

    _check_two_towers(model)
    depth = n_layers(model, "vision")
    return _apply(model, lambda n: vision_trainable(n, train_vision, depth)
                  if n.startswith(FROZEN_ALWAYS) else method.text_trainable(n, model, cfg),
                  train_vision)


def trainable_parameters(model: torch.nn.Module) -> list[tuple[str, torch.nn.Parameter]]:
    return [(n, p) for n, p in model.named_parameters() if p.requires_grad]
