"""The field's negation and compositionality benchmarks, written from NegWorld's scene graphs in
their RELEASED file formats, so the readers built for the real files measure NegWorld too.

Each builder takes one test scene (and a random stream of its own) and returns records whose
right text is true of the scene and whose wrong texts are false, by construction from the scene
graph (the tests check every record against the graph again):

- NegBench multiple choice (``negbench_mcq.csv``): as NegBench's
  ``synthetic_datasets/evaluation/create_mcq.py`` builds image MCQs: two present objects A, B
  sampled once per image, up to three absent objects N (one question each), a random right
  template (``positive`` "This image features A and B", ``negative`` "This image does not
  feature N", ``hybrid`` "This image features B, but not N") at index 0 and the three wrong
  answers in NegBench's fixed order ("features N, but not B", "features N", "does not feature
  A"), which is what ``mcq.py``'s wrong-answer mapping {1: hybrid, 2: positive, 3: negative}
  relies on. Objects are shape categories with an article and the sentence ends with a full
  stop, as in the released (LLM-rephrased) files; NegWorld has no paraphrase step.
- NegBench retrieval (``negbench_retrieval.csv``, ``negbench_negated_retrieval.csv``):
  ``filepath, captions`` where ``captions`` is ``str(list_of_captions)`` (the Python list
  literal the released files hold): the image's COCO captions, and in the negated file each
  caption joined with "There is no N in the image." for an absent N (before or after it, as
  NegBench's templated captions before paraphrase).
- CC-Neg (``ccneg.jsonl``, optionally ``ccneg.pt``): one record per image shaped like an item
  of CoN-CLIP's ``ccneg_preprocessed.pt`` (``image_path`` + ``json.caption`` +
  ``sop_data["negative-prompt"]``): a caption naming present objects and a negative prompt that
  keeps one and denies another that *is* present (so it is false).
- SugarCREPE (``sugarcrepe/<subset>.json``, ``{id: {filename, caption, negative_caption}}``
  with ``json.dump(indent=4)`` like the released files): all seven subsets, because NegWorld
  has categories, attributes (colour, size, parts) and positions: ``add_obj`` adds an absent
  shape, ``add_att`` an attribute no shape of that kind has, ``replace_obj`` swaps a named shape
  for an absent one, ``replace_att`` a colour/size for one no shape of that kind has,
  ``replace_rel`` a spatial relation for one whose direction is wrong, ``swap_obj`` the two
  shapes of a relation, ``swap_att`` the colours of two shapes. Relations and swaps use shapes
  whose category occurs once, so no other object can make the negative true.

Paths: MCQ, retrieval and CC-Neg paths are relative to the export root (``images/000123.png``),
like ``negation_pairs.json``; SugarCREPE ``filename`` is relative to the image folder, as the
released files name COCO ``val2017`` files. Readers resolve by trailing components, so
``--*-images <export>/images`` works for all of them.
"""

from __future__ import annotations

import csv
import json
import os
import random
from pathlib import Path

from .scenes import Obj, Scene
from .vocab import CATEGORIES, COLORS, CONTEXTS, PARTS, SIZES, article, plural

MCQ_COLUMNS = ("correct_answer", "caption_0", "caption_1", "caption_2", "caption_3",
               "correct_answer_template", "image_path")  # create_mcq.py's column order
RETRIEVAL_COLUMNS = ("filepath", "captions")
MCQ_TEMPLATES = ("positive", "negative", "hybrid")
SUGARCREPE_SUBSETS = ("add_att", "add_obj", "replace_att", "replace_obj", "replace_rel",
                      "swap_att", "swap_obj")

_COLOR_NAMES = tuple(sorted(COLORS))


def _a(word: str) -> str:
    return f"{article(word)} {word}"


def _sentence(text: str) -> str:
    text = text.strip()
    return text[0].upper() + text[1:] + ("" if text.endswith(".") else ".")


def absent_categories(scene: Scene, rng: random.Random) -> list[str]:
    """Every category not in the scene, the scene's context first (NegBench's negative objects
    are proposed as plausible for the scene, then verified absent), each group shuffled."""
    present = scene.categories()
    ctx = [c for c in CONTEXTS[scene.context] if c not in present]
    rest = [c for c in CATEGORIES if c not in present and c not in ctx]
    rng.shuffle(ctx)
    rng.shuffle(rest)
    return ctx + rest


