"""Negation score for text-to-image: for "X with no Y", is Y absent from the image (and X there)?

The judge is pluggable. A judge answers, per (image, noun phrase), the probability that the
thing is visible (or None when it cannot tell). Two are provided:

- ``ClipJudge``: zero-shot with any CLIP; it never relies on the judge understanding
  negation: "a photo of X and Y" is compared with "a photo of X" (does adding Y make the
  description fit better?). A plain CLIP is the honest choice; judging with the NegationCLIP
  under test would grade its own homework.
- ``VqaJudge``: asks a vision-language model "Does this image show Y?"; it wraps any
  ``ask(images, questions) -> answers`` callable, so the generation stage's ``openai``/``hf``
  vision backends plug in through ``VqaJudge.from_backend`` without this module depending on
  their internals.

Fractions are over images the judge could decide; the rest are counted, never dropped silently.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol, Sequence

import torch
from PIL import Image

from ..utils import JsonlWriter, NegationClipError, atomic_write_json, progress, read_jsonl
from .diffusion import MANIFEST

JUDGEMENTS = "judgements.jsonl"


class PresenceJudge(Protocol):
    name: str

    def presence(self, images: Sequence[Image.Image], things: Sequence[str],
                 contexts: Sequence[str | None]) -> list[float | None]:
        """P(thing visible) per image, in [0, 1]; None when the judge cannot tell."""


Scorer = Callable[[Sequence[Image.Image], Sequence[str]], torch.Tensor]


class ClipJudge:
    """Zero-shot presence by a CLIP: softmax(scale * [cos(img, "a photo of C and T."),
    cos(img, "a photo of C.")])[0], where C is the context (X) and T the thing.

    For the control (is X there?) the context is empty: "a photo of X." vs "a photo.".
    ``scorer(images, texts)`` returns the [N_images, N_texts] cosine matrix.
    """

    name = "clip"

    def __init__(self, scorer: Scorer, *, logit_scale: float = 100.0,
                 with_template: str = "a photo of {context} and {thing}.",
                 without_template: str = "a photo of {context}.",
                 alone_template: str = "a photo of {thing}.", null_text: str = "a photo."):
        self.scorer = scorer
        self.logit_scale = float(logit_scale)
        self.with_template, self.without_template = with_template, without_template
        self.alone_template, self.null_text = alone_template, null_text

    @classmethod
    def from_bundle(cls, bundle, batch_size: int = 32, **kw) -> "ClipJudge":
        from ..models import encode_images, encode_text

        def scorer(images, texts):
            i = encode_images(bundle, list(images), batch_size=batch_size, show_progress=False)
            t = encode_text(bundle, list(texts), batch_size=batch_size, show_progress=False)
            return i.float() @ t.float().T

        judge = cls(scorer, **kw)
        judge.name = f"clip:{bundle.provenance.get('source', '?')}"
        return judge

    def texts_for(self, thing: str, context: str | None) -> tuple[str, str]:
        if context:
            return (self.with_template.format(context=context, thing=thing),
                    self.without_template.format(context=context))
        return self.alone_template.format(thing=thing), self.null_text

    def presence(self, images, things, contexts):
        if not images:
            return []
        pairs = [self.texts_for(t, c) for t, c in zip(things, contexts)]
        texts = sorted({x for p in pairs for x in p})
        col = {t: j for j, t in enumerate(texts)}
        # the same image object asked several questions is encoded once
        row: dict[int, int] = {}
        uniq = []
        for im in images:
            if id(im) not in row:
                row[id(im)] = len(uniq)
                uniq.append(im)
        sims = self.scorer(uniq, texts)
        if tuple(sims.shape) != (len(uniq), len(texts)):
            raise NegationClipError(f"CLIP judge: scorer returned shape {tuple(sims.shape)}, "
                                    f"expected {(len(uniq), len(texts))}")
        out = []
        for im, (w, wo) in zip(images, pairs):
            i = row[id(im)]
            logits = self.logit_scale * torch.stack([sims[i, col[w]], sims[i, col[wo]]])
            out.append(float(torch.softmax(logits.float(), 0)[0]))
        return out


Ask = Callable[[Sequence[Image.Image], Sequence[str]], Sequence[str | None]]


def parse_yes_no(text: str | None) -> str | None:
    """'yes' / 'no' from a short answer, None if neither (shared parser when available)."""
    try:
        from ..generate.parse import parse_yes_no as shared
    except ImportError:  # pragma: no cover - the generation stage is part of the package
        shared = None
    if shared is not None:
        return shared(text)
    low = (text or "").strip().lower()
    return "yes" if low.startswith("yes") else "no" if low.startswith("no") else None


class VqaJudge:
    """Presence by asking a VLM; answers that are neither yes nor no count as undecided."""

    name = "vqa"

    def __init__(self, ask: Ask, *,
                 question: str = "Does this image show {thing}? Answer only with 'yes' or 'no'."):
        self.ask = ask
        self.question = question

    def presence(self, images, things, contexts):
        answers = list(self.ask(list(images), [self.question.format(thing=t) for t in things]))
        if len(answers) != len(images):
            raise NegationClipError(f"VQA judge: got {len(answers)} answers for {len(images)} images")
        out: list[float | None] = []
        for a in answers:
            yn = parse_yes_no(a)
            out.append(None if yn is None else 1.0 if yn == "yes" else 0.0)
        return out

    @classmethod
    def from_backend(cls, kind: str, model: str | None = None, **options) -> "VqaJudge":
        """A judge on the generation stage's chat backends (``openai`` server or local ``hf``)."""
        from ..generate.backends.base import ChatRequest
        from ..generate.factory import BackendOptions, RoleFactory

        chat = RoleFactory().chat(BackendOptions(kind=kind, model=model, **options), "verifier")

        def ask(images, questions):
            reqs = [ChatRequest(messages=[{"role": "user", "content": q}], image=im,
                                max_tokens=8, temperature=0.0) for im, q in zip(images, questions)]
            return [r.text if r.error is None else None for r in chat.chat(reqs)]

        judge = cls(ask)
        judge.name = f"vqa:{kind}:{model or 'default'}"
        return judge


