"""Offline roles: fast, deterministic, no model.

- proposer: objects that co-occur (in the instance annotations, or in the caption corpus)
  with the objects the caption mentions, but that it does not mention itself;
- random proposer (Rand-P1): any object of the vocabulary the caption does not mention;
- verifier: reads COCO instances: absent = no instance of that category in the image; a name
  that is not a category, or an image without annotations entry, is "unsure", never "absent";
- rewriter: grammar-aware templates, several phrasings, and the affirmative twin.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Iterable

from ..grammar import P1_PHRASINGS, WEARABLES, _first_person_noun, mentions, p1_rewrite, p2_rewrite
from .base import (GroupProposeResult, GroupProposeTask, ProposeResult, ProposeTask, Proposer, RewriteResult, RewriteTask, Rewriter,
                   VerifyResult, VerifyTask, Verifier)

COCO_CATEGORIES = (
    "person bicycle car motorcycle airplane bus train truck boat|traffic light|fire hydrant|"
    "stop sign|parking meter|bench bird cat dog horse sheep cow elephant bear zebra giraffe "
    "backpack umbrella handbag tie suitcase frisbee skis snowboard|sports ball|kite|"
    "baseball bat|baseball glove|skateboard surfboard|tennis racket|bottle|wine glass|cup fork "
    "knife spoon bowl banana apple sandwich orange broccoli carrot|hot dog|pizza donut cake "
    "chair couch|potted plant|bed|dining table|toilet tv laptop mouse remote keyboard|"
    "cell phone|microwave oven toaster sink refrigerator book clock vase scissors|teddy bear|"
    "hair drier|toothbrush")
COCO_NAMES = tuple(n for part in COCO_CATEGORIES.split("|") for n in
                   ([part.strip()] if " " in part.strip() and part.strip() in {
                       "traffic light", "fire hydrant", "stop sign", "parking meter",
                       "sports ball", "baseball bat", "baseball glove", "tennis racket",
                       "wine glass", "hot dog", "potted plant", "dining table", "cell phone",
                       "teddy bear", "hair drier"} else part.split()))


class Cooccurrence:
    """How often object names appear together (per image or per caption)."""

    def __init__(self, vocabulary: Iterable[str]):
        self.vocab = sorted({v.strip().lower() for v in vocabulary if v.strip()})
        self.count: Counter = Counter()
        self.pair: dict[str, Counter] = defaultdict(Counter)
        self.groups = 0

    def add(self, names: Iterable[str]) -> None:
        names = sorted({n.lower() for n in names})
        self.groups += 1
        for a in names:
            self.count[a] += 1
            for b in names:
                if a != b:
                    self.pair[a][b] += 1

    @classmethod
    def from_instances(cls, instances) -> "Cooccurrence":
        co = cls(instances.categories.values())
        for image_id in instances.images:
            co.add(instances.category_names_in_image(image_id))
        return co

    @classmethod
    def from_captions(cls, captions: Iterable[str], vocabulary: Iterable[str]) -> "Cooccurrence":
        co = cls(vocabulary)
        for cap in captions:
            co.add(n for n in co.vocab if mentions(cap, n))
        return co

    def scores(self, mentioned: list[str], candidates: list[str]) -> list[float]:
        """P(candidate | a mentioned object), summed; the prior when nothing is mentioned."""
        total = max(1, self.groups)
        out = []
        for c in candidates:
            prior = (self.count[c] + 0.5) / (total + 1)
            if mentioned:
                s = sum(self.pair[m][c] / max(1, self.count[m]) for m in mentioned)
                out.append(s + 0.01 * prior)
            else:
                out.append(prior)
        return out


def _weighted_sample(rng: random.Random, items: list[str], weights: list[float], k: int) -> list[str]:
    items, weights = list(items), list(weights)
    chosen = []
    while items and len(chosen) < k:
        total = sum(weights)
        if total <= 0:
            i = rng.randrange(len(items))
        else:
            x, acc, i = rng.random() * total, 0.0, 0
            for i, w in enumerate(weights):
                acc += w
                if acc >= x:
                    break
        chosen.append(items.pop(i))
        weights.pop(i)
    return chosen


class RulesProposer(Proposer):
    backend = "rules"

    def __init__(self, co: Cooccurrence, *, top: int = 4, source: str = "instances"):
        self.co = co
        self.top = top
        self.model = f"cooccurrence-{source}"

    def _pick(self, caption: str, k: int, seed: int, exclude: set[str] = frozenset()) -> list[str]:
        mentioned = [n for n in self.co.vocab if mentions(caption, n)]
        cands = [n for n in self.co.vocab if n not in mentioned and n not in exclude]
        scores = self.co.scores(mentioned, cands)
        ranked = sorted(zip(cands, scores), key=lambda x: (-x[1], x[0]))[: max(self.top, k)]
        rng = random.Random(seed)
        return _weighted_sample(rng, [c for c, _ in ranked], [s for _, s in ranked], k)

    def propose(self, tasks: list[ProposeTask]) -> list[ProposeResult]:
        return [ProposeResult(self._pick(t.caption, t.k, t.seed), calls=1) for t in tasks]

    def propose_groups(self, tasks: list[GroupProposeTask]) -> list[GroupProposeResult]:
        out = []
        for t in tasks:
            named = {n for n in self.co.vocab for c in t.captions if mentions(c, n)}
            out.append(GroupProposeResult(
                [self._pick(c, t.k, s, named) for c, s in zip(t.captions, t.seeds)], calls=1))
        return out


class RandomProposer(Proposer):
    """Rand-P1: an object drawn uniformly, regardless of context (no model call)."""

    backend = "random"

    def __init__(self, vocabulary: Iterable[str]):
        self.vocab = sorted({v.strip().lower() for v in vocabulary if v.strip()})
        self.model = f"uniform-{len(self.vocab)}"

    def propose(self, tasks: list[ProposeTask]) -> list[ProposeResult]:
        out = []
        for t in tasks:
            cands = [n for n in self.vocab if not mentions(t.caption, n)]
            rng = random.Random(t.seed)
            out.append(ProposeResult(rng.sample(cands, min(t.k, len(cands))), calls=0))
        return out


class RulesVerifier(Verifier):
    """Reads COCO instance annotations; never says "absent" about what it does not know."""

    backend = "rules"
    needs_pixels = False

    def __init__(self, instances, source: str = "instances"):
        self.inst = instances
        self.names = {n.strip().lower() for n in instances.categories.values()}
        self.model = f"coco-{source}"
        self._present = {i: {n.lower() for n in instances.category_names_in_image(i)}
                         for i in instances.images}

    def verify(self, tasks: list[VerifyTask]) -> list[VerifyResult]:
        out = []
        for t in tasks:
            name = t.obj.strip().lower()
            if t.image_id not in self._present:
                out.append(VerifyResult("unsure", calls=1, detail="image not in the instances file"))
            elif name not in self.names:
                out.append(VerifyResult("unsure", calls=1, detail="not a category"))
            elif name in self._present[t.image_id]:
                out.append(VerifyResult("present", calls=1))
            else:
                out.append(VerifyResult("absent", calls=1))
        return out


class RulesRewriter(Rewriter):
    backend = "rules"
    model = "templates-v2"  # v2: the "no_first" phrasing (negation before the caption)

    def __init__(self, phrasings: Iterable[str] = P1_PHRASINGS):
        self.phrasings = tuple(phrasings)

    def _p1(self, t: RewriteTask) -> RewriteResult:
        rng = random.Random(t.seed)
        order = list(self.phrasings)
        rng.shuffle(order)
        obj = (t.obj or "").lower()
        if obj in WEARABLES and _first_person_noun(t.caption) is not None and rng.random() < 0.7:
            order.insert(0, "not_wearing")
        for ph in order:
            r = p1_rewrite(t.caption, obj, ph)
            if r is not None:
                return RewriteResult(r[0], r[1] if t.affirmed else None, phrasing=ph, calls=1)
        return RewriteResult(None, calls=1)

    def rewrite(self, tasks: list[RewriteTask]) -> list[RewriteResult]:
        out = []
        for t in tasks:
            if t.question is not None:
                r = p2_rewrite(t.caption, t.question)
                out.append(RewriteResult(r[0], r[1] if t.affirmed else None, phrasing=r[2], calls=1)
                           if r else RewriteResult(None, calls=1, extra={"unusable": True}))
            else:
                out.append(self._p1(t))
        return out