# --- NegBench ---------------------------------------------------------------------------------

def negbench_mcq(scene: Scene, image_path: str, rng: random.Random) -> list[dict]:
    """Up to three MCQ rows for a scene with at least two present categories."""
    positives = sorted(scene.categories())
    if len(positives) < 2:
        return []  # create_mcq.py skips images with fewer than two positive objects
    negatives = absent_categories(scene, rng)
    a, b = (_a(c) for c in rng.sample(positives, 2))
    rows = []
    for neg in negatives[:min(len(negatives), 3)]:
        n = _a(neg)
        template = rng.choice(MCQ_TEMPLATES)
        right = {"positive": f"This image features {a} and {b}.",
                 "negative": f"This image does not feature {n}.",
                 "hybrid": f"This image features {b}, but not {n}."}[template]
        options = [right, f"This image features {n}, but not {b}.", f"This image features {n}.",
                   f"This image does not feature {a}."]
        rows.append({"correct_answer": 0, **{f"caption_{i}": t for i, t in enumerate(options)},
                     "correct_answer_template": template, "image_path": image_path})
    return rows


def negbench_retrieval(image_path: str, captions: list[str]) -> dict:
    return {"filepath": image_path, "captions": str(list(captions))}


def negbench_negated_retrieval(scene: Scene, image_path: str, captions: list[str],
                               rng: random.Random) -> dict:
    """Each true caption with a true negation of an absent object, before or after it."""
    absent = absent_categories(scene, rng)
    out = []
    for cap in captions:
        neg = f"There is no {rng.choice(absent[:3])} in the image."
        cap = cap.strip()
        if rng.random() < 0.5:
            out.append(f"{cap}{'' if cap.endswith('.') else '.'} {neg}")
        else:
            out.append(f"{neg} {cap[0].upper()}{cap[1:]}")
    return {"filepath": image_path, "captions": str(out)}


# --- noun phrases with an exact meaning -------------------------------------------------------

def describe(category: str, *, size: str | None = None, color: str | None = None,
             part: str | None = None) -> str:
    """``a small red square with a dot``: true of an object iff it has every attribute named."""
    words = [w for w in (size, color) if w] + [category]
    text = _a(" ".join(words))
    return f"{text} with {PARTS[part]}" if part else text


def _np(o: Obj, rng: random.Random, *, color: float = 0.6, size: float = 0.25,
        part: float = 0.25) -> str:
    return describe(o.category, size=o.size if rng.random() < size else None,
                    color=o.color if rng.random() < color else None,
                    part=rng.choice(o.parts) if o.parts and rng.random() < part else None)


_FRAMES = ("{x}", "a picture of {x}", "a drawing of {x}", "there is {x} in the image")


def _frame(rng: random.Random, x: str) -> str:
    return _sentence(rng.choice(_FRAMES).format(x=x))


def relation(a: Obj, b: Obj) -> str:
    """The dominant-axis relation of ``a`` to ``b`` (image y grows downwards)."""
    dx, dy = b.cx - a.cx, b.cy - a.cy
    if abs(dx) >= abs(dy):
        return "to the left of" if dx > 0 else "to the right of"
    return "above" if dy > 0 else "below"


def relation_holds_loosely(rel: str, a: Obj, b: Obj) -> bool:
    """A lenient reading (direction only, any axis share): a negative must fail even this."""
    dx, dy = b.cx - a.cx, b.cy - a.cy
    return {"to the left of": dx > 0, "to the right of": dx < 0, "above": dy > 0,
            "below": dy < 0}[rel]


RELATIONS = ("to the left of", "to the right of", "above", "below")


# --- CC-Neg -----------------------------------------------------------------------------------

_CCNEG_NEG = ("{x}, but no {y_pl}", "{x} without {a_y}", "{x}, and there are no {y_pl}",
              "{x} but not {a_y}")