@dataclass
class NegationScore:
    judge: str
    images: int                        # images judged (had a Y and could be read)
    y_absent: int                      # Y judged absent
    y_decided: int                     # images where the judge decided on Y
    x_present: int
    x_decided: int
    both: int                          # Y absent and X present
    both_decided: int
    skipped: dict = field(default_factory=dict)
    per_prompt: dict = field(default_factory=dict)

    @staticmethod
    def _frac(a: int, b: int) -> float | None:
        return round(a / b, 6) if b else None

    def to_json(self) -> dict:
        return {"judge": self.judge, "images": self.images,
                "negation_score": self._frac(self.y_absent, self.y_decided),
                "x_present": self._frac(self.x_present, self.x_decided),
                "both": self._frac(self.both, self.both_decided),
                "counts": {"y_absent": self.y_absent, "y_decided": self.y_decided,
                           "x_present": self.x_present, "x_decided": self.x_decided,
                           "both": self.both, "both_decided": self.both_decided},
                "skipped": self.skipped, "per_prompt": self.per_prompt}

    def lines(self) -> list[str]:
        j = self.to_json()
        pct = lambda v: "n/a" if v is None else f"{100 * v:.1f}%"  # noqa: E731
        out = [f"judge {self.judge}: {self.images} images",
               f"  negation score (Y absent): {pct(j['negation_score'])} "
               f"({self.y_absent}/{self.y_decided})",
               f"  control (X present):       {pct(j['x_present'])} ({self.x_present}/{self.x_decided})",
               f"  both:                      {pct(j['both'])} ({self.both}/{self.both_decided})"]
        if self.skipped:
            out.append("  skipped: " + ", ".join(f"{k} {v}" for k, v in sorted(self.skipped.items())))
        return out


def summarize(judgements: Sequence[dict], judge: str, skipped: dict | None = None,
              threshold: float = 0.5) -> NegationScore:
    """Fractions from per-image judgements (``p_y``/``p_x``: presence probabilities or None)."""
    s = NegationScore(judge, 0, 0, 0, 0, 0, 0, 0, dict(skipped or {}))
    for j in judgements:
        s.images += 1
        py, px = j.get("p_y"), j.get("p_x")
        pp = s.per_prompt.setdefault(j["id"], {"prompt": j.get("prompt"), "images": 0,
                                               "y_absent": 0, "y_decided": 0,
                                               "x_present": 0, "x_decided": 0})
        pp["images"] += 1
        if py is not None:
            s.y_decided += 1
            pp["y_decided"] += 1
            if py < threshold:
                s.y_absent += 1
                pp["y_absent"] += 1
        if px is not None:
            s.x_decided += 1
            pp["x_decided"] += 1
            if px >= threshold:
                s.x_present += 1
                pp["x_present"] += 1
        if py is not None and px is not None:
            s.both_decided += 1
            s.both += int(py < threshold and px >= threshold)
    return s


