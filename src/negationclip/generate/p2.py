"""P2: negation beyond objects. VQAv2 yes/no questions whose majority answer is "no"
(actions, attributes, states, existence) are merged with a caption of the same image into a
negated caption ("Is the man smiling?" no + "a man riding a bike" -> "a man who is not
smiling riding a bike")."""

from __future__ import annotations

import os
from pathlib import Path

from ..data.coco import load_coco_captions
from ..data.vqa import load_vqa
from .backends.base import stable_seed
from .factory import BackendOptions, RoleFactory
from .runner import RunConfig, Runner, WorkItem


def p2_items(vqa_items, captions, *, question_types: list[str] | None = None,
             seed: int = 0) -> tuple[list[WorkItem], dict]:
    """Work items for the "no" questions; each takes one caption of its image (a fixed,
    seeded choice). Returns (items, counts of what was left out and why)."""
    by_image = captions.captions_by_image()
    skipped = {"not_yes_no": 0, "answer_yes": 0, "question_type": 0, "no_caption": 0}
    items = []
    prefixes = [q.strip().lower() for q in question_types or [] if q.strip()]
    for q in vqa_items:
        ans = q.majority_answer
        if ans not in ("yes", "no") or (q.answer_type and q.answer_type != "yes/no"):
            skipped["not_yes_no"] += 1
            continue
        if ans != "no":
            skipped["answer_yes"] += 1
            continue
        if prefixes and not any(q.question_type.lower().startswith(p) or
                                q.question.lower().startswith(p) for p in prefixes):
            skipped["question_type"] += 1
            continue
        caps = sorted(by_image.get(q.image_id, []), key=lambda c: c.id)
        if not caps:
            skipped["no_caption"] += 1
            continue
        cap = caps[stable_seed(seed, "p2-caption", q.question_id) % len(caps)]
        img = captions.images.get(q.image_id)
        items.append(WorkItem(work_id=f"P2:{q.question_id}", image_id=q.image_id,
                              caption=cap.caption, caption_id=cap.id,
                              image_file=img.file_name if img else None,
                              question_id=q.question_id, question=q.question, answer="no"))
    items.sort(key=lambda it: (it.image_id, it.question_id))
    return items, skipped


def run_p2(questions: str | os.PathLike, annotations: str | os.PathLike,
           captions: str | os.PathLike, out: str | os.PathLike, *,
           rewriter: BackendOptions | None = None, question_types: list[str] | None = None,
           affirmed: bool | None = None, shard: tuple[int, int] = (0, 1), resume: bool = False,
           overwrite: bool = False, limit: int | None = None, seed: int = 0,
           chunk_size: int | None = None, progress: bool | None = None) -> dict:
    rewriter = rewriter or BackendOptions()
    vqa = load_vqa(questions, annotations)
    caps = load_coco_captions(captions)
    items, skipped = p2_items(vqa, caps, question_types=question_types, seed=seed)
    factory = RoleFactory()
    try:
        # the released code has no P2 prompt (src/data_generation.py is P1 only): negationclip's
        rew = factory.rewriter(rewriter, prompts="negationclip")
        conc = rewriter.slots()
        cfg = RunConfig(out=Path(out), pipeline="P2",
                        affirmed=(rewriter.kind == "rules") if affirmed is None else affirmed,
                        shard=shard, resume=resume, overwrite=overwrite, limit=limit,
                        chunk_size=chunk_size or max(64, 8 * conc), seed=seed, progress=progress)
        summary = Runner(cfg, proposer=None, verifier=None, rewriter=rew).run(items)
    finally:
        factory.close()
    summary.update({f"input_skipped_{k}": v for k, v in skipped.items()})
    summary["out"] = str(out)
    return summary