def ccneg_record(scene: Scene, image_path: str, rng: random.Random) -> dict:
    """Caption: present objects; negative prompt: one of them kept, another denied."""
    objs = list(scene.objects)
    rng.shuffle(objs)
    a = objs[0]
    other = next((o for o in objs[1:] if o.category != a.category), None)
    if other is None:  # a scene of one category: deny that category outright
        caption = _frame(rng, _np(a, rng))
        negative = _sentence(rng.choice(("a picture with no {y_pl}", "there are no {y_pl} here",
                                         "a plain background without {a_y}"))
                             .format(y_pl=plural(a.category), a_y=_a(a.category)))
    else:
        x = _np(a, rng)
        caption = _frame(rng, f"{x} and {_np(other, rng)}")
        negative = _sentence(rng.choice(_CCNEG_NEG).format(
            x=x, y_pl=plural(other.category), a_y=_a(other.category)))
    return {"image_path": image_path, "json": {"caption": caption},
            "sop_data": {"negative-prompt": negative}}


# --- SugarCREPE -------------------------------------------------------------------------------

def _unique(scene: Scene) -> list[Obj]:
    return [o for o in scene.objects if scene.count(o.category) == 1]


def _two(scene: Scene, rng: random.Random, objs: list[Obj] | None = None) -> tuple[Obj, Obj] | None:
    objs = scene.objects if objs is None else objs
    pairs = [(a, b) for a in objs for b in objs if a is not b and a.category != b.category]
    return rng.choice(pairs) if pairs else None


def _sc_add_obj(scene: Scene, rng: random.Random) -> tuple[str, str] | None:
    a = rng.choice(scene.objects)
    absent = absent_categories(scene, rng)
    new = describe(absent[0], color=rng.choice(_COLOR_NAMES) if rng.random() < 0.5 else None)
    frame = rng.choice(_FRAMES)
    x = _np(a, rng)
    return (_sentence(frame.format(x=x)), _sentence(frame.format(x=f"{x} and {new}")))


def _sc_replace_obj(scene: Scene, rng: random.Random) -> tuple[str, str] | None:
    objs = list(scene.objects)
    rng.shuffle(objs)
    a = objs[0]
    b = next((o for o in objs[1:] if o.category != a.category), None)
    new = absent_categories(scene, rng)[0]
    col = a.color if rng.random() < 0.6 else None
    frame = rng.choice(_FRAMES)
    tail = f" and {_np(b, rng)}" if b is not None else ""
    return (_sentence(frame.format(x=describe(a.category, color=col) + tail)),
            _sentence(frame.format(x=describe(new, color=col) + tail)))


def _false_attrs(scene: Scene, cat: str) -> list[tuple[str, str]]:
    """(kind, value) pairs that no object of ``cat`` has: naming one makes a phrase false."""
    group = [o for o in scene.objects if o.category == cat]
    out = [("color", c) for c in _COLOR_NAMES if all(o.color != c for o in group)]
    out += [("size", s) for s in SIZES if all(o.size != s for o in group)]
    out += [("part", p) for p in PARTS if not any(o.has(p) for o in group)]
    return out


def _sc_add_att(scene: Scene, rng: random.Random) -> tuple[str, str] | None:
    a = rng.choice(scene.objects)
    kind, value = rng.choice(_false_attrs(scene, a.category))
    frame = rng.choice(_FRAMES)
    return (_sentence(frame.format(x=describe(a.category))),
            _sentence(frame.format(x=describe(a.category, **{kind: value}))))


def _sc_replace_att(scene: Scene, rng: random.Random) -> tuple[str, str] | None:
    a = rng.choice(scene.objects)
    kind = rng.choice(("color", "color", "size"))
    cands = [v for k, v in _false_attrs(scene, a.category) if k == kind]
    if not cands:
        return None
    frame = rng.choice(_FRAMES)
    return (_sentence(frame.format(x=describe(a.category, **{kind: getattr(a, kind)}))),
            _sentence(frame.format(x=describe(a.category, **{kind: rng.choice(cands)}))))


