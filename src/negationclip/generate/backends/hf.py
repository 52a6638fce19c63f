"""Local Hugging Face transformers models: a causal LM for text roles, an image-text-to-text
model (LLaVA-NeXT and the like) for verification. Requests run in batches with left padding;
sampling is seeded per batch so a rerun gives the same answers.

Weights load from the local cache or a folder only (``HF_HUB_OFFLINE`` is respected) and
never with ``trust_remote_code``.
"""

from __future__ import annotations

from typing import Any

from ...utils import NegationClipError
from .base import ChatBackend, ChatRequest, ChatResult

DEFAULT_TEXT_MODEL = "meta-llama/Meta-Llama-3-8B-Instruct"
DEFAULT_VISION_MODEL = "llava-hf/llava-v1.6-mistral-7b-hf"


def _torch_dtype(name: str):
    import torch
    return {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16,
            "auto": "auto"}[name]


def _merge_system(messages: list[dict]) -> list[dict]:
    """Fold a system turn into the first user turn (for templates that reject 'system')."""
    if not messages or messages[0]["role"] != "system":
        return messages
    sys_text, rest = messages[0]["content"], [dict(m) for m in messages[1:]]
    for m in rest:
        if m["role"] == "user":
            m["content"] = f"{sys_text}\n\n{m['content']}"
            break
    return rest


def _plain_prompt(messages: list[dict]) -> str:
    """Prompt for tokenizers without a chat template."""
    lines = []
    for m in messages:
        lines.append(f"{m['role'].capitalize()}: {m['content']}")
    lines.append("Assistant:")
    return "\n".join(lines)


class HFChat(ChatBackend):
    """``model``/``tokenizer`` (or ``processor``) may be passed ready-made (tests build tiny
    random ones); otherwise they are loaded from ``model_id``."""

    name = "hf"

    def __init__(self, model_id: str = DEFAULT_TEXT_MODEL, *, vision: bool = False,
                 device: str = "cpu", dtype: str = "auto", batch_size: int = 8,
                 model: Any = None, tokenizer: Any = None, processor: Any = None):
        self.model = model_id
        self.vision = vision
        self.batch_size = max(1, batch_size)
        self.device = device
        self.batches_run = 0
        if model is None:
            model, tokenizer, processor = self._load(model_id, vision, device, dtype)
        self._model = model.eval()
        self._proc = processor
        self._tok = tokenizer if tokenizer is not None else getattr(processor, "tokenizer", None)
        if self._tok is None:
            raise NegationClipError(f"{model_id}: no tokenizer")
        self._tok.padding_side = "left"
        if self._tok.pad_token is None:
            self._tok.pad_token = self._tok.eos_token

    @staticmethod
    def _load(model_id, vision, device, dtype):
        try:
            if vision:
                from transformers import AutoModelForImageTextToText, AutoProcessor
                processor = AutoProcessor.from_pretrained(model_id)
                model = AutoModelForImageTextToText.from_pretrained(
                    model_id, dtype=_torch_dtype(dtype), trust_remote_code=False)
                tokenizer = processor.tokenizer
            else:
                from transformers import AutoModelForCausalLM, AutoTokenizer
                processor = None
                tokenizer = AutoTokenizer.from_pretrained(model_id)
                model = AutoModelForCausalLM.from_pretrained(
                    model_id, dtype=_torch_dtype(dtype), trust_remote_code=False)
        except (OSError, ValueError) as e:
            raise NegationClipError(
                f"{model_id}: cannot load the model ({str(e).splitlines()[0]}); give a local "
                f"folder or a model in the Hugging Face cache") from None
        return model.to(device), tokenizer, processor

    def _render(self, req: ChatRequest, with_image: bool) -> str:
        if req.prompt is not None:  # an exact prompt (the released LLaVA prompt): no template
            token = getattr(self._proc, "image_token", None) or "<image>"
            return req.prompt.replace("<image>", token) if with_image else req.prompt
        messages = req.messages
        holder = self._proc if (with_image and self._proc is not None) else self._tok
        msgs = messages
        if with_image:
            msgs = [dict(m) for m in messages]
            msgs[-1] = {"role": msgs[-1]["role"],
                        "content": [{"type": "image"}, {"type": "text", "text": msgs[-1]["content"]}]}
        if getattr(holder, "chat_template", None) or getattr(self._tok, "chat_template", None):
            for attempt in (msgs, _merge_system(msgs)):
                try:
                    return holder.apply_chat_template(attempt, add_generation_prompt=True,
                                                      tokenize=False)
                except Exception:  # template refuses the system role: fold it in
                    continue
        text = _plain_prompt(messages)
        if with_image:
            token = getattr(self._proc, "image_token", "<image>")
            text = f"{token}\n{text}"
        return text

    def _generate(self, batch: list[ChatRequest]) -> list[ChatResult]:
        import torch

        with_image = any(r.image is not None for r in batch)
        prompts = [self._render(r, with_image) for r in batch]
        if with_image:
            if self._proc is None:
                raise NegationClipError(f"{self.model}: a text-only model cannot verify images")
            enc = self._proc(text=prompts, images=[r.image for r in batch], padding=True,
                             return_tensors="pt")
        else:
            enc = self._tok(prompts, padding=True, return_tensors="pt", add_special_tokens=False)
        enc = {k: v.to(self._model.device) if hasattr(v, "to") else v for k, v in enc.items()}
        temp = batch[0].temperature
        gen_kw = dict(max_new_tokens=max(r.max_tokens for r in batch),
                      pad_token_id=self._tok.pad_token_id)
        if temp and temp > 0:
            torch.manual_seed(batch[0].seed)
            gen_kw.update(do_sample=True, temperature=temp, top_p=batch[0].top_p)
        else:
            gen_kw.update(do_sample=False)
        with torch.no_grad():
            out = self._model.generate(**enc, **gen_kw)
        self.batches_run += 1
        new = out[:, enc["input_ids"].shape[1]:]
        texts = self._tok.batch_decode(new, skip_special_tokens=True)
        return [ChatResult(t.strip()) for t in texts]

    def chat(self, requests: list[ChatRequest]) -> list[ChatResult]:
        results: list[ChatResult] = []
        for i in range(0, len(requests), self.batch_size):
            batch = requests[i:i + self.batch_size]
            try:
                results.extend(self._generate(batch))
            except NegationClipError:
                raise
            except (RuntimeError, ValueError) as e:  # e.g. out of memory on one batch
                results.extend(ChatResult(None, f"generation failed: {str(e)[:200]}") for _ in batch)
        return results
