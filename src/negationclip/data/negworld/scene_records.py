"""Training records read straight off NegWorld's scene graphs (NegWorld only).

P1/P2 captions negate whole scenes ("X with no Y"). Two kinds of negation they never show:

- ``parts``: negating a property of ONE object, what NegRef asks ("the square without a
  dot", "the star that is not orange", "the circle that is not small"). A record's image is
  a crop of one train-scene object (a crop key ``file.png#x,y,w,h``, the box NegRef would use)
  and its ``negative_image`` the same crop of the same scene re-rendered with that object
  given the property (the minimal twin), so the text must prefer the crop that lacks it.
- ``existence``: short statements about what a scene holds, both ways: "there are no Ys"
  (Y absent; ``negative_image``: the scene with Y put in; ``affirmed`` and ``negative_texts``:
  "there are Ys", false of the image), and
  presence negation ("there is an X" for an X that IS there, with the false "there is no X"
  as a ``negative_texts`` entry: a negation of a shown object must score lower).

Why here: each needs the exact scene graph (which object lacks which part, what a scene
holds) to be true, and a re-render for the twin; real data (COCO instances, no parts or
attributes) cannot give either. Counterfactual images go to ``<world>/images_sg/``; every
path is relative to the world's image folder, like ``image_file`` of generation records.
Phrasings use only training cues (``phrasing.TRAIN_NEGATION_CUES``); test scenes are never read.
"""

from __future__ import annotations

import os
import random
from dataclasses import replace
from pathlib import Path

from ...utils import JsonlWriter, NegationClipError, progress
from ...models.crops import crop_key
from .export import load_scenes, negref_box
from .phrasing import uses_heldout_cue
from .render import bbox, write_pngs
from .scenes import Obj, Scene, WorldConfig, plausible_absent, scene_rng
from .vocab import COLORS, PARTS, article, plural

SG_DIR = "images_sg"
KINDS = ("parts", "absence", "presence")
PART_PROPERTIES = ("color", "size", "part")  # what a part-negation record can negate
# Size is left out by default: the crop box grows with the object (``negref_box``), so after the
# resize to the model's input an object and its re-sized twin look the same; the hinge on that
# pair asks the text to separate two near-identical images, noise for training. (NegRef keeps its
# size items: they test the model, not the records.)
DEFAULT_PART_PROPERTIES = ("color", "part")
ALIASES = {"existence": ("absence", "presence")}  # the two existence kinds together


def parse_kinds(text: str) -> tuple[str, ...]:
    """``"parts,existence"`` -> ``("parts", "absence", "presence")``; unknown kinds are an
    error naming the known ones."""
    out: list[str] = []
    for k in (w.strip().lower() for w in text.split(",")):
        if not k:
            continue
        if k not in KINDS and k not in ALIASES:
            raise NegationClipError(f"scene records: unknown kind {k!r}; choose from "
                                    f"{', '.join(KINDS + tuple(ALIASES))}")
        out += ALIASES.get(k, (k,))
    return tuple(dict.fromkeys(out))


def parse_part_properties(text: str | tuple[str, ...]) -> tuple[str, ...]:
    """``"color, part"`` -> ``("color", "part")``; an unknown or empty list is an error naming
    ``PART_PROPERTIES``."""
    props = text.split(",") if isinstance(text, str) else list(text)
    out = tuple(dict.fromkeys(p.strip().lower() for p in props if p.strip()))
    bad = [p for p in out if p not in PART_PROPERTIES]
    if bad or not out:
        raise NegationClipError(f"scene records: part properties must be some of "
                                f"{', '.join(PART_PROPERTIES)}, got {', '.join(bad) or 'none'}")
    return out

_PART_TEXT = {"dot": ("a dot", "dot"), "border": ("a black border", "border")}
_NEG_PART = ("the {d} without {part}", "the {d} with no {noun}", "{a_d} that has no {noun}",
             "the {d} that does not have {part}", "{a_d} without {part}", "the {d} with no {noun} on it")
_NEG_ATTR = ("the {d} that is not {v}", "{a_d} which is not {v}", "the {d} that isn't {v}",
             "the {d}, not {v}", "{a_d} that is not {v}")
_POS_PART = ("the {d} with {part}", "{a_d} that has {part}")
_POS_ATTR = ("the {d} that is {v}", "{a_d} which is {v}")
_TAILS = ("", " in the picture", " in the image", " here", " in this scene")
_ABSENT = ("There are no {pl}{t}.", "There is no {s}{t}.", "No {pl} can be seen{t}.",
           "The picture has no {pl}.", "There isn't {a_s}{t}.")
