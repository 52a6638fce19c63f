"""Build the three roles from per-role backend options; one chat backend (one server
connection pool, one loaded model) is shared by the roles that ask for the same one."""

from __future__ import annotations

from dataclasses import dataclass

from ..utils import NegationClipError
from .backends.base import ChatBackend, Proposer, Rewriter, Verifier
from .prompts import DEFAULT_PROMPTS, get_prompt_set

KINDS = ("rules", "openai", "hf")
RANDOM_SOURCES = ("auto", "llm", "categories")


@dataclass
class BackendOptions:
    kind: str = "rules"
    model: str | None = None
    url: str | list[str] = "http://127.0.0.1:8000/v1"  # several (list or "a,b"): replicas
    api_key_env: str = "OPENAI_API_KEY"
    concurrency: int = 8
    timeout: float = 60.0
    max_retries: int = 4
    backoff: float = 0.5
    max_consecutive_failures: int = 20
    device: str = "cpu"
    dtype: str = "auto"
    batch_size: int = 8
    # sampling; None: the prompt set's (both sets: the paper's temperature 0.6 for proposer
    # and rewriter, greedy verifier, top-p 0.9; max tokens released 256/10/256, else 64/16/64)
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    send_seed: bool = True  # openai: a per-request seed (reproducible reruns; the released code has none)
    prompts: str = DEFAULT_PROMPTS  # LLM roles: "released" or "negationclip" (prompts/)

    def slots(self) -> int:
        """Requests this role can have in flight at once: per-server concurrency times the
        number of servers (openai), the batch (hf), else 1; sizes the runner's chunks so
        several replicas are all kept busy."""
        if self.kind == "openai":
            from .backends.openai_compat import split_urls
            return self.concurrency * len(split_urls(self.url))
        return self.batch_size if self.kind == "hf" else 1


class RoleFactory:
    def __init__(self):
        self._chats: dict[tuple, ChatBackend] = {}

    def chat(self, opts: BackendOptions, role: str) -> ChatBackend:
        vision = role == "verifier"
        if opts.kind == "openai":
            if not opts.model:
                raise NegationClipError(f"--{role}-model is required with the openai backend "
                                        f"(the model name the server serves)")
            from .backends.openai_compat import OpenAIChat, split_urls
            key = ("openai", tuple(split_urls(opts.url)), opts.model, opts.send_seed)
            if key not in self._chats:
                self._chats[key] = OpenAIChat(
                    opts.url, opts.model, api_key_env=opts.api_key_env,
                    concurrency=opts.concurrency, timeout=opts.timeout,
                    max_retries=opts.max_retries, backoff=opts.backoff,
                    max_consecutive_failures=opts.max_consecutive_failures,
                    send_seed=opts.send_seed)
            return self._chats[key]
        if opts.kind == "hf":
            from .backends.hf import DEFAULT_TEXT_MODEL, DEFAULT_VISION_MODEL, HFChat
            model = opts.model or (DEFAULT_VISION_MODEL if vision else DEFAULT_TEXT_MODEL)
            key = ("hf", model, vision, opts.device)
            if key not in self._chats:
                self._chats[key] = HFChat(model, vision=vision, device=opts.device,
                                          dtype=opts.dtype, batch_size=opts.batch_size)
            return self._chats[key]
        raise NegationClipError(f"unknown backend {opts.kind!r} (choose from {', '.join(KINDS)})")

    def _llm_kw(self, opts: BackendOptions, role: str, prompts: str | None = None) -> dict:
        pset = get_prompt_set(prompts or opts.prompts)
        t = pset.temperature[role] if opts.temperature is None else opts.temperature
        top_p = pset.top_p if opts.top_p is None else opts.top_p
        return {"prompts": pset, "temperature": t, "top_p": top_p if t > 0 else 1.0,
                "max_tokens": opts.max_tokens}

    def proposer(self, opts: BackendOptions, *, instances=None, captions=None,
                 cooccurrence: str = "auto") -> Proposer:
        if opts.kind == "rules":
            from .backends.rules import COCO_NAMES, Cooccurrence, RulesProposer
            src = cooccurrence if cooccurrence != "auto" else ("instances" if instances else "captions")
            if src == "instances":
                if instances is None:
                    raise NegationClipError("--cooccurrence instances needs --instances")
                co = Cooccurrence.from_instances(instances)
            else:
                vocab = list(instances.categories.values()) if instances else list(COCO_NAMES)
                co = Cooccurrence.from_captions(captions or [], vocab)
            return RulesProposer(co, source=src)
        from .backends.llm import LLMProposer
        return LLMProposer(self.chat(opts, "proposer"), **self._llm_kw(opts, "proposer"))

    def random_proposer(self, opts: BackendOptions | None = None, *, instances=None,
                        source: str = "auto") -> Proposer:
        """Rand-P1's proposer. ``llm``: the paper's prompt ("Name a random object.") to the
        proposer's LLM; ``categories``: a uniform draw from the category list (no model call);
        ``auto``: ``llm`` when the proposer backend is an LLM, else ``categories``."""
        if source not in RANDOM_SOURCES:
            raise NegationClipError(f"--random-source {source!r}: choose from {', '.join(RANDOM_SOURCES)}")
        kind = opts.kind if opts is not None else "rules"
        if source == "auto":
            source = "categories" if kind == "rules" else "llm"
        if source == "llm":
            if kind == "rules":
                raise NegationClipError("--random-source llm asks an LLM: choose --proposer openai "
                                        "or hf (or --random-source categories)")
            from .backends.llm import LLMRandomProposer
            return LLMRandomProposer(self.chat(opts, "proposer"), **self._llm_kw(opts, "proposer"))
        from .backends.rules import COCO_NAMES, RandomProposer
        return RandomProposer(instances.categories.values() if instances else COCO_NAMES)

    def verifier(self, opts: BackendOptions, *, instances=None) -> Verifier:
        if opts.kind == "rules":
            if instances is None:
                raise NegationClipError("the rules verifier reads COCO instances: pass --instances")
            from .backends.rules import RulesVerifier
            return RulesVerifier(instances)
        from .backends.llm import LLMVerifier
        return LLMVerifier(self.chat(opts, "verifier"), **self._llm_kw(opts, "verifier"))

    def rewriter(self, opts: BackendOptions, *, prompts: str | None = None) -> Rewriter:
        """``prompts`` overrides ``opts.prompts`` (P2 has no released prompt: negationclip)."""
        if opts.kind == "rules":
            from .backends.rules import RulesRewriter
            return RulesRewriter()
        from .backends.llm import LLMRewriter
        return LLMRewriter(self.chat(opts, "rewriter"), **self._llm_kw(opts, "rewriter", prompts))

    def close(self) -> None:
        for c in self._chats.values():
            c.close()
        self._chats.clear()
