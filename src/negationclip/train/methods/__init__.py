"""Training methods as plug-ins: one module per published objective, registered by name.

Each method (a ``base.Method`` subclass) declares its trainable set, the record fields it
needs, how records become rows, its loss and its released recipe; ``train/loop.py`` runs any
of them with the same data, cache, checkpoint, resume and distributed machinery.
``negationclip train --method NAME``; in Python ``TrainConfig(method=NAME)`` or
``recipe_config(NAME, **overrides)`` (the released recipe with your overrides).
"""

from __future__ import annotations

from typing import Any

from ...utils import NegationClipError
from ..config import METHOD_NAMES
from .base import Method, StepContext
from .conclip import ConClip
from .negationclip import NegationClip
from .negbench import NegBench
from .omni import Omni
from .tng import Tng

METHODS: dict[str, type[Method]] = {m.name: m for m in (NegationClip, ConClip, NegBench, Tng, Omni)}
assert tuple(METHODS) == METHOD_NAMES, "config.METHOD_NAMES must list the registry (the CLI reads it)"


def method_names() -> list[str]:
    return list(METHODS)


def get_method(name: str, options: dict[str, Any] | None = None) -> Method:
    """A fresh instance of method ``name`` (methods keep per-run state)."""
    cls = METHODS.get(name)
    if cls is None:
        raise NegationClipError(f"unknown training method {name!r}; known: {', '.join(METHODS)}")
    return cls(options or {})


def recipe_config(name: str, *, recipe: str = "paper", **overrides):
    """``TrainConfig`` of run recipe ``recipe`` (``TrainConfig.recipe``: ``paper`` or
    ``negationclip``), with method ``name``'s released recipe on top, then ``overrides``."""
    from ..config import TrainConfig

    cls = METHODS.get(name)
    if cls is None:
        raise NegationClipError(f"unknown training method {name!r}; known: {', '.join(METHODS)}")
    return TrainConfig.recipe(recipe, **{**cls.recipe, "method": name, **overrides})


__all__ = ["METHODS", "Method", "StepContext", "get_method", "method_names", "recipe_config"]
