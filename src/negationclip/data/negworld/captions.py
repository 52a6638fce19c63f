"""Captions and VQA questions written from the scene graph.

Captions imitate web/COCO captions: varied templates, each mentioning only a subset of the
objects, and never a negation word. Questions imitate VQAv2: yes/no questions about existence,
colour, parts and size (about half answered "no"), plus a few colour/count questions.
"""

from __future__ import annotations

import random

from .phrasing import contains_negation
from .scenes import Obj, Scene, plausible_absent
from .vocab import COLORS, NUMBER_WORDS, PARTS, article, plural

_PART_PHRASES = {"dot": ("with a dot", "with a black dot", "with a dot in the middle"),
                 "border": ("with a black border", "with a dark outline", "outlined in black")}


def noun_phrase(o: Obj, rng: random.Random, *, color: float = 0.7, size: float = 0.3,
                part: float = 0.5, det: bool = True) -> str:
    """``a small red square with a dot``: true of ``o``; attributes included at random."""
    words = []
    if rng.random() < size:
        words.append(o.size)
    if rng.random() < color:
        words.append(o.color)
    words.append(o.category)
    text = " ".join(words)
    if o.parts and rng.random() < part:
        text += " " + rng.choice(_PART_PHRASES[rng.choice(o.parts)])
    return f"{article(text)} {text}" if det else text


def _join(items: list[str]) -> str:
    if len(items) == 1:
        return items[0]
    return ", ".join(items[:-1]) + " and " + items[-1]


def _relation(a: Obj, b: Obj) -> str:
    dx, dy = b.cx - a.cx, b.cy - a.cy
    if abs(dx) >= abs(dy):
        return "to the left of" if dx > 0 else "to the right of"
    return "above" if dy > 0 else "below"


def _where(o: Obj, side: int) -> str | None:
    third = side / 3
    h = "left" if o.cx < third else ("right" if o.cx > 2 * third else "")
    v = "top" if o.cy < third else ("bottom" if o.cy > 2 * third else "")
    if h and v:
        return f"in the {v} {h} corner"
    if h or v:
        return f"on the {h or v} side" if h else f"near the {v}"
    return "in the middle"


def _caption(scene: Scene, rng: random.Random) -> str:
    objs = scene.objects
    kind = rng.randrange(9)
    if kind == 0 and len(objs) >= 2:
        a, b = rng.sample(objs, 2)
        return f"{noun_phrase(a, rng, part=0.3)} {_relation(a, b)} {noun_phrase(b, rng, part=0.3)}"
    if kind == 1:
        o = rng.choice(objs)
        return f"{noun_phrase(o, rng)} {_where(o, scene.width)}"
    if kind == 2:
        cats = sorted(scene.categories())
        cat = rng.choice(cats)
        n = scene.count(cat)
        if n >= 2:
            same = {o.color for o in objs if o.category == cat}
            col = f"{same.pop()} " if len(same) == 1 and rng.random() < 0.6 else ""
            return f"{NUMBER_WORDS[n]} {col}{plural(cat)} on a plain background"
        return f"a drawing of {noun_phrase(rng.choice(objs), rng)}"
    if kind == 3:
        n = len(objs)
        word = "shape" if n == 1 else "shapes"
        return f"{NUMBER_WORDS[n]} colorful {word} on a light background"
    if kind == 4:
        k = rng.randint(1, min(3, len(objs)))
        return "a picture of " + _join([noun_phrase(o, rng) for o in rng.sample(objs, k)])
    if kind == 5:
        o = rng.choice(objs)
        return f"there is {noun_phrase(o, rng)} in the image"
    if kind == 6 and len(objs) >= 2:
        a, b = rng.sample(objs, 2)
        return f"{noun_phrase(a, rng)} next to {noun_phrase(b, rng)}"
    if kind == 7:
        k = rng.randint(1, min(2, len(objs)))
        return "a simple illustration with " + _join([noun_phrase(o, rng) for o in rng.sample(objs, k)])
    k = rng.randint(1, min(3, len(objs)))
    return _join([noun_phrase(o, rng) for o in rng.sample(objs, k)])


def _finish(text: str, rng: random.Random) -> str:
    text = text.strip()
    if rng.random() < 0.7:
        text = text[0].upper() + text[1:]
    if rng.random() < 0.6:
        text += "."
    return text


def captions(scene: Scene, rng: random.Random, n: int = 5) -> list[str]:
    """``n`` distinct (where possible) positive captions of ``scene``."""
    out: list[str] = []
    for _ in range(n * 6):
        c = _finish(_caption(scene, rng), rng)
        if c not in out:
            out.append(c)
        if len(out) == n:
            break
    while len(out) < n:  # tiny scenes can run out of distinct wordings
        out.append(_finish(_caption(scene, rng), rng))
    assert not any(contains_negation(c) for c in out), out
    return out


# --- VQA --------------------------------------------------------------------------------------

def questions(scene: Scene, rng: random.Random, n: int = 6) -> list[dict]:
    """Up to ``n`` questions: dicts with question, answer, question_type, answer_type."""
    qs: list[dict] = []
    seen: set[str] = set()
    unique = [o for o in scene.objects if scene.count(o.category) == 1]

    def add(q: str, a: str, qtype: str, atype: str) -> None:
        if q not in seen:
            seen.add(q)
            qs.append({"question": q, "answer": a, "question_type": qtype, "answer_type": atype})

    for _ in range(n * 4):
        if len(qs) >= n:
            break
        want_yes = rng.random() < 0.5
        kind = rng.choice(("exist", "exist", "color", "part", "size", "other"))
        if kind == "exist":
            if want_yes:
                o = rng.choice(scene.objects)
                attr = f"{o.color} " if rng.random() < 0.3 else ""
                add(f"Is there {article(attr + o.category)} {attr}{o.category}?", "yes",
                    "is there a", "yes/no")
            else:
                cat = plausible_absent(scene, rng)
                if cat:
                    add(f"Is there {article(cat)} {cat} in the picture?", "no", "is there a", "yes/no")
            continue
        if not unique:
            continue
        o = rng.choice(unique)
        if kind == "color":
            col = o.color if want_yes else rng.choice(sorted(c for c in COLORS if c != o.color))
            add(f"Is the {o.category} {col}?", "yes" if want_yes else "no", "is the", "yes/no")
        elif kind == "part":
            part = rng.choice(sorted(PARTS))
            add(f"Does the {o.category} have {PARTS[part]}?", "yes" if o.has(part) else "no",
                "does the", "yes/no")
        elif kind == "size":
            size = o.size if want_yes else ("large" if o.size == "small" else "small")
            add(f"Is the {o.category} {size}?", "yes" if want_yes else "no", "is the", "yes/no")
        elif rng.random() < 0.5:
            add(f"What color is the {o.category}?", o.color, "what color is the", "other")
        else:
            cat = o.category
            add(f"How many {plural(cat)} are there?", str(scene.count(cat)), "how many", "number")
    return qs
