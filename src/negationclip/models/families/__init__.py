"""Model families as plug-ins: one module each, registered by name.

A family says how to recognise its checkpoints (``config.json`` ``model_type``), how to load
them with their own tokenizer and image transform, how to compute text/image features and
its similarity and loss, which parameters form the text tower (what fine-tuning trains) and
the vision tower (what the image-embedding cache fingerprints), and how to save. Everything
downstream asks ``family_of(model)`` instead of special-casing CLIP.
"""

from __future__ import annotations

from ...utils.errors import NegationClipError
from .base import Family

_REGISTRY: dict[str, Family] = {}


def register(family: Family) -> Family:
    _REGISTRY[family.name] = family
    return family


def registry() -> dict[str, Family]:
    _load_builtin()
    return dict(_REGISTRY)


def get_family(name: str) -> Family:
    _load_builtin()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise NegationClipError(f"unknown model family {name!r}; one of {', '.join(_REGISTRY)}") from None


def family_for_model_type(model_type: str | None) -> Family | None:
    _load_builtin()
    return next((f for f in _REGISTRY.values() if model_type in f.model_types), None)


def family_of(model) -> Family:
    """The family of a loaded model (by its config's ``model_type``)."""
    mt = getattr(getattr(model, "config", None), "model_type", None)
    fam = family_for_model_type(mt)
    if fam is None:
        raise NegationClipError(f"{type(model).__name__} (model_type {mt!r}) is not a supported "
                                f"model family; supported: {', '.join(registry())}")
    return fam


def _load_builtin() -> None:
    # every built-in module, always (importing is cached): one imported directly first (e.g.
    # families.siglip for its tokenizer) must not leave the others unregistered
    from . import clip, siglip  # noqa: F401  (modules register themselves)


__all__ = ["Family", "family_for_model_type", "family_of", "get_family", "register", "registry"]
