"""The resumable, shardable driver shared by P1, Rand-P1 and P2.

Work items (one caption for P1, one question for P2) are processed in a fixed order (by image,
so the five captions of an image meet the verification cache together) and in chunks: each
role gets one batch per chunk, which the ``openai`` backend runs concurrently and the ``hf``
backend in model batches. Results are written in item order: the records of an item, then its
ledger line. A killed run has therefore written a prefix; ``--resume`` drops the records of
an item whose ledger line is missing and carries on, so the final file equals an
uninterrupted run's. Items that failed on a model error are retried by ``--resume``.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from ..utils import JsonlWriter, NegationClipError, atomic_write_text, progress, read_jsonl
from ..utils import checks
from ..utils.paths import OutputLock
from .backends.base import (GroupProposeTask, ProposeTask, Proposer, RewriteTask, Rewriter, VerifyTask, Verifier,
                            stable_seed)
from .grammar import mentions
from .parse import check_affirmed, check_negated
from .prompts import PROMPT_VERSION
from .records import GenRecord, cache_path, ledger_path, read_ledger


@dataclass
class WorkItem:
    work_id: str
    image_id: int
    caption: str
    caption_id: int | None = None
    image_file: str | None = None  # as named in the dataset file
    image_path: str | None = None  # resolved against the images folder, if one was given
    question_id: int | None = None
    question: str | None = None
    answer: str | None = None


@dataclass
class RunConfig:
    out: Path
    pipeline: str  # "P1", "Rand-P1" or "P2"
    candidates: int = 1
    affirmed: bool = True
    shard: tuple[int, int] = (0, 1)
    resume: bool = False
    overwrite: bool = False
    limit: int | None = None
    chunk_size: int = 64
    seed: int = 0
    propose_per: str = "image"  # "image": one proposer call for all captions of an image
    progress: bool | None = None  # None: follow NEGATIONCLIP_NO_PROGRESS
    prompt_version: str = PROMPT_VERSION  # of the prompt set the LLM roles speak (rules: unused)
    # False: the released loop's acceptance (every parsed proposal verified, every parsed
    # rewrite kept); True: objects a caption of the image names are not verified and rewrites
    # that do not negate / drop the caption / miss the object are rejected (counted)
    checks: bool = True

    def header(self, roles: dict) -> dict:
        return {"type": "run", "pipeline": self.pipeline, "candidates": self.candidates,
                "propose_per": self.propose_per,
                "affirmed": self.affirmed, "shard": list(self.shard), "seed": self.seed,
                **({} if self.checks else {"checks": False}),
                "backends": roles, "prompt_version": self.prompt_version}


def parse_shard(text: str) -> tuple[int, int]:
    """'i/N' -> (i, N) with 0 <= i < N."""
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise NegationClipError(f"--shard {text!r}: expected i/N, e.g. 0/4") from None
    if n < 1 or not 0 <= i < n:
        raise NegationClipError(f"--shard {text!r}: need 0 <= i < N")
    return i, n


def in_shard(image_id: int, shard: tuple[int, int]) -> bool:
    """Shards split by image (all captions of an image share one shard and its cache)."""
    i, n = shard
    if n == 1:
        return True
    h = int(hashlib.sha1(f"image:{image_id}".encode()).hexdigest()[:12], 16)
    return h % n == i


@dataclass
class _ItemState:
    item: WorkItem
    outcomes: Counter = field(default_factory=Counter)
    calls: Counter = field(default_factory=Counter)
    records: list = field(default_factory=list)
    errors: list = field(default_factory=list)
    missing_image: str | None = None
    candidates: list = field(default_factory=list)  # [(index, object)]
    verdicts: dict = field(default_factory=dict)  # index -> verdict
    affirmed_rejected: int = 0


class Runner:
    def __init__(self, cfg: RunConfig, *, proposer: Proposer | None, verifier: Verifier | None,
                 rewriter: Rewriter):
        if cfg.pipeline not in ("P1", "Rand-P1", "P2"):
            raise NegationClipError(f"unknown pipeline {cfg.pipeline!r}")
        cfg.limit = checks.optional_positive_int(cfg.limit, "limit")  # -1 used to drop the last item
        cfg.chunk_size = checks.positive_int(cfg.chunk_size, "chunk_size")
        if cfg.resume and cfg.overwrite:
            raise NegationClipError(f"{cfg.out}: resume and overwrite contradict each other; pass one")
        if cfg.candidates < 1:
            raise NegationClipError("--candidates must be >= 1")
        self.cfg = cfg
        self.proposer, self.verifier, self.rewriter = proposer, verifier, rewriter
        self.roles = {"rewriter": rewriter.describe()}
        if cfg.pipeline != "P2":
            if proposer is None or verifier is None:
                raise NegationClipError("P1 needs a proposer and a verifier")
            self.roles = {"proposer": proposer.describe(), "verifier": verifier.describe(),
                          **self.roles}
        self.cache: dict[str, str] = {}
        self.summary: Counter = Counter()

    # --- bookkeeping ------------------------------------------------------------------------
    def _prepare(self) -> set[str]:
        cfg, out = self.cfg, Path(self.cfg.out)
        led, cache = ledger_path(out), cache_path(out)
        exists = any(p.exists() and p.stat().st_size > 0 for p in (out, led))
        if exists and not cfg.resume:
            if not cfg.overwrite:
                raise NegationClipError(f"{out}: already exists; pass --resume to continue that "
                                        f"run or --overwrite to start again")
        if cfg.overwrite and not cfg.resume:
            for p in (out, led, cache):
                p.unlink(missing_ok=True)
        header, items = read_ledger(out) if cfg.resume else (None, {})
        want = cfg.header(self.roles)
        if header is not None:
            for key in ("pipeline", "candidates", "propose_per", "affirmed", "shard", "seed", "backends",
                        "prompt_version", "checks"):
                if header.get(key) != want.get(key):
                    raise NegationClipError(
                        f"{led}: --resume with different settings ({key}: was "
                        f"{header.get(key)!r}, now {want.get(key)!r}); use another --out")
        done = {wid for wid, e in items.items() if e.get("status") == "done"}
        if out.exists():
            recs = read_jsonl(out, repair=True)
            ids: set = set()
            kept = []
            for r in recs:  # records of an item that never got its ledger line, and duplicates
                if r.get("work_id") not in done:
                    continue
                if r.get("id") in ids:
                    self.summary["duplicates_dropped"] += 1
                    continue
                ids.add(r.get("id"))
                kept.append(r)
            if len(kept) != len(recs):
                atomic_write_text(out, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in kept))
        if header is None:
            with JsonlWriter(led) as w:
                w.write(want)
        if cfg.resume:
            for rec in read_jsonl(cache, repair=True):
                if isinstance(rec, dict) and "k" in rec and "v" in rec:
                    self.cache[rec["k"]] = rec["v"]
        return done

    # --- the stages -------------------------------------------------------------------------
    def _propose(self, states: list[_ItemState]) -> None:
        k, seed = self.cfg.candidates, self.cfg.seed
        proposals: list[tuple[list[str], str | None]] = []
        if self.cfg.propose_per == "image":
            groups: dict[int, list[_ItemState]] = {}
            for s in states:
                groups.setdefault(s.item.image_id, []).append(s)
            tasks, members = [], []
            for image_id, group in groups.items():
                sib = self.siblings[image_id]
                tasks.append(GroupProposeTask([c for _, c in sib], k,
                                              [stable_seed(seed, w, "propose") for w, _ in sib]))
                members.append(group)
            by_id: dict[str, tuple[list[str], str | None]] = {}
            for group, task, res in zip(members, tasks, self.proposer.propose_groups(tasks)):
                group[0].calls["proposer"] += res.calls
                for (w, _), objs in zip(self.siblings[group[0].item.image_id], res.objects):
                    by_id[w] = (objs, res.error)
            proposals = [by_id.get(s.item.work_id, ([], "proposer: no answer")) for s in states]
        else:
            tasks1 = [ProposeTask(s.item.caption, k, stable_seed(seed, s.item.work_id, "propose"))
                      for s in states]
            for s, res in zip(states, self.proposer.propose(tasks1)):
                s.calls["proposer"] += res.calls
                proposals.append((res.objects, res.error))
        for s, (objs, error) in zip(states, proposals):
            if error:
                s.outcomes["error"] += k
                s.errors.append(f"proposer: {error}")
                continue
            objs = list(objs)[:k]
            if len(objs) < k:
                s.outcomes["proposal_unparseable"] += k - len(objs)
            sib = [c for _, c in self.siblings.get(s.item.image_id, [])] or [s.item.caption]
            for j, obj in enumerate(objs):
                # an object any caption of this image names is in the image: not a candidate
                if self.cfg.checks and any(mentions(c, obj) for c in sib):
                    s.outcomes["proposal_mentioned"] += 1
                else:
                    s.candidates.append((j, obj))

    def _verify(self, states: list[_ItemState], cache_w: JsonlWriter) -> None:
        name = self.verifier.cache_name()
        pending: dict[str, int] = {}
        tasks: list[VerifyTask] = []
        owners: list[_ItemState] = []
        wanted: list[tuple[_ItemState, int, str]] = []
        for s in states:
            for j, obj in s.candidates:
                key = json.dumps([name, s.item.image_id, obj])
                wanted.append((s, j, key))
                if key in self.cache or key in pending:
                    continue
                pending[key] = len(tasks)
                tasks.append(VerifyTask(s.item.image_id, s.item.image_path, obj))
                owners.append(s)
        fresh: dict[str, str] = {}
        results = self.verifier.verify(tasks) if tasks else []
        for key, idx in pending.items():
            res = results[idx]
            owners[idx].calls["verifier"] += res.calls
            fresh[key] = res.verdict
            if res.verdict == "image_missing":
                owners[idx].missing_image = res.detail or str(tasks[idx].image_path)
            if res.verdict == "error":
                owners[idx].errors.append(f"verifier: {res.detail}")
            if res.verdict in ("absent", "present", "unsure", "unparseable"):
                self.cache[key] = res.verdict
                cache_w.write({"k": key, "v": res.verdict})
        for s, j, key in wanted:
            verdict = self.cache.get(key) or fresh.get(key, "error")
            s.verdicts[j] = verdict
            if verdict == "image_missing" and s.missing_image is None:
                s.missing_image = str(s.item.image_path or s.item.image_file)
            if verdict == "error" and not s.errors:
                s.errors.append("verifier: failed")

    def _rewrite(self, states: list[_ItemState]) -> None:
        tasks, where = [], []
        p2 = self.cfg.pipeline == "P2"
        for s in states:
            if p2:
                cands = [(0, None)]
            else:
                cands = []
                for j, obj in s.candidates:
                    v = s.verdicts.get(j, "error")
                    if v == "absent":
                        cands.append((j, obj))
                    else:
                        s.outcomes[{"unparseable": "verify_unparseable"}.get(v, v)] += 1
            for j, obj in cands:
                rid = f"{s.item.work_id}#{j}"
                tasks.append(RewriteTask(s.item.caption, obj=obj, question=s.item.question,
                                         affirmed=self.cfg.affirmed,
                                         seed=stable_seed(self.cfg.seed, rid, "rewrite")))
                where.append((s, j, obj))
        results = self.rewriter.rewrite(tasks) if tasks else []
        for (s, j, obj), res in zip(where, results):
            s.calls["rewriter"] += res.calls
            if res.error:
                s.outcomes["error"] += 1
                s.errors.append(f"rewriter: {res.error}")
                continue
            if res.negated is None:
                s.outcomes["question_unusable" if res.extra.get("unusable") else
                           "rewrite_unparseable"] += 1
                continue
            why = (check_negated(s.item.caption, res.negated, obj, question=s.item.question)
                   if self.cfg.checks else None)
            if why:
                s.outcomes["rewrite_rejected"] += 1
                continue
            affirmed = res.affirmed if self.cfg.affirmed else None
            if affirmed is not None and check_affirmed(s.item.caption, affirmed, obj):
                affirmed = None
                s.affirmed_rejected += 1
            s.outcomes["accepted"] += 1
            it = s.item
            s.records.append(GenRecord(
                id=f"{it.work_id}#{j}", work_id=it.work_id, pipeline=self.cfg.pipeline,
                image_id=it.image_id, image_file=it.image_file, caption_id=it.caption_id,
                original=it.caption, negated=res.negated, affirmed=affirmed, object=obj,
                question_id=it.question_id, question=it.question, answer=it.answer,
                phrasing=res.phrasing, backends=self.roles, prompt_version=self.cfg.prompt_version))

    # --- the loop ---------------------------------------------------------------------------
    def run(self, items: list[WorkItem]) -> dict:
        """Process ``items`` into ``cfg.out`` holding its exclusive lock (``OUT.lock``): a
        second process on the same output is refused, naming the holder, instead of both
        appending every record."""
        with OutputLock(self.cfg.out):
            return self._run(items)

    def _run(self, items: list[WorkItem]) -> dict:
        cfg = self.cfg
        seen: set[str] = set()
        for it in items:
            if it.work_id in seen:
                raise NegationClipError(f"duplicate work item {it.work_id} in the input")
            seen.add(it.work_id)
        mine = [it for it in items if in_shard(it.image_id, cfg.shard)]
        self.siblings: dict[int, list[tuple[str, str]]] = {}
        for it in sorted(mine, key=lambda x: (x.image_id, x.caption_id or 0, x.work_id)):
            self.siblings.setdefault(it.image_id, []).append((it.work_id, it.caption))
        if cfg.limit is not None:
            mine = mine[: cfg.limit]
        done = self._prepare()
        todo = [it for it in mine if it.work_id not in done]
        self.summary.update(items_total=len(mine), items_done_before=len(mine) - len(todo))
        out = Path(cfg.out)
        bar = progress(total=len(todo), desc=f"generate {cfg.pipeline}", unit="item",
                       disable=None if cfg.progress is None else not cfg.progress)
        try:
            with JsonlWriter(out, fsync=False) as rec_w, \
                    JsonlWriter(ledger_path(out), fsync=False) as led_w, \
                    JsonlWriter(cache_path(out), fsync=False) as cache_w:
                start = 0
                while start < len(todo):
                    end = min(len(todo), start + cfg.chunk_size)
                    while end < len(todo) and todo[end].image_id == todo[end - 1].image_id:
                        end += 1  # never split the captions of an image across chunks
                    states = [_ItemState(it) for it in todo[start:end]]
                    start = end
                    if cfg.pipeline != "P2":
                        self._propose(states)
                        self._verify(states, cache_w)
                    self._rewrite(states)
                    for s in states:
                        for r in s.records:
                            rec_w.write(r.to_json())
                        status = "error" if s.errors else "done"
                        entry = {"type": "item", "work_id": s.item.work_id, "status": status,
                                 "image_id": s.item.image_id, "records": len(s.records),
                                 "outcomes": dict(s.outcomes), "calls": dict(s.calls)}
                        if s.affirmed_rejected:
                            entry["affirmed_rejected"] = s.affirmed_rejected
                        if s.missing_image:
                            entry["missing_image"] = s.missing_image
                        if s.errors:
                            entry["errors"] = s.errors[:3]
                        led_w.write(entry)
                        self.summary["items"] += 1
                        self.summary["items_error"] += status == "error"
                        self.summary["records"] += len(s.records)
                        for k, v in s.calls.items():
                            self.summary[f"calls_{k}"] += v
                        for k, v in s.outcomes.items():
                            self.summary[f"outcome_{k}"] += v
                    _sync(rec_w, led_w)  # flushed per record (a kill loses nothing); fsync per chunk
                    bar.set_postfix(accepted=self.summary["records"], refresh=False)
                    bar.update(len(states))
        finally:
            bar.close()
        return dict(self.summary)


def _sync(*writers: JsonlWriter) -> None:
    for w in writers:
        w.sync()


def close_roles(*roles) -> None:
    seen = set()
    for r in roles:
        if r is not None and id(r) not in seen:
            seen.add(id(r))
            r.close()
