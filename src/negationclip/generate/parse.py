"""Robust parsing of model answers and the checks a rewrite must pass.

Models answer "No.", "no, there isn't", ``{"answer": "no"}``, a sentence, or garbage. Every
parser returns None for what it cannot read with confidence: the caller counts that as a
skip, and an unreadable verification answer is never taken to mean "absent".
"""

from __future__ import annotations

import json
import re

from .grammar import mentions, negation_count, words

MAX_ANSWER_CHARS = 2000
_STOP = {"a", "an", "the", "of", "in", "on", "at", "to", "and", "with", "is", "are", "it",
         "its", "his", "her", "their", "some", "this", "that", "there", "for", "by", "from",
         "up", "down", "as", "be", "has", "have", "while", "into", "near", "next"}

_YES = {"yes", "yeah", "yep", "yup", "true", "present", "correct", "affirmative"}
_NO = {"no", "nope", "false", "absent", "not", "none", "negative"}
_NO_PHRASES = ("there is no", "there are no", "there isn't", "there aren't", "is not present",
               "are not present", "not visible", "cannot see any", "can't see any",
               "does not contain", "doesn't contain", "no,", "i don't see", "i do not see")
_YES_PHRASES = ("there is a", "there is an", "there are", "is present", "are present",
                "is visible", "are visible", "i can see", "contains a", "contains an")
_UNSURE = ("not sure", "unsure", "cannot tell", "can't tell", "cannot determine",
           "can't determine", "unclear", "unknown", "maybe", "possibly", "hard to say",
           "not possible to", "impossible to tell", "cannot be determined")


def _json_payload(text: str):
    """The JSON value in ``text`` (also inside ```json fences), or None."""
    t = text.strip()
    m = re.search(r"```(?:json)?\s*(.*?)```", t, flags=re.DOTALL)
    if m:
        t = m.group(1).strip()
    if not t or t[0] not in "[{\"":
        m = re.search(r"(\{.*\}|\[.*\])", t, flags=re.DOTALL)
        if not m:
            return None
        t = m.group(1)
    try:
        return json.loads(t)
    except (json.JSONDecodeError, ValueError):
        return None


def _usable(text) -> bool:
    return isinstance(text, str) and 0 < len(text.strip()) <= MAX_ANSWER_CHARS


def parse_yes_no(text: str | None) -> str | None:
    """'yes', 'no', or None (unparseable or unsure)."""
    if not _usable(text):
        return None
    data = _json_payload(text)
    if isinstance(data, dict):
        for key in ("answer", "present", "result", "response", "exists"):
            if key in data:
                v = data[key]
                if isinstance(v, bool):
                    return "yes" if v else "no"
                return parse_yes_no(str(v)) if isinstance(v, str) else None
        return None
    if isinstance(data, str):
        return parse_yes_no(data)
    low = " ".join(text.strip().lower().replace("\u2019", "'").split())
    if any(u in low for u in _UNSURE):
        return None
    ws = words(low)
    if not ws:
        return None
    if ws[0] in _YES:
        return "yes"
    if ws[0] in _NO or ws[0] in {"no", "nope"}:
        return "no"
    # a sentence: "There is no hat in this image." / "I can see a hat."
    has_no = any(p in low for p in _NO_PHRASES)
    has_yes = any(p in low for p in _YES_PHRASES)
    if has_no and not has_yes:
        return "no"
    if has_yes and not has_no:
        return "yes"
    # "Answer: no" style
    m = re.search(r"\b(?:answer|verdict)\s*(?:is)?\s*:?\s*(yes|no)\b", low)
    if m:
        return m.group(1)
    return None


_LEAD = re.compile(r"^(?:\d+[.)]\s*|[-*\u2022]\s*|(?:object|answer|word|noun)\s*[:=-]\s*)", re.I)


def _clean_object(s: str) -> str | None:
    s = _LEAD.sub("", s.strip()).strip().strip("\"'`*.,;:!()[]").strip()
    s = re.sub(r"^(?:a|an|the|some)\s+", "", s, flags=re.I)
    ws = words(s)
    if not ws or len(ws) > 3 or len(s) > 40:
        return None
    if any(w in {"sorry", "cannot", "can't", "i", "you", "object", "caption", "image"} for w in ws):
        return None
    return " ".join(ws)