def score_run(run_dir: str | os.PathLike, judge: PresenceJudge, *, out: str | os.PathLike | None = None,
              batch_size: int = 16, threshold: float = 0.5) -> NegationScore:
    """Judge every image of a generation folder (``manifest.jsonl``) and write
    ``judgements.jsonl`` (resumable, per judge) and ``negation_score.json`` into ``out``."""
    from ..models import open_image

    run = Path(run_dir)
    manifest = read_jsonl(run / MANIFEST)
    if not manifest:
        raise NegationClipError(f"{run / MANIFEST}: no generated images to judge")
    out_dir = Path(out) if out else run
    jpath = out_dir / f"judgements.{_safe(judge.name)}.jsonl"
    latest = {}
    for r in manifest:  # a resumed generation may list an image twice: keep the latest
        latest[(r["id"], int(r["seed"]))] = r
    skipped: dict[str, int] = {}
    todo = []
    for r in latest.values():
        if not r.get("absent"):
            skipped["no 'absent' (Y) in prompt"] = skipped.get("no 'absent' (Y) in prompt", 0) + 1
        elif r.get("nsfw_flagged"):
            skipped["blanked by the safety checker"] = skipped.get("blanked by the safety checker", 0) + 1
        else:
            todo.append(r)
    done = {}
    for j in read_jsonl(jpath, repair=True):  # latest judgement per image wins
        done[(j["id"], j["seed"])] = j
    current = {(r["id"], int(r["seed"])): r for r in todo}
    done = {k: j for k, j in done.items()  # an image regenerated for an edited prompt: rejudge
            if k in current and j.get("prompt") == current[k]["prompt"]
            and j.get("absent") == current[k]["absent"] and j.get("present") == current[k].get("present")}
    pending = [r for r in todo if (r["id"], int(r["seed"])) not in done]
    with JsonlWriter(jpath) as w, progress(total=len(pending), desc=f"judge {judge.name}",
                                            unit="img") as bar:
        for i in range(0, len(pending), batch_size):
            chunk, images = [], []
            for r in pending[i:i + batch_size]:
                try:
                    images.append(open_image(run / r["file"]))
                    chunk.append(r)
                except NegationClipError:
                    skipped["unreadable image"] = skipped.get("unreadable image", 0) + 1
            if chunk:
                # one call: "is Y there (in X)?" for every image, then "is X there?" where known
                xs = [(k, r) for k, r in enumerate(chunk) if r.get("present")]
                probs = judge.presence(images + [images[k] for k, _ in xs],
                                       [r["absent"] for r in chunk] + [r["present"] for _, r in xs],
                                       [r.get("present") for r in chunk] + [None] * len(xs))
                if len(probs) != len(chunk) + len(xs):
                    raise NegationClipError(f"judge {judge.name}: {len(probs)} answers for "
                                            f"{len(chunk) + len(xs)} questions")
                p_y, p_x_sub = list(probs[:len(chunk)]), list(probs[len(chunk):])
                p_x: list[float | None] = [None] * len(chunk)
                for (k, _), v in zip(xs, p_x_sub):
                    p_x[k] = v
                for r, py, px in zip(chunk, p_y, p_x):
                    rec = {"id": r["id"], "seed": int(r["seed"]), "prompt": r["prompt"],
                           "file": r["file"], "absent": r["absent"], "present": r.get("present"),
                           "p_y": py, "p_x": px}
                    w.write(rec)
                    done[(r["id"], int(r["seed"]))] = rec
            bar.update(len(pending[i:i + batch_size]))
    judged = [done[(r["id"], int(r["seed"]))] for r in todo if (r["id"], int(r["seed"])) in done]
    score = summarize(judged, judge.name, skipped, threshold)
    atomic_write_json(out_dir / f"negation_score.{_safe(judge.name)}.json",
                      {**score.to_json(), "run": str(run), "threshold": threshold})
    return score


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:80]