def _sc_swap_att(scene: Scene, rng: random.Random) -> tuple[str, str] | None:
    colors = {c: {o.color for o in scene.objects if o.category == c} for c in scene.categories()}
    pairs = [(a, b) for a in scene.objects for b in scene.objects
             if a.category != b.category and a.color != b.color
             and b.color not in colors[a.category] and a.color not in colors[b.category]]
    if not pairs:
        return None
    a, b = rng.choice(pairs)
    frame = rng.choice(_FRAMES)
    return (_sentence(frame.format(x=f"{describe(a.category, color=a.color)} and "
                                     f"{describe(b.category, color=b.color)}")),
            _sentence(frame.format(x=f"{describe(a.category, color=b.color)} and "
                                     f"{describe(b.category, color=a.color)}")))


def _sc_replace_rel(scene: Scene, rng: random.Random) -> tuple[str, str] | None:
    ab = _two(scene, rng, _unique(scene))
    if ab is None:
        return None
    a, b = ab
    rel = relation(a, b)
    wrong = rng.choice([r for r in RELATIONS if not relation_holds_loosely(r, a, b)])
    x, y = _np(a, rng, part=0.0), _np(b, rng, part=0.0)
    return _sentence(f"{x} {rel} {y}"), _sentence(f"{x} {wrong} {y}")


def _sc_swap_obj(scene: Scene, rng: random.Random) -> tuple[str, str] | None:
    ab = _two(scene, rng, _unique(scene))
    if ab is None:
        return None
    a, b = ab
    rel = relation(a, b)
    x, y = _a(a.category), _a(b.category)
    return _sentence(f"{x} {rel} {y}"), _sentence(f"{y} {rel} {x}")


_SUGARCREPE = {"add_att": _sc_add_att, "add_obj": _sc_add_obj, "replace_att": _sc_replace_att,
               "replace_obj": _sc_replace_obj, "replace_rel": _sc_replace_rel,
               "swap_att": _sc_swap_att, "swap_obj": _sc_swap_obj}
assert tuple(sorted(_SUGARCREPE)) == SUGARCREPE_SUBSETS


def sugarcrepe_items(scene: Scene, rng: random.Random) -> dict[str, tuple[str, str]]:
    """subset -> (caption, negative_caption) for every subset this scene can express."""
    out = {}
    for name in SUGARCREPE_SUBSETS:
        item = _SUGARCREPE[name](scene, rng)
        if item is not None:
            out[name] = item
    return out


# --- writers (stdlib csv/json, byte-compatible with pandas/json as released) ------------------

def write_csv(path: str | os.PathLike, columns: tuple[str, ...], rows: list[dict]) -> None:
    """Like ``DataFrame.to_csv(index=False)``: comma, minimal quoting, ``\\n`` line ends."""
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(columns)
        for r in rows:
            w.writerow([r[c] for c in columns])


def write_sugarcrepe(folder: str | os.PathLike, items: dict[str, list[tuple[str, str, str]]]) -> dict:
    """``items[subset]`` = [(filename, caption, negative_caption)]; one JSON per subset, keys
    ``"0".."n-1"`` and ``indent=4`` as in the released files. Returns subset -> relative path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for name in SUGARCREPE_SUBSETS:
        data = {str(i): {"filename": fn, "caption": c, "negative_caption": n}
                for i, (fn, c, n) in enumerate(items.get(name, []))}
        with open(folder / f"{name}.json", "w", encoding="utf-8") as f:
            json.dump(data, f, indent=4)
        files[name] = f"{folder.name}/{name}.json"
    return files


def ccneg_torch_layout(records: list[dict]) -> dict:
    """CoN-CLIP's ``ccneg_preprocessed.pt`` layout: ``image_paths`` and ``annotations``."""
    return {"image_paths": [r["image_path"] for r in records],
            "annotations": [{"json": dict(r["json"]), "sop_data": dict(r["sop_data"])}
                            for r in records]}


__all__ = ["MCQ_COLUMNS", "RETRIEVAL_COLUMNS", "MCQ_TEMPLATES", "SUGARCREPE_SUBSETS", "RELATIONS",
           "absent_categories", "negbench_mcq", "negbench_retrieval", "negbench_negated_retrieval",
           "ccneg_record", "sugarcrepe_items", "describe", "relation", "relation_holds_loosely",
           "write_csv", "write_sugarcrepe", "ccneg_torch_layout"]