_ABSENT_AFF = ("There are {pl}{t}.", "There is {a_s}{t}.", "{Pl} can be seen{t}.",
               "The picture has {pl}.", "There is {a_s}{t}.")
_PRESENT = ("There is {a_s}{t}.", "There are {pl}{t}.", "{A_s} can be seen{t}.")
_PRESENT_NEG = ("There is no {s}{t}.", "There are no {pl}{t}.", "No {s} can be seen{t}.")


def _desc(o: Obj, rng: random.Random, skip: str) -> str:
    """The object's category, sometimes with a true colour or size (never the negated kind)."""
    words = []
    if skip != "size" and rng.random() < 0.2:
        words.append(o.size)
    if skip != "color" and rng.random() < 0.3:
        words.append(o.color)
    return " ".join(words + [o.category])


def _fill(t: str, d: str, **kw) -> str:
    return t.format(d=d, a_d=f"{article(d)} {d}", **kw)


def _negate_property(o: Obj, rng: random.Random, side: int, cfg: WorldConfig):
    """(kind, value, text, affirmed, twin object) negating one property ``o`` lacks."""
    lacking = [p for p in PARTS if not o.has(p)]
    kinds = ["color", "size"] + (["part"] if lacking else [])
    kind = rng.choice(kinds)
    d = _desc(o, rng, kind)
    if kind == "part":
        p = rng.choice(lacking)
        part, noun = _PART_TEXT[p]
        text = _fill(rng.choice(_NEG_PART), d, part=part, noun=noun)
        aff = _fill(rng.choice(_POS_PART), d, part=part)
        twin = replace(o, parts=tuple(q for q in PARTS if o.has(q) or q == p))
        return kind, p, text, aff, twin
    if kind == "color":
        v = rng.choice(sorted(c for c in COLORS if c != o.color))
        twin = replace(o, color=v)
    else:
        v = "large" if o.size == "small" else "small"
        lo, hi = (0.10, 0.125) if v == "small" else (0.16, 0.19)
        r = min(side * rng.uniform(lo, hi), o.cx - 1, o.cy - 1, side - o.cx - 1, side - o.cy - 1)
        twin = replace(o, size=v, r=round(max(r, 1.0), 2))
    text = _fill(rng.choice(_NEG_ATTR), d, v=v)
    aff = _fill(rng.choice(_POS_ATTR), d, v=v)
    return kind, v, text, aff, twin


def _true_phrase(o: Obj, rng: random.Random) -> str:
    words = [w for w, p in ((o.size, 0.5), (o.color, 0.8)) if rng.random() < p] + [o.category]
    text = "the " + " ".join(words)
    if o.parts and rng.random() < 0.5:
        text += " with " + _PART_TEXT[rng.choice(o.parts)][0]
    return text


def _sentence_kw(cat: str, t: str) -> dict:
    a_s = f"{article(cat)} {cat}"
    return dict(s=cat, pl=plural(cat), Pl=plural(cat).capitalize(), a_s=a_s,
                A_s=a_s[0].upper() + a_s[1:], t=t)