def parse_objects(text: str | None, k: int = 1) -> list[str]:
    """Up to ``k`` distinct object names (lowercase, 1-3 words) from a proposal answer."""
    if not _usable(text):
        return []
    data = _json_payload(text)
    items: list[str] = []
    if isinstance(data, dict):
        for key in ("objects", "object", "answer", "answers"):
            if key in data:
                data = data[key]
                break
    if isinstance(data, list):
        items = [str(x) for x in data if isinstance(x, (str, int))]
    elif isinstance(data, str):
        items = [data]
    else:
        lines = [ln for ln in text.strip().splitlines() if ln.strip()]
        if len(lines) == 1:
            items = re.split(r"[,;/]|\bor\b|\band\b", lines[0]) if k > 1 else [lines[0]]
        else:
            items = lines
    out: list[str] = []
    for it in items:
        name = _clean_object(it)
        if name and name not in out:
            out.append(name)
        if len(out) >= k:
            break
    return out


_REWRITE_PREFIX = re.compile(
    r"^(?:here(?:'s| is)[^:]*:|(?:new|rewritten|negated|updated|modified|output|answer|caption)"
    r"(?: caption)?\s*:)\s*", re.I)


def _clean_sentence(s) -> str | None:
    if not isinstance(s, str):
        return None
    s = s.strip()
    s = _REWRITE_PREFIX.sub("", s).strip().strip("\"'`").strip()
    s = " ".join(s.split())
    return s or None


def parse_rewrite(text: str | None) -> tuple[str | None, str | None]:
    """(negated, affirmed) from a rewrite answer: JSON {"negated", "affirmed"} or lines
    "Negated: ... / Affirmed: ...", or a single caption (affirmed None)."""
    if not _usable(text):
        return None, None
    data = _json_payload(text)
    if isinstance(data, dict):
        neg = next((data[k] for k in ("negated", "negative", "caption", "rewritten", "output")
                    if k in data), None)
        aff = next((data[k] for k in ("affirmed", "affirmative", "positive") if k in data), None)
        return _clean_sentence(neg), _clean_sentence(aff)
    if isinstance(data, str):
        return _clean_sentence(data), None
    neg = aff = None
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    for ln in lines:
        m = re.match(r"^\s*(negated|negative|affirmed|affirmative|positive)\s*(?:caption)?\s*:\s*(.*)$",
                     ln, flags=re.I)
        if m:
            if m.group(1).lower().startswith("neg"):
                neg = _clean_sentence(m.group(2))
            else:
                aff = _clean_sentence(m.group(2))
    if neg or aff:
        return neg, aff
    # a single caption, maybe after a preamble line ending with ':'
    body = [ln for ln in lines if not ln.rstrip().endswith(":")]
    return (_clean_sentence(body[0]) if body else None), None


def _content(text: str) -> list[str]:
    return [w for w in words(text) if w not in _STOP and len(w) > 1]


def _kept(original: str, rewrite: str) -> float:
    """Fraction of the original's content words kept (4-letter prefixes, so 'plays' ~ 'playing')."""
    orig = _content(original)
    if not orig:
        return 1.0
    have = {w[:4] for w in words(rewrite)}
    return sum(1 for w in orig if w[:4] in have) / len(orig)


_AUX_WORDS = {"is", "are", "was", "were", "does", "do", "did", "can", "could", "will", "would",
              "should", "there", "any", "this", "these", "those", "picture", "image", "photo"}


def check_negated(original: str, negated: str | None, obj: str | None = None, *,
                  question: str | None = None, min_kept: float = 0.6) -> str | None:
    """None when ``negated`` is acceptable, else why not. With ``question`` (P2), the rewrite
    must also carry at least half of the question's content words."""
    if not negated:
        return "empty"
    n_orig, n_new = len(words(original)), len(words(negated))
    if n_new > 2 * n_orig + 20:
        return "too long"
    if negated.strip().lower() == original.strip().lower():
        return "unchanged"
    if negation_count(negated) <= negation_count(original):
        return "does not negate"
    if _kept(original, negated) < min_kept:
        return "drops the original content"
    if obj and not mentions(negated, obj):
        return "does not mention the object"
    if question:
        q = [w for w in _content(question) if w not in _AUX_WORDS]
        have = {w[:4] for w in words(negated)}
        if q and sum(w[:4] in have for w in q) < len(q) / 2:
            return "drops the question's content"
    return None


