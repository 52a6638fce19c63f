"""Remove the negation from a query, so the page can show "a star without a dot" beside
"a star with a dot".

The rule is deliberately small and documented (``REWRITES``, applied in order, whole words,
case-insensitive): "with no X" / "without X" / "lacking (any) X" / "free of X" / "devoid of X"
-> "with X"; "and no X" / "but not X" -> "and X"; "there is no X" -> "there is a X";
"there are no X" -> "there are X"; "does not V" / "doesn't V" -> "Vs" ("has" for "have"); "do not V" / "don't V"
-> "V"; "is/are/was/were not" (and "isn't", "aren't") -> "is/are/was/were"; "X absent" /
"X missing" -> "X present"; any other "no" / "not" is dropped. It covers NegWorld's training
and held-out phrasings and the common English ones; a query it finds no negation in gives None.
"""

from __future__ import annotations

import re

REWRITES: tuple[tuple[str, str], ...] = (
    (r"\bthere is no\b", "there is a"),
    (r"\bthere are no\b", "there are"),
    (r"\b(?:does not|doesn't) have\b", "has"),
    (r"\b(?:does not|doesn't) (\w+)\b", r"\1s"),
    (r"\b(?:do not|don't|did not|didn't) (\w+)\b", r"\1"),
    (r"\b(is|are|was|were) not\b", r"\1"),
    (r"\bisn't\b", "is"),
    (r"\baren't\b", "are"),
    (r"\bwasn't\b", "was"),
    (r"\bweren't\b", "were"),
    (r"\bbut not\b", "and"),
    (r"\bwith no\b", "with"),
    (r"\bwithout\b", "with"),
    (r"\band no\b", "and"),
    (r"\blacking(?: any)?\b", "with"),
    (r"\b(?:free|devoid) of\b", "with"),
    (r"\b(?:absent|missing)\b", "present"),
    (r"\bno\b", ""),
    (r"\bnot\b", ""),
)
_COMPILED = tuple((re.compile(p, re.IGNORECASE), r) for p, r in REWRITES)


def remove_negation(query: str) -> str | None:
    """``query`` with its negation turned affirmative (see the module docstring), or None when
    the rule finds no negation in it."""
    text = query
    for pattern, repl in _COMPILED:
        text = pattern.sub(repl, text)
    text = re.sub(r"\s+([,;.])", r"\1", re.sub(r"\s{2,}", " ", text)).strip()
    if text == query.strip():
        return None
    if query[:1].isupper():
        text = text[:1].upper() + text[1:]
    return text
