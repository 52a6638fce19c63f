"""``coco-negation``: negationclip's own negation tests built from COCO-format instances (COCO,
NegWorld, ...). NOT NegBench: the captions and the metric are negationclip's, so its figures
cannot stand beside NegBench's published ones (for those, ``negbench-mcq`` and
``negbench-retrieval`` read NegBench's released CSVs). It was called "NegBench-style" before.

For every image an object X it contains and a plausible object Y it lacks (chosen in
proportion to how often Y co-occurs with X elsewhere in the dataset, so the negated object is
one the scene could have held) give:

* **Negated retrieval**: the query "a photo with X but no Y" over all the images; a hit at K
  is any of the top K images that contains X and not Y. Also reported: how often the top-1
  image contains the very object the query negates, and the affirmative query "a photo with
  X" as a control.
* **Multiple choice**, three questions per image, one per template type, four options each,
  all built from the same wording family so only the content differs:

  - affirmation: correct "features X"; wrong "does not feature X", "features Y", "features Y but not X"
  - negation:    correct "does not feature Y"; wrong "features Y", "does not feature X", "features Y but not X"
  - hybrid:      correct "features X but not Y"; wrong "features Y but not X", "does not feature X", "features Y"

  Every wrong option is false of the image; a model that ignores negation cannot separate
  "features X" from "does not feature X". Chance is 25%.
"""

from __future__ import annotations

import os
import random
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import torch

from ..data.coco import CocoInstances, load_coco_instances
from ..models import ClipBundle, ImageEmbeddingCache, encode_text
from ..utils import NegationClipError
from .images import check_missing, embed_keys, load_whole
from .metrics import TIE_TOL, choice_accuracy, set_recall_at_k, top1_rate
from .negrefcocog import _model_name

TYPES = ("affirmation", "negation", "hybrid")

# (affirmation, negation, hybrid) wordings; {x} is present, {y} absent in the correct option.
MCQ_FAMILIES: tuple[tuple[str, str, str], ...] = (
    ("This image features {x}.", "This image does not feature {y}.",
     "This image features {x} but not {y}."),
    ("There is {ax} in this image.", "There is no {y} in this image.",
     "There is {ax} but no {y} in this image."),
    ("A photo that includes {ax}.", "A photo that does not include {ay}.",
     "A photo that includes {ax} and not {ay}."),
)
RETRIEVAL_TEMPLATES: tuple[str, ...] = ("a photo with {x} but no {y}",)
AFFIRMATIVE_TEMPLATE = "a photo with {x}"


def _article(noun: str) -> str:
    return ("an " if noun[:1].lower() in "aeiou" else "a ") + noun


def _fill(t: str, x: str, y: str) -> str:
    return t.format(x=x, y=y, ax=_article(x), ay=_article(y))


@dataclass
class Question:
    image: int  # index into the gallery
    kind: str  # affirmation / negation / hybrid
    options: list[str]
    answer: int
    present: str
    absent: str


@dataclass
class Query:
    text: str
    positives: set[int]
    contains_negated: set[int]
    affirmative: str
    affirmative_positives: set[int]


def build_coco_negation(inst: CocoInstances, *, max_images: int | None = None, seed: int = 0
                   ) -> tuple[list[int], list[Question], list[Query], Counter]:
    """(gallery image ids, questions, negated-retrieval queries, skip counts), deterministic in
    ``seed``."""
    present: dict[int, set[str]] = {}
    for iid in sorted(inst.images):
        names = {inst.categories[a.category_id] for a in inst.annotations_by_image.get(iid, [])}
        if names:
            present[iid] = names
    skipped: Counter = Counter()
    skipped["no_objects"] = len(inst.images) - len(present)
    ids = sorted(present)
    if max_images is not None and len(ids) > max_images:
        ids = sorted(random.Random(seed).sample(ids, max_images))
    vocab = sorted(set().union(*present.values())) if present else []
    cooc: dict[str, Counter] = defaultdict(Counter)
    for names in present.values():
        for a in names:
            for b in names:
                if a != b:
                    cooc[a][b] += 1
    gallery = {iid: k for k, iid in enumerate(ids)}
    has = {name: {gallery[i] for i in ids if name in present[i]} for name in vocab}
    questions: list[Question] = []
    queries: dict[str, Query] = {}
    for iid in ids:
        rng = random.Random(f"{seed}:{iid}")
        here = sorted(present[iid])
        absent = [c for c in vocab if c not in present[iid]]
        if not absent:
            skipped["no_absent_category"] += 1
            continue
        x = rng.choice(here)
        y = rng.choices(absent, weights=[cooc[x][c] + 1 for c in absent])[0]
        fam = MCQ_FAMILIES[rng.randrange(len(MCQ_FAMILIES))]
        # A(p, q) says p is present, N(p, q) says q is absent, H(p, q) says both.
        A, N, H = (lambda p, q, t=t: _fill(t, p, q) for t in fam)
        specs = {
            "affirmation": (A(x, y), [N(y, x), A(y, x), H(y, x)]),
            "negation": (N(x, y), [A(y, x), N(y, x), H(y, x)]),
            "hybrid": (H(x, y), [H(y, x), N(y, x), A(y, x)]),
        }
        for kind in TYPES:
            correct, wrong = specs[kind]
            opts = [correct] + wrong
            order = list(range(4))
            rng.shuffle(order)
            questions.append(Question(gallery[iid], kind, [opts[o] for o in order],
                                      order.index(0), x, y))
        q = _fill(RETRIEVAL_TEMPLATES[rng.randrange(len(RETRIEVAL_TEMPLATES))], x, y)
        if q not in queries:
            queries[q] = Query(q, has[x] - has[y], has[x] & has[y], _fill(AFFIRMATIVE_TEMPLATE, x, y),
                               has[x])
    return ids, questions, list(queries.values()), skipped


