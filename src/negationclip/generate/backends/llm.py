"""Proposer, verifier and rewriter on top of any chat backend (``openai`` or ``hf``): build
the messages of a prompt set (``prompts/``: ``released`` by default, or ``negationclip``),
send them in one batch, parse the answers by the set's rules (unreadable ones are skips)."""

from __future__ import annotations

from ...utils import NegationClipError
from ..prompts import PromptSet, get_prompt_set
from .base import (ChatBackend, ChatRequest, GroupProposeResult, GroupProposeTask, ProposeResult, ProposeTask, Proposer,
                   RewriteResult, RewriteTask, Rewriter, VerifyResult, VerifyTask, Verifier)


class _ChatRole:
    """A role on a chat backend speaking prompt set ``prompts`` (a name or a ``PromptSet``;
    default ``released``). ``temperature``/``top_p``/``max_tokens`` None: the set's."""

    role = ""

    def __init__(self, chat: ChatBackend, *, prompts: str | PromptSet | None = None,
                 temperature: float | None = None, top_p: float | None = None,
                 max_tokens: int | None = None):
        self.chat = chat
        self.backend = chat.name
        self.model = chat.model
        self.prompts = get_prompt_set(prompts)
        self.temperature = (self.prompts.temperature[self.role] if temperature is None
                            else temperature)
        top_p = self.prompts.top_p if top_p is None else top_p
        self.top_p = top_p if self.temperature > 0 else 1.0  # greedy: no nucleus
        self.max_tokens = self.prompts.tokens(self.role, max_tokens)

    def describe(self) -> dict:
        return {**super().describe(), "prompts": self.prompts.name}  # type: ignore[misc]

    def _req(self, messages, seed, image=None, max_tokens=None, **kw) -> ChatRequest:
        return ChatRequest(messages=messages, image=image, seed=seed,
                           max_tokens=max_tokens or self.max_tokens,
                           temperature=self.temperature, top_p=self.top_p, **kw)

    def close(self) -> None:
        self.chat.close()


class LLMProposer(_ChatRole, Proposer):
    role = "proposer"

    @property
    def one_call_per_caption(self) -> bool:
        """No grouped prompt in the set: the runner asks per caption."""
        return not self.prompts.grouped

    def _messages(self, caption: str, k: int) -> list[dict]:
        return self.prompts.propose(caption, k)

    def _parse(self, text, k: int) -> list[str]:
        return self.prompts.parse_proposal(text, k)

    def _per_call(self) -> bool:
        return self.prompts.one_call_per_candidate

    def propose(self, tasks: list[ProposeTask]) -> list[ProposeResult]:
        """One call per caption asking for ``k`` objects, or, where the set asks for one
        object per call (``released``), ``k`` calls with distinct seeds."""
        per_call = self._per_call()
        reqs, owner = [], []
        for i, t in enumerate(tasks):
            for j in range(max(1, t.k) if per_call else 1):
                reqs.append(self._req(self._messages(t.caption, t.k), t.seed + j))
                owner.append(i)
        out = [ProposeResult([], calls=0) for _ in tasks]
        for i, res in zip(owner, self.chat.chat(reqs) if reqs else []):
            r = out[i]
            r.calls += 1
            if res.error:
                r.error = r.error or res.error
                continue
            for name in self._parse(res.text, 1 if per_call else tasks[i].k):
                if name not in r.objects:
                    r.objects.append(name)
        return out

    def propose_groups(self, tasks: list[GroupProposeTask]) -> list[GroupProposeResult]:
        if not self.prompts.grouped:
            raise NegationClipError(
                f"prompt set {self.prompts.name!r} proposes per caption (no grouped prompt): "
                f"use --propose-per caption, or --prompts negationclip for grouped proposals")
        reqs = [self._req(self.prompts.propose_group(t.captions, t.k),
                          t.seeds[0] if t.seeds else 0,
                          max_tokens=self.max_tokens + 12 * len(t.captions) * t.k) for t in tasks]
        out = []
        for t, res in zip(tasks, self.chat.chat(reqs)):
            if res.error:
                out.append(GroupProposeResult([[] for _ in t.captions], calls=1, error=res.error))
                continue
            objs = self.prompts.parse_group(res.text, len(t.captions), t.k)
            out.append(GroupProposeResult(objs or [[] for _ in t.captions], calls=1))
        return out


class LLMRandomProposer(LLMProposer):
    """Rand-P1 with an LLM, as the paper's code does it: the released prompt ("Name a random
    object.", no caption), one call per caption and candidate (``k`` calls with distinct
    seeds for ``k`` candidates); the answer is parsed by the prompt set's proposal rule."""

    one_call_per_caption = True  # nothing to share between an image's captions

    def describe(self) -> dict:
        return {**super().describe(), "prompt": "released Rand-P1: 'Name a random object.'"}

    def _messages(self, caption: str, k: int) -> list[dict]:
        return self.prompts.random_object()

    def _parse(self, text, k: int) -> list[str]:
        return self.prompts.parse_random(text)

    def _per_call(self) -> bool:
        return True  # the prompt asks for one object, whatever the set


class LLMVerifier(_ChatRole, Verifier):
    role = "verifier"
    needs_pixels = True

    def cache_name(self) -> str:
        return f"{super().cache_name()}:{self.prompts.name}"  # answers to other words never mix

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
            vp = self.prompts.verify(t.obj)
            reqs.append(self._req(vp.messages, seed=0, image=img, image_first=vp.image_first,
                                  prompt=vp.prompt))
            idx.append(i)
        for i, res in zip(idx, self.chat.chat(reqs) if reqs else []):
            if res.error:
                results[i] = VerifyResult("error", calls=1, detail=res.error)
                continue
            ans = self.prompts.parse_verify(res.text)
            verdict = {"yes": "present", "no": "absent", None: "unparseable"}[ans]
            results[i] = VerifyResult(verdict, calls=1, detail=(res.text or "")[:80])
        return results  # type: ignore[return-value]


class LLMRewriter(_ChatRole, Rewriter):
    """P1 rewrites in the set's words; P2 and the affirmative twin, which the released code
    has no prompt for, in ``negationclip``'s (``PromptSet.p2``/``affirm``)."""

    role = "rewriter"

    def rewrite(self, tasks: list[RewriteTask]) -> list[RewriteResult]:
        reqs, owners = [], []
        for i, t in enumerate(tasks):
            if t.question is not None:
                reqs.append(self._req(self.prompts.p2(t.caption, t.question), t.seed))
            else:
                reqs.append(self._req(self.prompts.rewrite(t.caption, t.obj or ""), t.seed))
            owners.append((i, "negated", t.question is not None))
            if t.affirmed:
                msgs = (self.prompts.p2_affirm(t.caption, t.question) if t.question is not None
                        else self.prompts.affirm(t.caption, t.obj or ""))
                reqs.append(self._req(msgs, t.seed))
                owners.append((i, "affirmed", t.question is not None))
        out = [RewriteResult(None) for _ in tasks]
        for (i, kind, p2), res in zip(owners, self.chat.chat(reqs)):
            r = out[i]
            r.calls += 1
            if res.error:
                if kind == "negated":
                    r.error = res.error
                continue
            if kind == "affirmed":
                r.affirmed = self.prompts.parse_affirm(res.text)
                continue
            neg, aff = (self.prompts.parse_p2 if p2 else self.prompts.parse_rewrite)(res.text)
            r.negated = neg
            if aff and r.affirmed is None:
                r.affirmed = aff
        return out
