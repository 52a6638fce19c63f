"""P1 (and Rand-P1): negation about objects. Propose an object the caption does not mention,
keep it only if the verifier says it is absent from the image, rewrite the caption to say so."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from ..data.coco import load_coco_captions, load_coco_instances
from ..utils import NegationClipError
from .factory import BackendOptions, RoleFactory
from .prompts import PROMPT_VERSION, get_prompt_set
from .runner import RunConfig, Runner, WorkItem


def p1_items(captions, images_dir: str | os.PathLike | None, pipeline: str = "P1") -> list[WorkItem]:
    """One work item per caption, ordered by image then caption id."""
    items = []
    for c in captions.captions:
        img = captions.images.get(c.image_id)
        fname = img.file_name if img else None
        path = str(Path(images_dir) / fname) if (images_dir and fname) else None
        items.append(WorkItem(work_id=f"{pipeline}:{c.id}", image_id=c.image_id, caption=c.caption,
                              caption_id=c.id, image_file=fname, image_path=path))
    items.sort(key=lambda it: (it.image_id, it.caption_id))
    return items


def _prompt_version(llm_roles: list[BackendOptions]) -> str:
    """The version of the prompt set the LLM roles speak (runs with only rules roles keep
    ``PROMPT_VERSION``: no prompt is sent)."""
    names = sorted({o.prompts for o in llm_roles})
    if len(names) > 1:
        raise NegationClipError(f"the LLM roles speak different prompt sets ({', '.join(names)}); "
                                f"give them one (--prompts)")
    return get_prompt_set(names[0]).version if names else PROMPT_VERSION


def run_p1(captions: str | os.PathLike, out: str | os.PathLike, *,
           instances: str | os.PathLike | None = None, images: str | os.PathLike | None = None,
           proposer: BackendOptions | None = None, verifier: BackendOptions | None = None,
           rewriter: BackendOptions | None = None, random_objects: bool = False,
           candidates: int = 1, affirmed: bool | None = None, shard: tuple[int, int] = (0, 1),
           resume: bool = False, overwrite: bool = False, limit: int | None = None,
           seed: int = 0, chunk_size: int | None = None, cooccurrence: str = "auto",
           propose_per: str = "auto", progress: bool | None = None,
           random_source: str = "auto", prompts: str | None = None, checks: bool = True) -> dict:
    """Run P1 (or Rand-P1 with ``random_objects``) over a COCO captions file; returns counts.

    ``prompts``: the prompt set of the LLM roles, ``released`` (the released
    ``src/data_generation.py``, default) or ``negationclip``; None keeps each
    ``BackendOptions.prompts``. ``propose_per``: ``caption`` (one proposer call per caption, the
    released loop), ``image`` (one call for all captions of an image: the rules proposer, or
    ``negationclip``'s grouped prompt), ``auto`` (default): ``image`` where the proposer can group,
    else ``caption``.
    ``checks`` False: the released loop's acceptance (every parsed proposal is verified, every
    parsed rewrite kept); True (default): objects a caption of the image names are not verified,
    rewrites that do not negate, drop the caption or miss the object are rejected (counted).
    ``random_source`` (Rand-P1): ``llm`` asks the proposer's LLM the paper's "Name a random
    object."; ``categories`` draws uniformly from the category list; ``auto`` (default): ``llm``
    with an LLM proposer, ``categories`` with the rules proposer."""
    proposer = proposer or BackendOptions()
    verifier = verifier or BackendOptions()
    rewriter = rewriter or BackendOptions()
    if prompts is not None:
        get_prompt_set(prompts)  # an unknown name fails before any work
        proposer, verifier, rewriter = (replace(o, prompts=prompts)
                                        for o in (proposer, verifier, rewriter))
    caps = load_coco_captions(captions)
    inst = load_coco_instances(instances) if instances else None
    if verifier.kind != "rules" and not images:
        raise NegationClipError(f"the {verifier.kind} verifier looks at the images: pass --images")
    if images and not Path(images).is_dir():
        raise NegationClipError(f"{images}: images folder not found")
    if propose_per not in ("auto", "image", "caption"):
        raise NegationClipError(f"--propose-per {propose_per!r}: choose auto, image or caption")
    pipeline = "Rand-P1" if random_objects else "P1"
    factory = RoleFactory()
    try:
        if random_objects:
            prop = factory.random_proposer(proposer, instances=inst, source=random_source)
            if getattr(prop, "one_call_per_caption", False):
                propose_per = "caption"  # the released loop: one call per caption, no grouping
        else:
            prop = factory.proposer(proposer, instances=inst,
                                    captions=[c.caption for c in caps.captions],
                                    cooccurrence=cooccurrence)
        per_caption = getattr(prop, "one_call_per_caption", False)
        if propose_per == "auto":
            propose_per = "caption" if per_caption else "image"
        elif propose_per == "image" and per_caption:
            raise NegationClipError(
                f"--propose-per image: the {proposer.prompts} prompts ask per caption (the "
                f"released loop); grouped proposals are negationclip's prompt: pass --prompts "
                f"negationclip, or --propose-per caption")
        ver = factory.verifier(verifier, instances=inst)
        rew = factory.rewriter(rewriter)
        conc = max(o.slots() for o in (proposer, verifier, rewriter))
        llm = [o for o in (proposer, verifier, rewriter) if o.kind != "rules"]
        cfg = RunConfig(out=Path(out), pipeline=pipeline, candidates=candidates,
                        affirmed=(rewriter.kind == "rules") if affirmed is None else affirmed,
                        shard=shard, resume=resume, overwrite=overwrite, limit=limit,
                        chunk_size=chunk_size or max(64, 8 * conc), seed=seed,
                        propose_per=propose_per, progress=progress, checks=checks,
                        prompt_version=_prompt_version(llm))
        runner = Runner(cfg, proposer=prop, verifier=ver, rewriter=rew)
        summary = runner.run(p1_items(caps, images, pipeline))
    finally:
        factory.close()
    summary["out"] = str(out)
    return summary