def write_scene_records(world_root: str | os.PathLike, out: str | os.PathLike, *,
                        kinds: tuple[str, ...] = KINDS, seed: int = 0, split: str = "train",
                        limit: int | None = None, presence_fraction: float = 1.0,
                        part_properties: tuple[str, ...] = DEFAULT_PART_PROPERTIES,
                        show_progress: bool = True) -> dict:
    """Write ``kinds`` records for the ``split`` scenes of a NegWorld export to ``out`` (JSONL,
    the generation layout plus ``negative_texts``); returns counts per kind (``existence``:
    absence + presence).

    ``limit``: at most this many scenes (seeded sample), to bound rendering time.
    ``presence_fraction``: presence-negation records for this seeded share of the scenes only
    (the other records are the same whatever it is).
    ``part_properties``: which properties a part record may negate (``PART_PROPERTIES``); a
    drawn property outside it is skipped and counted (``parts_skipped``), and the records
    written are the same as with every property, less the skipped ones.
    """
    kinds = parse_kinds(",".join(kinds))
    part_properties = parse_part_properties(part_properties)
    if not 0.0 <= presence_fraction <= 1.0:
        raise NegationClipError(f"scene records: presence_fraction must be in [0, 1], "
                                f"got {presence_fraction}")
    root = Path(world_root)
    scenes = [s for s in load_scenes(root / "scenes.json").values()
              if s.role == "scene" and s.split == split]
    if not scenes:
        raise NegationClipError(f"{root / 'scenes.json'}: no {split!r} scenes")
    scenes.sort(key=lambda s: s.id)
    if limit is not None and limit < len(scenes):
        scenes = sorted(random.Random(f"scene-records/{seed}").sample(scenes, limit), key=lambda s: s.id)
    from .export import WorldExport
    wcfg = WorldConfig(**{k: v for k, v in WorldExport.open(root).manifest["config"].items()
                          if k in WorldConfig.__dataclass_fields__})
    sg = root / SG_DIR
    sg.mkdir(exist_ok=True)
    counts = {"scenes": len(scenes), **{k: 0 for k in kinds}, "images_rendered": 0}
    if "parts" in kinds:
        counts["parts_skipped"] = 0
    existence = "absence" in kinds or "presence" in kinds
    tmp = Path(str(out) + ".tmp")
    tmp.unlink(missing_ok=True)

    renders: list[tuple[Scene, Path]] = []  # drawn after the loop, over all cores

    def save(scene: Scene, name: str) -> str:
        renders.append((scene, sg / name))
        counts["images_rendered"] += 1
        return f"../{SG_DIR}/{name}"

    min_side = wcfg.negref_min_box * wcfg.size
    with JsonlWriter(tmp, append=False, fsync=False) as w:
        for s in progress(scenes, desc="scene-graph records", unit="scene",
                          disable=None if show_progress else True):
            rng = scene_rng(seed, s.id, "scene-records")
            base = {"image_id": s.id, "pipeline": "negworld-scene-graph"}
            if "parts" in kinds:
                for j, o in enumerate(s.objects):
                    if min(bbox(o)[2:]) < min_side:
                        continue
                    kind, value, text, aff, twin = _negate_property(o, rng, s.width, wcfg)
                    if kind not in part_properties:
                        _true_phrase(o, rng)  # the draws a written record makes: the rest match
                        counts["parts_skipped"] += 1
                        continue
                    objs = list(s.objects)
                    objs[j] = twin
                    neg = save(replace(s, objects=objs), f"part_{s.id:06d}_{j}.png")
                    w.write({**base, "id": f"SG:{s.id}:part{j}", "kind": "part-negation",
                             "image_file": crop_key(s.file_name, negref_box(o, wcfg, s.width)),
                             "original": _true_phrase(o, rng), "negated": text, "affirmed": aff,
                             "negated_property": f"{kind}:{value}",
                             "negative_image": crop_key(neg, negref_box(twin, wcfg, s.width))})
                    counts["parts"] += 1
            if existence:
                t = rng.choice(_TAILS)
                cat = plausible_absent(s, rng)
                if cat is not None and "absence" in kinds:
                    k = rng.randrange(len(s.objects))
                    objs = list(s.objects)
                    objs[k] = replace(objs[k], category=cat)
                    neg = save(replace(s, objects=objs), f"absent_{s.id:06d}.png")
                    i = rng.randrange(len(_ABSENT))
                    kw = _sentence_kw(cat, t)
                    w.write({**base, "id": f"SG:{s.id}:absent", "kind": "absence",
                             "image_file": s.file_name, "object": cat,
                             "negated": _ABSENT[i].format(**kw),
                             "affirmed": _ABSENT_AFF[i].format(**kw),
                             "negative_texts": [_ABSENT_AFF[i].format(**kw)],
                             "negative_image": neg})
                    counts["absence"] += 1
                if "presence" not in kinds:
                    continue
                shown = rng.choice(sorted(s.categories()))
                kw = _sentence_kw(shown, rng.choice(_TAILS))
                i = rng.randrange(len(_PRESENT))
                pos = _PRESENT[i].format(**kw) if s.count(shown) > 1 or i != 1 else \
                    _PRESENT[0].format(**kw)
                if random.Random(f"presence/{seed}/{s.id}").random() >= presence_fraction:
                    continue
                w.write({**base, "id": f"SG:{s.id}:present", "kind": "presence-negation",
                         "image_file": s.file_name, "negated": pos,
                         "negative_texts": [_PRESENT_NEG[i].format(**kw)],
                         "present_objects": sorted(s.categories())})
                counts["presence"] += 1
    write_pngs(renders, wcfg.supersample, wcfg.png_compress_level)  # before the records appear
    os.replace(tmp, out)
    if existence:
        counts["existence"] = counts.get("absence", 0) + counts.get("presence", 0)
    return counts


def _check_phrasings() -> None:
    kw = _sentence_kw("star", "")
    for t in _ABSENT + _ABSENT_AFF + _PRESENT + _PRESENT_NEG:
        assert not uses_heldout_cue(t.format(**kw)), t
    for t in _NEG_PART + _NEG_ATTR:
        assert not uses_heldout_cue(_fill(t, "star", part="a dot", noun="dot", v="red")), t


_check_phrasings()
