"""The ``released`` prompt set (the default): the words of the released NegationCLIP code,
``src/data_generation.py`` of parkquasar/NegationCLIP, turn for turn.

- proposer (``get_candidate_object``): system "You are a helpful chatbot that answers with
  only one word.", user "Name an object that is not mentioned in the caption, but is likely
  to be in the image corresponding to the caption '<caption>'."; one call per caption (and per
  candidate with ``--candidates``), no grouping;
- verifier (``is_object_in_image``): "Is there <object> in this image? Answer only with 'yes'
  or 'no'." with the object as the proposer named it (no article), after the Vicuna-style
  preamble the released code writes into its LLaVA prompt. Local models (``hf``) get that
  prompt string exactly, bypassing their chat template; over a chat API (``openai``) the
  preamble is the system turn and the image precedes the question in the user turn, as
  ``USER: <image>\\n...`` does;
- rewriter (``generate_negated_caption``): system "You are a helpful chatbot that generates a
  concise caption." and the two released few-shot pairs, user "Add the absence of the <object>
  to the caption '<caption>'.";
- sampling (``generate_with_llama``): temperature 0.6, top-p 0.9, at most 256 new tokens for
  proposer and rewriter; the verifier decodes greedily, at most 10 new tokens;
- answers: ``.strip().rstrip('.')`` kept as they are (``parse.parse_released_*``); an answer
  that is not in the asked-for format is a counted skip where the released loop kept it.

The released code has no prompt for the affirmative twin or for P2; those come from the
``negationclip`` set. Any change here must bump ``VERSION`` (stored in every record).
"""

from __future__ import annotations

from ..parse import parse_released_object, parse_released_rewrite, parse_released_yes_no
from .base import RANDOM_OBJECT_SYSTEM, PromptSet, VerifyPrompt, few_shot

VERSION = "released-v1"

PROPOSE_SYSTEM = RANDOM_OBJECT_SYSTEM  # the released proposer's system turn, both modes
PROPOSE_PROMPT = ("Name an object that is not mentioned in the caption, but is likely to be in "
                  "the image corresponding to the caption '{caption}'.")

VERIFY_PREAMBLE = ("A chat between a curious human and an artificial intelligence assistant. "
                   "The assistant gives helpful, detailed, and polite answers to the human's "
                   "questions.")
VERIFY_QUESTION = "Is there {obj} in this image? Answer only with 'yes' or 'no'."
VERIFY_PROMPT = VERIFY_PREAMBLE + " USER: <image>\n" + VERIFY_QUESTION + " ASSISTANT:"

REWRITE_SYSTEM = "You are a helpful chatbot that generates a concise caption."
REWRITE_PROMPT = "Add the absence of the {obj} to the caption '{caption}'."
REWRITE_SHOTS = [
    ("a woman riding a horse in a field", "hat", "a woman not wearing a hat riding a horse in a field"),
    ("a child playing with a ball in the park", "tree",
     "a child playing with a ball in the park with no tree"),
]


class ReleasedPrompts(PromptSet):
    name = "released"
    version = VERSION
    description = "the released src/data_generation.py: its prompts, sampling and answer rules"
    max_tokens = {"proposer": 256, "verifier": 10, "rewriter": 256}
    grouped = False
    one_call_per_candidate = True

    def propose(self, caption: str, k: int = 1) -> list[dict]:
        return [{"role": "system", "content": PROPOSE_SYSTEM},
                {"role": "user", "content": PROPOSE_PROMPT.format(caption=caption)}]

    def parse_proposal(self, text, k: int = 1) -> list[str]:
        obj = parse_released_object(text)
        return [obj] if obj else []

    def verify(self, obj: str) -> VerifyPrompt:
        return VerifyPrompt([{"role": "system", "content": VERIFY_PREAMBLE},
                             {"role": "user", "content": VERIFY_QUESTION.format(obj=obj)}],
                            prompt=VERIFY_PROMPT.format(obj=obj), image_first=True)

    def parse_verify(self, text):
        return parse_released_yes_no(text)

    def rewrite(self, caption: str, obj: str) -> list[dict]:
        return few_shot(REWRITE_SYSTEM, ((REWRITE_PROMPT.format(obj=o, caption=cap), out)
                                         for cap, o, out in REWRITE_SHOTS),
                        REWRITE_PROMPT.format(obj=obj, caption=caption))

    def parse_rewrite(self, text):
        return parse_released_rewrite(text), None
