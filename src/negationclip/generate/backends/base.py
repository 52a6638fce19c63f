"""What the roles (proposer, verifier, rewriter) and the chat backends promise each other.

A *chat backend* turns a batch of chat requests into a batch of answers (text or error);
``openai`` runs them concurrently against a server, ``hf`` in batches on a local model.
A *role* turns tasks into results: the LLM roles build prompts and parse answers on top of a
chat backend, the ``rules`` roles answer offline. Every result says how many model calls it
cost, so the ledger and ``stats`` can report calls per accepted caption.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

VERDICTS = ("absent", "present", "unsure", "unparseable", "image_missing", "error")


def stable_seed(*parts: Any) -> int:
    """A seed that depends only on ``parts`` (not on the process, the shard or the order)."""
    h = hashlib.sha1("\x1f".join(str(p) for p in parts).encode("utf-8")).hexdigest()
    return int(h[:8], 16)


@dataclass
class ChatRequest:
    messages: list[dict]  # [{"role": "system"|"user"|"assistant", "content": str}]
    image: Any = None  # a PIL image for the last user turn (verifier), else None
    max_tokens: int = 64
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0
    image_first: bool = False  # the image goes before the text of the last user turn
    prompt: str | None = None  # local models: this exact prompt instead of the chat template


@dataclass
class ChatResult:
    text: str | None
    error: str | None = None


class ChatBackend(ABC):
    """Runs chat requests; failures come back as ``ChatResult(error=...)``, except a dead
    server, which raises NegationClipError (the run cannot go on)."""

    name = "chat"
    model = ""

    @abstractmethod
    def chat(self, requests: list[ChatRequest]) -> list[ChatResult]:
        ...

    def close(self) -> None:
        pass


@dataclass
class ProposeTask:
    caption: str
    k: int = 1
    seed: int = 0


@dataclass
class GroupProposeTask:
    """All captions of one image, proposed for in one call: objects named by any caption are
    in the image, so none of them is a candidate for another caption either."""

    captions: list[str]
    k: int = 1
    seeds: list[int] = field(default_factory=list)  # one per caption


@dataclass
class GroupProposeResult:
    objects: list[list[str]]  # per caption
    calls: int = 0
    error: str | None = None


@dataclass
class ProposeResult:
    objects: list[str]
    calls: int = 0
    error: str | None = None


@dataclass
class VerifyTask:
    image_id: int
    image_path: str | None
    obj: str


@dataclass
class VerifyResult:
    verdict: str  # one of VERDICTS
    calls: int = 0
    detail: str = ""


@dataclass
class RewriteTask:
    caption: str
    obj: str | None = None  # P1: the absent object
    question: str | None = None  # P2: the question answered "no"
    affirmed: bool = False  # also produce the affirmative caption
    seed: int = 0


@dataclass
class RewriteResult:
    negated: str | None
    affirmed: str | None = None
    phrasing: str | None = None
    calls: int = 0
    error: str | None = None
    extra: dict = field(default_factory=dict)


class Role(ABC):
    backend = ""
    model = ""

    def describe(self) -> dict:
        return {"backend": self.backend, "model": self.model}

    def close(self) -> None:
        pass


class Proposer(Role):
    @abstractmethod
    def propose(self, tasks: list[ProposeTask]) -> list[ProposeResult]:
        ...

    def propose_groups(self, tasks: list[GroupProposeTask]) -> list[GroupProposeResult]:
        """One call per image where the backend can (LLM, rules); else one per caption."""
        flat = [ProposeTask(c, t.k, s) for t in tasks for c, s in zip(t.captions, t.seeds)]
        res = self.propose(flat)
        out, i = [], 0
        for t in tasks:
            part = res[i:i + len(t.captions)]
            i += len(t.captions)
            err = next((r.error for r in part if r.error), None)
            out.append(GroupProposeResult([r.objects for r in part], sum(r.calls for r in part), err))
        return out


class Verifier(Role):
    needs_pixels = False  # whether images must be readable (else the item is skipped)

    @abstractmethod
    def verify(self, tasks: list[VerifyTask]) -> list[VerifyResult]:
        ...

    def cache_name(self) -> str:
        """Part of the verification-cache key: answers of different verifiers never mix."""
        return f"{self.backend}:{self.model}"


class Rewriter(Role):
    @abstractmethod
    def rewrite(self, tasks: list[RewriteTask]) -> list[RewriteResult]:
        ...