def evaluate_coco_negation(bundle: ClipBundle, instances: str | os.PathLike | CocoInstances,
                      image_root: str | os.PathLike, *, cache: ImageEmbeddingCache | None = None,
                      max_images: int | None = None, seed: int = 0, batch_size: int = 64,
                      max_missing: float = 0.05, missing_out: str | os.PathLike | None = None,
                      model_name: str | None = None, benchmark: str = "coco-negation", tie_tol: float = TIE_TOL) -> dict:
    """MCQ accuracy (``accuracy``, and per template type) and negated-retrieval recall.

    Options are shuffled, so "first maximum" has no privileged position: ``accuracy``
    (= ``accuracy_official``) is the first maximum within ``tie_tol`` of the best."""
    t0 = time.perf_counter()
    inst = instances if isinstance(instances, CocoInstances) else load_coco_instances(instances)
    ids, questions, queries, skipped = build_coco_negation(inst, max_images=max_images, seed=seed)
    if not questions:
        raise NegationClipError(f"{benchmark}: no image has both a present and an absent category")
    root = Path(image_root)
    paths = [str(root / inst.images[i].file_name) for i in ids]
    emb = embed_keys(bundle, paths, load_whole, cache, batch_size=batch_size, desc=f"{benchmark} images")
    check_missing(benchmark, emb.failed, len(paths), max_missing, missing_out)
    ok = torch.tensor([bool(emb.ok[emb.index[p]]) for p in paths], dtype=torch.bool)
    img = emb.rows(paths)
    texts = list(dict.fromkeys([o for q in questions for o in q.options]
                               + [q.text for q in queries] + [q.affirmative for q in queries]))
    tix = {t: i for i, t in enumerate(texts)}
    temb = encode_text(bundle, texts, show_progress=True)
    out: dict = {"benchmark": benchmark, "model": _model_name(bundle, model_name)}

    # multiple choice
    mq = [q for q in questions if bool(ok[q.image])]
    if mq:
        scores = torch.stack([temb[[tix[o] for o in q.options]] @ img[q.image] for q in mq])
    else:
        scores = torch.zeros(0, 4)
    answers = torch.tensor([q.answer for q in mq], dtype=torch.long)
    if mq:
        out |= choice_accuracy(scores, answers, tie_tol)
    else:
        out |= {"accuracy": None, "accuracy_official": None, "accuracy_strict": None,
                "correct": 0, "total": 0, "ties": 0}
    for kind in TYPES:
        m = torch.tensor([q.kind == kind for q in mq], dtype=torch.bool).reshape(-1)
        n = int(m.sum())
        out[f"mcq_{kind}_accuracy"] = choice_accuracy(scores[m], answers[m], tie_tol)["accuracy"] if n else None
        out[f"mcq_{kind}_total"] = n

    # negated retrieval over the readable gallery
    good = ok.nonzero().flatten().tolist()
    remap = {g: k for k, g in enumerate(good)}
    gal = img[good]

    def remapped(s: set[int]) -> set[int]:
        return {remap[i] for i in s if i in remap}

    rq = [q for q in queries if remapped(q.positives)]
    out["retrieval_queries"] = len(rq)
    if rq and good:
        sim = temb[[tix[q.text] for q in rq]] @ gal.T
        out |= {f"retrieval_neg_{k}": v for k, v in set_recall_at_k(sim, [remapped(q.positives) for q in rq]).items()}
        out["retrieval_neg_top1_contains_negated"] = top1_rate(sim, [remapped(q.contains_negated) for q in rq])
        asim = temb[[tix[q.affirmative] for q in rq]] @ gal.T
        out |= {f"retrieval_aff_{k}": v for k, v in
                set_recall_at_k(asim, [remapped(q.affirmative_positives) for q in rq]).items()}
    elapsed = time.perf_counter() - t0
    out |= {"images": len(good), "items_per_second": (len(questions) + len(queries)) / elapsed,
            "missing_images": len(emb.failed), "skipped_images": dict(skipped), "seed": seed,
            "seconds": elapsed}
    return out
