"""Scene graphs: what is in a NegWorld image, exactly. Deterministic from (seed, index)."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field, replace

from .vocab import CATEGORIES, COLORS, CONTEXT_OF, CONTEXTS, PARTS, SIZES


@dataclass
class WorldConfig:
    """How NegWorld scenes are sampled and exported (recorded in ``manifest.json``)."""
    images: int = 1000
    seed: int = 0
    size: int = 64  # image side in pixels
    min_objects: int = 1
    max_objects: int = 4
    in_context: float = 0.85  # chance an object's category comes from the scene's context
    repeat_category: float = 0.3  # chance an extra object repeats a category already present
    part_prob: dict = field(default_factory=lambda: {"dot": 0.45, "border": 0.35})
    captions_per_image: int = 5
    questions_per_image: int = 6
    split_fractions: dict = field(default_factory=lambda: {"train": 0.75, "val": 0.05, "test": 0.2})
    pairs_per_scene: int = 2  # negation pairs made from each test scene with >= 2 objects
    heldout_fraction: float = 0.35  # share of negation pairs phrased with a held-out cue
    negref_min_box: float = 0.1  # size filter: boxes narrower than this * size are dropped
    negref_expand: float = 0.1  # each NegRef box grows by this fraction of its side on each side
    supersample: int = 2  # render at this factor and downsample (anti-aliasing)
    png_compress_level: int = 1
    ccneg_pt: bool = False  # also write ccneg.pt (CoN-CLIP's torch layout; imports torch)


@dataclass
class Obj:
    category: str
    color: str
    size: str  # "small" | "large"
    parts: tuple[str, ...]  # subset of PARTS, in PARTS order
    cx: float
    cy: float
    r: float  # radius of the bounding circle the shape is drawn in

    def has(self, part: str) -> bool:
        return part in self.parts


@dataclass
class Scene:
    id: int  # the COCO image id
    file_name: str
    width: int
    height: int
    background: tuple[int, int, int]
    context: str
    objects: list[Obj]
    split: str = ""
    role: str = "scene"  # "scene", or "foil" for a negation pair's counterpart image
    source: int | None = None  # for a foil: the id of the scene it was derived from

    def categories(self) -> set[str]:
        return {o.category for o in self.objects}

    def count(self, category: str) -> int:
        return sum(o.category == category for o in self.objects)

    def to_json(self) -> dict:
        return {"id": self.id, "file_name": self.file_name, "width": self.width,
                "height": self.height, "background": list(self.background),
                "context": self.context,
                "objects": [{"category": o.category, "color": o.color, "size": o.size,
                             "parts": list(o.parts), "cx": o.cx, "cy": o.cy, "r": o.r}
                            for o in self.objects],
                "split": self.split, "role": self.role, "source": self.source}

    @staticmethod
    def from_json(d: dict) -> "Scene":
        objs = [Obj(**{**o, "parts": tuple(o["parts"])}) for o in d["objects"]]
        return Scene(**{**d, "background": tuple(d["background"]), "objects": objs})


_CONTEXT_NAMES = tuple(sorted(CONTEXTS))
_COLOR_NAMES = tuple(sorted(COLORS))


def scene_rng(seed: int, index: int, stream: str = "scene") -> random.Random:
    """An independent, reproducible random stream per (seed, image, purpose)."""
    return random.Random(f"negworld/{seed}/{stream}/{index}")


def _radius(rng: random.Random, size_class: str, side: int) -> float:
    lo, hi = (0.10, 0.125) if size_class == "small" else (0.16, 0.19)
    return side * rng.uniform(lo, hi)


def sample_scene(cfg: WorldConfig, index: int, image_id: int) -> Scene:
    """Sample scene ``index``: a context, 1-4 non-overlapping objects, their attributes."""
    rng = scene_rng(cfg.seed, index)
    side = cfg.size
    context = rng.choice(_CONTEXT_NAMES)
    n = rng.randint(cfg.min_objects, cfg.max_objects)
    bg = tuple(min(255, max(0, 244 + rng.randint(-10, 8))) for _ in range(3))
    objs: list[Obj] = []
    gap = side * 0.03
    for k in range(n):
        if objs and rng.random() < cfg.repeat_category:
            cat = rng.choice(objs).category
        elif rng.random() < cfg.in_context:
            cat = rng.choice(CONTEXTS[context])
        else:
            cat = rng.choice(CATEGORIES)
        size_class = rng.choice(SIZES)
        r = _radius(rng, size_class, side)
        for _ in range(40):  # rejection sampling of a free spot
            cx, cy = rng.uniform(r + 1, side - r - 1), rng.uniform(r + 1, side - r - 1)
            if all(math.hypot(cx - o.cx, cy - o.cy) >= r + o.r + gap for o in objs):
                break
        else:
            continue  # no room left: the scene keeps fewer objects
        parts = tuple(p for p in PARTS if rng.random() < cfg.part_prob.get(p, 0.0))
        objs.append(Obj(category=cat, color=rng.choice(_COLOR_NAMES), size=size_class,
                        parts=parts, cx=round(cx, 2), cy=round(cy, 2), r=round(r, 2)))
    return Scene(id=image_id, file_name=f"{image_id:06d}.png", width=side, height=side,
                 background=bg, context=context, objects=objs)


def plausible_absent(scene: Scene, rng: random.Random, p_context: float = 0.75) -> str | None:
    """A category not in the scene, from the scene's context when possible (the notion of
    "likely here but absent" that P1's object proposal stage is about)."""
    present = scene.categories()
    ctx = [c for c in CONTEXTS[scene.context] if c not in present]
    rest = [c for c in CATEGORIES if c not in present and c not in ctx]
    if ctx and (not rest or rng.random() < p_context):
        return rng.choice(ctx)
    return rng.choice(rest) if rest else None


def replace_object(scene: Scene, index: int, category: str, image_id: int) -> Scene:
    """The foil of a negation pair: the same scene with object ``index`` turned into
    ``category`` (same place, size, colour and parts), so counts give no hint."""
    objs = list(scene.objects)
    objs[index] = replace(objs[index], category=category)
    return replace(scene, id=image_id, file_name=f"foil_{image_id:06d}.png", objects=objs,
                   role="foil", source=scene.id)


__all__ = ["WorldConfig", "Obj", "Scene", "sample_scene", "scene_rng", "plausible_absent",
           "replace_object", "CONTEXT_OF"]
