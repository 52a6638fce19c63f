"""Scene-graph hard negatives: for a negated caption "X with no Y" about a NegWorld image, the
same scene with Y put in (one object not named by X turned into a Y, same place, size and
colour). Written as each record's ``negative_image``, which fine-tuning uses as an extra
negative image with a margin ("X with no Y" must score the image without Y above it).

Why: with a frozen vision tower, captions alone teach the text tower to stop reading "no Y" as
"Y" (chance on the balanced test), but not to prefer the image without Y; a negative image
that differs from the positive only by Y gives that signal directly. This needs the scene
graph, so it exists for NegWorld only; on real data the closest thing is mining a training
image whose captions show Y (``negationclip train --mine-negative-images``).
"""

from __future__ import annotations

import os
import random
import re
from pathlib import Path

from ...utils import JsonlWriter, NegationClipError, read_jsonl
from ...utils.progress import progress
from .export import load_scenes
from .render import write_pngs
from .scenes import replace_object
from .vocab import CATEGORIES

CF_DIR = "images_cf"


def _mentioned(category: str, text: str) -> bool:
    return re.search(rf"\b{re.escape(category)}(?:s|es)?\b", text, re.IGNORECASE) is not None


_EXISTS = re.compile(r"^\s*(?:is|are) there\b", re.IGNORECASE)


def negated_object(record: dict, questions: bool = False) -> str | None:
    """The shape a record negates: its ``object`` (P1), or with ``questions`` for a P2 record
    the one shape named by its existence question ("Is there a hexagon ...?" answered no)."""
    obj = record.get("object") or None
    if obj:
        return str(obj)
    q = str(record.get("question") or "") if questions else ""
    if not _EXISTS.match(q):
        return None
    named = [c for c in CATEGORIES if _mentioned(c, q)]
    return named[0] if len(named) == 1 else None


def add_scene_negatives(records: str | os.PathLike, world_root: str | os.PathLike,
                        out: str | os.PathLike, *, seed: int = 0, questions: bool = False,
                        show_progress: bool = True) -> dict:
    """Copy generation records to ``out``, adding ``negative_image`` where one can be drawn.

    Images go to ``<world_root>/images_cf/`` and ``negative_image`` is relative to the world's
    image folder (``../images_cf/cf_<records file stem>_<row>.png``), like ``image_file``.
    ``questions``: P2 records take the shape of their existence question (off by default: on
    the demo's recipe it did not help, see the README). Records negating no shape (P2
    attribute negations) or whose image is not a NegWorld scene are copied unchanged.
    Returns counts; ``named_replaced`` counts the negatives whose caption names every other
    object, so that one it names became Y (below).

    The object turned into Y is one the caption does not name when there is one (as in the
    balanced test's foils), otherwise one it names. The latter (56% of the demo's P1) can be
    told apart by the named object alone, yet on the demo they are worth keeping: the default
    recipe scored 0.711 balanced with them; without them 0.62, with Y put into a free spot
    instead 0.64 (a count cue), with a named object turned into Y for every record 0.66 (one
    training seed each; a second seed of the default gave 0.68; issue 13's closing notes).
    """
    root = Path(world_root)
    scenes = load_scenes(root / "scenes.json")
    cf_dir = root / CF_DIR
    cf_dir.mkdir(exist_ok=True)
    recs = read_jsonl(records)
    if not recs:
        raise NegationClipError(f"{records}: no records")
    rng = random.Random(f"scene-negatives/{seed}")
    stem = re.sub(r"[^A-Za-z0-9]+", "-", Path(records).stem).strip("-") or "records"
    counts = {"records": len(recs), "with_negative_image": 0, "no_object": 0, "no_scene": 0,
              "no_slot": 0, "named_replaced": 0}
    tmp = Path(str(out) + ".tmp")
    tmp.unlink(missing_ok=True)
    jobs = []  # rendered after the loop, over all cores (write_pngs)
    with JsonlWriter(tmp, append=False, fsync=False) as w:
        for n, r in enumerate(progress(recs, desc="scene negatives", unit="rec",
                                       disable=None if show_progress else True)):
            obj = negated_object(r, questions)
            scene = scenes.get(str(r.get("image_file") or r.get("image") or ""))
            if not obj:
                counts["no_object"] += 1
            elif scene is None:
                counts["no_scene"] += 1
            else:
                text = str(r.get("original") or "")
                unnamed = [j for j, o in enumerate(scene.objects)
                           if o.category != obj and not _mentioned(o.category, text)]
                slots = unnamed or [j for j, o in enumerate(scene.objects) if o.category != obj]
                if not slots:
                    counts["no_slot"] += 1
                else:
                    foil = replace_object(scene, rng.choice(slots), obj, scene.id)
                    counts["named_replaced"] += not unnamed
                    # named by records file and row: several files (P1, Rand-P1, P2) share
                    # one folder, and a file made again gets the same names
                    name = f"cf_{stem}_{n:07d}.png"
                    jobs.append((foil, cf_dir / name))
                    r = dict(r, negative_image=f"../{CF_DIR}/{name}")
                    counts["with_negative_image"] += 1
            w.write(r)
    write_pngs(jobs)  # before the records file appears: it never names a missing image
    os.replace(tmp, out)
    return counts