def check_affirmed(original: str, affirmed: str | None, obj: str | None = None, *,
                   min_kept: float = 0.6) -> str | None:
    """None when ``affirmed`` states the presence without adding a negation."""
    if not affirmed:
        return "empty"
    if negation_count(affirmed) > negation_count(original):
        return "negates"
    if _kept(original, affirmed) < min_kept:
        return "drops the original content"
    if obj and not mentions(affirmed, obj):
        return "does not mention the object"
    if len(words(affirmed)) > 2 * len(words(original)) + 20:
        return "too long"
    return None


def parse_numbered(text: str | None, n: int, k: int = 1) -> list[list[str]] | None:
    """Per-caption objects from a grouped proposal ("1. hat\n2. tree" or JSON); None when
    the answer cannot be aligned with the ``n`` captions."""
    if not _usable(text):
        return None
    data = _json_payload(text)
    out: list[list[str]] = [[] for _ in range(n)]
    if isinstance(data, dict):
        for key, val in data.items():
            m = re.match(r"\D*(\d+)", str(key))
            if m and 1 <= int(m.group(1)) <= n:
                out[int(m.group(1)) - 1] = parse_objects(json.dumps(val) if not isinstance(val, str)
                                                         else val, k)
        return out if any(out) else None
    if isinstance(data, list) and len(data) == n:
        return [parse_objects(json.dumps(v) if not isinstance(v, str) else v, k) for v in data]
    hit = False
    for ln in text.splitlines():
        m = re.match(r"^\s*(?:caption\s*)?(\d+)\s*[.):\-]\s*(.+)$", ln, flags=re.I)
        if m and 1 <= int(m.group(1)) <= n:
            out[int(m.group(1)) - 1] = parse_objects(m.group(2), k)
            hit = True
    return out if hit else None


# --- the released code's answer rules (NegationCLIP src/data_generation.py) ---------------------
# The released loop keeps every answer: ``generate_with_llama`` returns
# ``text.strip().rstrip('.')`` (the proposal and the rewrite as they are) and
# ``is_object_in_image`` reads "present" iff "yes" occurs in the answer after "ASSISTANT:".
# These parsers give the same result on answers in the format the prompts ask for (one word,
# one caption, yes/no) and None, a counted skip, for anything else (a refusal, a paragraph, an
# answer that is neither yes nor no), which the released code would have kept.

_REFUSAL = {"sorry", "cannot", "can't", "i", "you", "object", "caption", "image", "unable"}


def released_answer(text: str | None) -> str | None:
    """The released code's cleaning (``.strip().rstrip('.')``), None for a non-string."""
    return text.strip().rstrip(".") if isinstance(text, str) else None


def parse_released_object(text: str | None) -> str | None:
    """A proposal as the released code keeps it (case and inner punctuation untouched), or
    None unless it is a name: one line, 1-3 words, no refusal."""
    if not _usable(text):
        return None
    s = released_answer(text)
    ws = words(s)
    if not s or "\n" in s or len(s) > 40 or not ws or len(ws) > 3 or any(w in _REFUSAL for w in ws):
        return None
    return s


def parse_released_yes_no(text: str | None) -> str | None:
    """'yes'/'no' by the released rule ("yes" in the answer) when the answer starts with yes
    or no; otherwise what ``parse_yes_no`` reads from a sentence, or None."""
    if not _usable(text):
        return None
    answer = text.split("ASSISTANT:")[-1].strip().lower()
    ws = words(answer)
    if ws and ws[0] in ("yes", "no"):
        return "yes" if "yes" in answer else "no"
    return parse_yes_no(answer)


def parse_released_rewrite(text: str | None) -> str | None:
    """A rewrite as the released code keeps it, or None unless it is one line."""
    if not _usable(text):
        return None
    s = released_answer(text)
    return s if s and "\n" not in s else None
