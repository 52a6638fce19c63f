"""Negation phrasings: which cues training data may use, which are held out for the test.

``TRAIN_NEGATION_CUES`` are the phrasings that training text may contain (generation's rule-based
rewriter, NegWorld's training-style negation pairs). ``HELDOUT_CUES`` never appear in any
training text: the ``heldout_phrasing`` records of ``negation_pairs.json`` use them to measure
whether a model generalises beyond the phrasings it was tuned on. Note "not" is a training cue
while "but not" is held out: check texts with :func:`uses_heldout_cue`, which matches whole
held-out phrases only.

``NEGATION_WORDS`` is the wider list that positive captions must avoid entirely, as web captions
almost never negate.
"""

from __future__ import annotations

import re

TRAIN_NEGATION_CUES: tuple[str, ...] = (
    "no", "not", "without", "there is no", "there are no", "does not", "doesn't", "is not",
    "isn't", "are not", "aren't",
)
HELDOUT_CUES: tuple[str, ...] = ("but not", "lacking", "free of", "devoid of", "absent", "missing")

# Negation-pair templates. {pos}: what is in both images; {neg}/{neg_pl}/{a_neg}: the negated
# category (singular, plural, with article).
TRAIN_PAIR_TEMPLATES: tuple[str, ...] = (
    "{pos} with no {neg_pl}",
    "{pos} without {a_neg}",
    "{pos}, and there is no {neg}",
    "{pos} and no {neg_pl}",
    "there are no {neg_pl} in this picture of {pos}",
    "{pos}; the picture does not contain {a_neg}",
)
HELDOUT_PAIR_TEMPLATES: tuple[str, ...] = (
    "{pos} but not {a_neg}",
    "{pos}, lacking any {neg_pl}",
    "{pos} in a picture free of {neg_pl}",
    "{pos}, devoid of {neg_pl}",
    "{pos}, with {neg_pl} absent",
    "{pos}; {neg_pl} are missing",
)

NEGATION_WORDS: tuple[str, ...] = (
    "no", "not", "without", "none", "nothing", "never", "nobody", "nowhere", "neither", "nor",
    "cannot", "lacking", "lacks", "lack", "free of", "devoid", "absent", "missing", "zero",
    "empty", "except", "apart from",
)

_NEG_RE = re.compile(r"\b(" + "|".join(re.escape(w) for w in NEGATION_WORDS) + r")\b|n't\b",
                     re.IGNORECASE)
_HELDOUT_RE = re.compile(r"\b(" + "|".join(re.escape(w) for w in HELDOUT_CUES) + r")\b",
                         re.IGNORECASE)


def contains_negation(text: str) -> bool:
    """True if ``text`` has any negation word or contraction (positive captions must not)."""
    return _NEG_RE.search(text) is not None


def uses_heldout_cue(text: str) -> bool:
    """True if ``text`` uses a held-out phrasing; training text must make this False."""
    return _HELDOUT_RE.search(text) is not None


def heldout_cue_of(text: str) -> str | None:
    m = _HELDOUT_RE.search(text)
    return m.group(1).lower() if m else None


def _check_templates() -> None:
    for t in TRAIN_PAIR_TEMPLATES:
        assert not uses_heldout_cue(t.format(pos="x", neg="y", neg_pl="ys", a_neg="a y")), t
    for t in HELDOUT_PAIR_TEMPLATES:
        assert uses_heldout_cue(t.format(pos="x", neg="y", neg_pl="ys", a_neg="a y")), t


_check_templates()
