"""Proposer, verifier and rewriter on top of any chat backend (``openai`` or ``hf``):
build the versioned prompts, send them in one batch, parse the answers robustly."""

from __future__ import annotations

from ...utils import NegationClipError
from .. import prompts
from ..parse import parse_numbered, parse_objects, parse_rewrite, parse_yes_no
from .base import (ChatBackend, ChatRequest, GroupProposeResult, GroupProposeTask, ProposeResult, ProposeTask, Proposer,
                   RewriteResult, RewriteTask, Rewriter, VerifyResult, VerifyTask, Verifier)


class _ChatRole:
    def __init__(self, chat: ChatBackend, *, temperature: float = 0.0, top_p: float = 1.0,
                 max_tokens: int = 64):
        self.chat = chat
        self.backend = chat.name
        self.model = chat.model
        self.temperature = temperature
        self.top_p = top_p
        self.max_tokens = max_tokens

    def _req(self, messages, seed, image=None, max_tokens=None) -> ChatRequest:
        return ChatRequest(messages=messages, image=image, seed=seed,
                           max_tokens=max_tokens or self.max_tokens,
                           temperature=self.temperature, top_p=self.top_p)

    def close(self) -> None:
        self.chat.close()


class LLMProposer(_ChatRole, Proposer):
    def propose(self, tasks: list[ProposeTask]) -> list[ProposeResult]:
        reqs = [self._req(prompts.propose_messages(t.caption, t.k), t.seed) for t in tasks]
        out = []
        for t, res in zip(tasks, self.chat.chat(reqs)):
            if res.error:
                out.append(ProposeResult([], calls=1, error=res.error))
            else:
                out.append(ProposeResult(parse_objects(res.text, t.k), calls=1))
        return out

    def propose_groups(self, tasks: list[GroupProposeTask]) -> list[GroupProposeResult]:
        reqs = [self._req(prompts.propose_group_messages(t.captions, t.k),
                          t.seeds[0] if t.seeds else 0,
                          max_tokens=self.max_tokens + 12 * len(t.captions) * t.k) for t in tasks]
        out = []
        for t, res in zip(tasks, self.chat.chat(reqs)):
            if res.error:
                out.append(GroupProposeResult([[] for _ in t.captions], calls=1, error=res.error))
                continue
            objs = parse_numbered(res.text, len(t.captions), t.k)
            out.append(GroupProposeResult(objs or [[] for _ in t.captions], calls=1))
        return out


class LLMRandomProposer(_ChatRole, Proposer):
    """Rand-P1 with an LLM, as the paper's code does it: the released prompt ("Name a random
    object.", no caption), one call per caption and candidate (``k`` calls with distinct
    seeds for ``k`` candidates); the answer is cleaned like any proposal."""

    one_call_per_caption = True  # nothing to share between an image's captions

    def describe(self) -> dict:
        return {**super().describe(), "prompt": "released Rand-P1: 'Name a random object.'"}

    def propose(self, tasks: list[ProposeTask]) -> list[ProposeResult]:
        reqs, owner = [], []
        for i, t in enumerate(tasks):
            for j in range(max(1, t.k)):
                reqs.append(self._req(prompts.random_object_messages(), t.seed + j))
                owner.append(i)
        out = [ProposeResult([], calls=0) for _ in tasks]
        for i, res in zip(owner, self.chat.chat(reqs) if reqs else []):
            r = out[i]
            r.calls += 1
            if res.error:
                r.error = r.error or res.error
                continue
            for name in parse_objects(res.text, 1):
                if name not in r.objects:
                    r.objects.append(name)
        return out


class LLMVerifier(_ChatRole, Verifier):
    needs_pixels = True

    def verify(self, tasks: list[VerifyTask]) -> list[VerifyResult]:
        from ...models.transform import open_image

        results: list[VerifyResult | None] = [None] * len(tasks)
        reqs, idx = [], []
        for i, t in enumerate(tasks):
            if not t.image_path:
                results[i] = VerifyResult("image_missing", detail="no image file for this image id")
                continue
            try:
                img = open_image(t.image_path)
            except NegationClipError as e:
                results[i] = VerifyResult("image_missing", detail=str(e))
                continue
            reqs.append(self._req([{"role": "user", "content": prompts.verify_question(t.obj)}],
                                  seed=0, image=img, max_tokens=min(self.max_tokens, 16)))
            idx.append(i)
        for i, res in zip(idx, self.chat.chat(reqs) if reqs else []):
            if res.error:
                results[i] = VerifyResult("error", calls=1, detail=res.error)
                continue
            ans = parse_yes_no(res.text)
            verdict = {"yes": "present", "no": "absent", None: "unparseable"}[ans]
            results[i] = VerifyResult(verdict, calls=1, detail=(res.text or "")[:80])
        return results  # type: ignore[return-value]


class LLMRewriter(_ChatRole, Rewriter):
    def rewrite(self, tasks: list[RewriteTask]) -> list[RewriteResult]:
        reqs, owners = [], []
        for i, t in enumerate(tasks):
            if t.question is not None:
                reqs.append(self._req(prompts.p2_messages(t.caption, t.question), t.seed))
            else:
                reqs.append(self._req(prompts.rewrite_messages(t.caption, t.obj or ""), t.seed))
            owners.append((i, "negated"))
            if t.affirmed:
                msgs = (prompts.p2_affirm_messages(t.caption, t.question) if t.question is not None
                        else prompts.affirm_messages(t.caption, t.obj or ""))
                reqs.append(self._req(msgs, t.seed))
                owners.append((i, "affirmed"))
        out = [RewriteResult(None) for _ in tasks]
        for (i, kind), res in zip(owners, self.chat.chat(reqs)):
            r = out[i]
            r.calls += 1
            if res.error:
                if kind == "negated":
                    r.error = res.error
                continue
            neg, aff = parse_rewrite(res.text)
            if kind == "negated":
                r.negated = neg
                if aff and r.affirmed is None:
                    r.affirmed = aff
            else:
                r.affirmed = neg or aff
        return out
