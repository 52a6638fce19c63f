"""The NegWorld vocabulary: shape categories grouped into co-occurrence contexts (like fork and
knife: a scene usually draws its shapes from one context, so "plausible but absent" means a
shape of the scene's context that is not in it), colours, sizes and parts."""

from __future__ import annotations

# context -> categories; a scene picks one context and draws most of its shapes from it.
CONTEXTS: dict[str, tuple[str, ...]] = {
    "sky": ("star", "moon", "circle"),
    "cards": ("heart", "diamond", "cross"),
    "blocks": ("square", "triangle", "hexagon", "arrow"),
}
CATEGORIES: tuple[str, ...] = tuple(c for cats in CONTEXTS.values() for c in cats)
CONTEXT_OF: dict[str, str] = {c: ctx for ctx, cats in CONTEXTS.items() for c in cats}
CATEGORY_IDS: dict[str, int] = {c: i + 1 for i, c in enumerate(CATEGORIES)}  # COCO ids from 1

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (214, 40, 40),
    "green": (38, 160, 64),
    "blue": (40, 90, 220),
    "yellow": (238, 200, 28),
    "purple": (140, 62, 180),
    "orange": (245, 128, 28),
}
SIZES: tuple[str, ...] = ("small", "large")
# parts an object may have or lack; the phrase used in captions, questions and negations.
PARTS: dict[str, str] = {"dot": "a dot", "border": "a black border"}

_PLURAL_ES = ("cross",)


def plural(word: str) -> str:
    return word + "es" if word in _PLURAL_ES else word + "s"


def article(word: str) -> str:
    """``a`` or ``an`` for the word that follows."""
    return "an" if word[:1].lower() in "aeiou" else "a"


NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six")
