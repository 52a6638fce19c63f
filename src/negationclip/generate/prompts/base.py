"""What a prompt set is: the words, few-shot turns, sampling and answer parsing that the LLM
roles (proposer, verifier, rewriter) use on any chat backend.

A set is one module registered by name (``released``, ``negationclip``); the roles ask it for
messages and hand it the answers back, so switching sets never touches a role or a backend.
Each set carries a ``version`` that is stored in every record and in the run's ledger header:
any change to a set's prompts or parsing must bump its version, so data made with different
prompts can be told apart (and ``--resume`` refuses to mix them).
"""

from __future__ import annotations

from dataclasses import dataclass

ROLE_NAMES = ("proposer", "verifier", "rewriter")

# Rand-P1 as the paper's code asks for it (NegationCLIP src/data_generation.py,
# get_candidate_object with use_random=True): this exact system and user turn, one call per
# caption, no caption in the prompt. Every set sends it verbatim: it is what "Rand-P1" means.
RANDOM_OBJECT_SYSTEM = "You are a helpful chatbot that answers with only one word."
RANDOM_OBJECT_PROMPT = "Name a random object."


def few_shot(system: str, shots, user: str) -> list[dict]:
    """A chat: the system turn, each (user, assistant) example pair, then the real user turn
    (the shape of every few-shot prompt, released and ours)."""
    msgs = [{"role": "system", "content": system}]
    for u, a in shots:
        msgs += [{"role": "user", "content": u}, {"role": "assistant", "content": a}]
    msgs.append({"role": "user", "content": user})
    return msgs


@dataclass
class VerifyPrompt:
    """A verification request: chat ``messages`` (the image goes into the last user turn,
    before its text when ``image_first``) and, for local models, an exact ``prompt`` string
    to use instead of the model's chat template (None: use the template)."""

    messages: list[dict]
    prompt: str | None = None
    image_first: bool = False


class PromptSet:
    """Base of the prompt sets. Subclasses set the class attributes and the methods marked
    below; the rest (Rand-P1, the affirmative twin, P2) is shared."""

    name = ""
    version = ""
    description = ""
    # sampling per role: the paper's (Llama 3 at temperature 0.6, top-p 0.9; a greedy verifier)
    temperature = {"proposer": 0.6, "verifier": 0.0, "rewriter": 0.6}
    top_p = 0.9
    max_tokens = {"proposer": 64, "verifier": 16, "rewriter": 64}
    grouped = False  # has a prompt that proposes for all captions of an image in one call
    one_call_per_candidate = True  # k candidates: k calls (distinct seeds), else one call asks k

    def tokens(self, role: str, requested: int | None) -> int:
        """Longest answer of ``role``: the user's ``--max-tokens``, else the set's."""
        return self.max_tokens[role] if requested is None else requested

    # --- proposer ----------------------------------------------------------------------------
    def propose(self, caption: str, k: int = 1) -> list[dict]:
        raise NotImplementedError

    def parse_proposal(self, text: str | None, k: int = 1) -> list[str]:
        raise NotImplementedError

    def propose_group(self, captions: list[str], k: int = 1) -> list[dict]:
        raise NotImplementedError(f"prompt set {self.name!r} has no grouped proposal prompt")

    def parse_group(self, text: str | None, n: int, k: int = 1) -> list[list[str]] | None:
        raise NotImplementedError(f"prompt set {self.name!r} has no grouped proposal prompt")

    def random_object(self) -> list[dict]:
        return [{"role": "system", "content": RANDOM_OBJECT_SYSTEM},
                {"role": "user", "content": RANDOM_OBJECT_PROMPT}]

    def parse_random(self, text: str | None) -> list[str]:
        return self.parse_proposal(text, 1)

    # --- verifier ----------------------------------------------------------------------------
    def verify(self, obj: str) -> VerifyPrompt:
        raise NotImplementedError

    def parse_verify(self, text: str | None) -> str | None:
        """'yes', 'no', or None (a counted skip, never read as absent)."""
        raise NotImplementedError

    # --- rewriter ----------------------------------------------------------------------------
    def rewrite(self, caption: str, obj: str) -> list[dict]:
        raise NotImplementedError

    def parse_rewrite(self, text: str | None) -> tuple[str | None, str | None]:
        """(negated, affirmed); affirmed is None unless the answer carries both."""
        raise NotImplementedError

    def affirm(self, caption: str, obj: str) -> list[dict]:
        from . import negationclip
        return negationclip.affirm_messages(caption, obj)

    def parse_affirm(self, text: str | None) -> str | None:
        from ..parse import parse_rewrite
        neg, aff = parse_rewrite(text)
        return neg or aff

    def p2(self, caption: str, question: str) -> list[dict]:
        from . import negationclip
        return negationclip.p2_messages(caption, question)

    def p2_affirm(self, caption: str, question: str) -> list[dict]:
        from . import negationclip
        return negationclip.p2_affirm_messages(caption, question)

    def parse_p2(self, text: str | None) -> tuple[str | None, str | None]:
        from ..parse import parse_rewrite
        return parse_rewrite(text)
