"""The ``negationclip`` prompt set: this project's own wording (``--prompts negationclip``).

After the paper's (few-shot, one-word proposals, "Is there X in this image? Answer only with
'yes' or 'no'") but not the released code's words: instruction-style system turns with
"Caption: ..." user turns, several candidates asked in one call, one grouped call for all
captions of an image (``--propose-per image``), an article before the object in the
verification question, and the robust parsers of ``parse.py`` (JSON, prefixes, sentences).
It also holds the affirmative-twin and P2 prompts, which the released code does not have (every
set uses them). Any change here must bump ``VERSION`` (stored in every record).
"""

from __future__ import annotations

from ..grammar import with_article
from ..parse import parse_numbered, parse_objects, parse_rewrite, parse_yes_no
from .base import PromptSet, VerifyPrompt, few_shot

VERSION = "v1"

PROPOSE_SYSTEM = (
    "You are given a caption of an image. Name an object that is NOT mentioned in the caption "
    "but that would plausibly appear in such a scene. Answer with the object's name only, one "
    "word (or a short noun), nothing else.")
PROPOSE_SHOTS = [
    ("A child playing with a ball in the park.", "tree"),
    ("A woman riding a horse on a dirt road.", "hat"),
    ("A kitchen with a stove and a sink.", "refrigerator"),
    ("A man sitting at a desk typing on a laptop.", "cup"),
]


def propose_messages(caption: str, k: int = 1) -> list[dict]:
    sys_msg = PROPOSE_SYSTEM
    if k > 1:
        sys_msg += (f" Give {k} different objects, separated by commas.")
    return few_shot(sys_msg, ((f"Caption: {cap}", obj) for cap, obj in PROPOSE_SHOTS),
                    f"Caption: {caption}")


GROUP_SYSTEM = (
    "You are given the numbered captions of one image. For each caption, name an object that "
    "is NOT mentioned in any of the captions but that would plausibly appear in such a scene. "
    "Answer with one line per caption, '<number>. <object>', the object's name only.")


def propose_group_messages(captions: list[str], k: int = 1) -> list[dict]:
    sys_msg = GROUP_SYSTEM
    if k > 1:
        sys_msg += f" Give {k} different objects per caption, separated by commas."
    shots = [c for c, _ in PROPOSE_SHOTS[:2]]
    msgs = [{"role": "system", "content": sys_msg},
            {"role": "user", "content": "\n".join(f"{i + 1}. {c}" for i, c in enumerate(shots))},
            {"role": "assistant", "content": "1. tree\n2. hat"},
            {"role": "user", "content": "\n".join(f"{i + 1}. {c}" for i, c in enumerate(captions))}]
    return msgs


def verify_question(obj: str) -> str:
    return f"Is there {with_article(obj)} in this image? Answer only with 'yes' or 'no'."


REWRITE_SYSTEM = (
    "You rewrite image captions. Given a caption and an object that is NOT in the image, "
    "rewrite the caption so that it says the object is absent, keeping all of the original "
    "content. Answer with the new caption only.")
REWRITE_SHOTS = [
    ("A child playing with a ball in the park.", "tree",
     "A child playing with a ball in the park with no trees."),
    ("A woman riding a horse.", "hat", "A woman not wearing a hat riding a horse."),
    ("A bowl of soup on a table.", "spoon", "A bowl of soup on a table without a spoon."),
]
AFFIRM_SYSTEM = (
    "You rewrite image captions. Given a caption and an object, rewrite the caption so that it "
    "says the object is present, keeping all of the original content. Answer with the new "
    "caption only.")
AFFIRM_SHOTS = [
    ("A child playing with a ball in the park.", "tree",
     "A child playing with a ball in the park with a tree."),
    ("A woman riding a horse.", "hat", "A woman wearing a hat riding a horse."),
]


def rewrite_messages(caption: str, obj: str) -> list[dict]:
    return few_shot(REWRITE_SYSTEM,
                    ((f"Caption: {cap}\nAbsent object: {o}", out) for cap, o, out in REWRITE_SHOTS),
                    f"Caption: {caption}\nAbsent object: {obj}")


def affirm_messages(caption: str, obj: str) -> list[dict]:
    return few_shot(AFFIRM_SYSTEM,
                    ((f"Caption: {cap}\nObject: {o}", out) for cap, o, out in AFFIRM_SHOTS),
                    f"Caption: {caption}\nObject: {obj}")


P2_SYSTEM = (
    "You rewrite image captions. Given a caption, a question about the image and its answer "
    "'no', rewrite the caption so that it also states the negated fact, keeping all of the "
    "original content. Answer with the new caption only.")
P2_SHOTS = [
    ("A man riding a bike down the street.", "Is the man wearing a helmet?",
     "A man not wearing a helmet riding a bike down the street."),
    ("A dog lying on a couch.", "Is the dog sleeping?", "A dog that is not sleeping lying on a couch."),
    ("Two people standing in a kitchen.", "Is there a window?",
     "Two people standing in a kitchen with no window."),
]
P2_AFFIRM_SYSTEM = (
    "You rewrite image captions. Given a caption and a yes/no question about the image, rewrite "
    "the caption so that it states the fact asked about as true, keeping all of the original "
    "content. Answer with the new caption only.")


def p2_messages(caption: str, question: str) -> list[dict]:
    return few_shot(P2_SYSTEM,
                    ((f"Caption: {cap}\nQuestion: {q}\nAnswer: no", out) for cap, q, out in P2_SHOTS),
                    f"Caption: {caption}\nQuestion: {question}\nAnswer: no")


def p2_affirm_messages(caption: str, question: str) -> list[dict]:
    return [{"role": "system", "content": P2_AFFIRM_SYSTEM},
            {"role": "user", "content": f"Caption: {caption}\nQuestion: {question}"}]


class NegationClipPrompts(PromptSet):
    name = "negationclip"
    version = VERSION
    description = ("this project's wording: instruction-style turns, k candidates in one call, "
                   "grouped proposals per image, robust parsing")
    max_tokens = {"proposer": 64, "verifier": 16, "rewriter": 64}
    grouped = True
    one_call_per_candidate = False

    def tokens(self, role: str, requested: int | None) -> int:
        if role == "verifier" and requested is not None:
            return min(requested, self.max_tokens["verifier"])  # a yes/no needs no more
        return super().tokens(role, requested)

    def propose(self, caption: str, k: int = 1) -> list[dict]:
        return propose_messages(caption, k)

    def parse_proposal(self, text, k: int = 1) -> list[str]:
        return parse_objects(text, k)

    def propose_group(self, captions: list[str], k: int = 1) -> list[dict]:
        return propose_group_messages(captions, k)

    def parse_group(self, text, n: int, k: int = 1):
        return parse_numbered(text, n, k)

    def verify(self, obj: str) -> VerifyPrompt:
        return VerifyPrompt([{"role": "user", "content": verify_question(obj)}])

    def parse_verify(self, text):
        return parse_yes_no(text)

    def rewrite(self, caption: str, obj: str) -> list[dict]:
        return rewrite_messages(caption, obj)

    def parse_rewrite(self, text):
        return parse_rewrite(text)
