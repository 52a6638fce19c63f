"""Prompt sets of the LLM roles, registered by name (``--prompts NAME``).

- ``released`` (default): the released NegationCLIP ``src/data_generation.py`` turn for turn,
  with its sampling and answer rules (``released.py``);
- ``negationclip``: this project's own wording, grouped proposals and robust parsing
  (``negationclip.py``).

Each set's ``version`` is stored in every record and in the ledger header; a change to a
set's prompts or parsing must bump it. Runs whose roles are all ``rules`` record
``PROMPT_VERSION`` (no prompt is sent).
"""

from __future__ import annotations

from ...utils import NegationClipError
from .base import RANDOM_OBJECT_PROMPT, RANDOM_OBJECT_SYSTEM, PromptSet, VerifyPrompt
from .negationclip import VERSION as PROMPT_VERSION
from .negationclip import NegationClipPrompts
from .released import ReleasedPrompts

PROMPT_SETS: dict[str, PromptSet] = {p.name: p for p in (ReleasedPrompts(), NegationClipPrompts())}
PROMPT_SET_NAMES = tuple(PROMPT_SETS)
DEFAULT_PROMPTS = "released"


def get_prompt_set(name: str | PromptSet | None = None) -> PromptSet:
    """The set named ``name`` (None: the default, ``released``)."""
    if isinstance(name, PromptSet):
        return name
    pset = PROMPT_SETS.get(name or DEFAULT_PROMPTS)
    if pset is None:
        raise NegationClipError(f"unknown prompt set {name!r}; choose from {', '.join(PROMPT_SETS)}")
    return pset


__all__ = ["PROMPT_SETS", "PROMPT_SET_NAMES", "DEFAULT_PROMPTS", "PROMPT_VERSION", "PromptSet",
           "VerifyPrompt", "RANDOM_OBJECT_PROMPT", "RANDOM_OBJECT_SYSTEM", "get_prompt_set"]
