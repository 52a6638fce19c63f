"""The hf backend with tiny random models built from configs (no download): batching,
prompt rendering with and without a chat template, images, and the parsing of garbage."""

import pytest
import torch

from negationclip.generate import RunConfig, Runner, p1_items, read_ledger
from negationclip.generate.backends.base import ChatRequest
from negationclip.generate.backends.hf import HFChat
from negationclip.generate.backends.llm import LLMProposer, LLMRewriter, LLMVerifier

TEMPLATE = ("{% for m in messages %}{{ m['role'] }}: {% if m['content'] is string %}"
            "{{ m['content'] }}{% else %}{% for c in m['content'] %}{% if c['type'] == 'image' %}"
            "<image>{% else %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}\n{% endfor %}"
            "{% if add_generation_prompt %}assistant:{% endif %}")


def _tokenizer(template=True):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    corpus = ["Is there a hat in this image? Answer only with 'yes' or 'no'.",
              "Caption: a man riding a horse. Absent object: hat", "user assistant system"] * 3
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(corpus, trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<pad>", "<eos>", "<image>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    ht = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>",
                                 extra_special_tokens={"image_token": "<image>"})
    if template:
        ht.chat_template = TEMPLATE
    return ht


def _llama(tok):
    from transformers import LlamaConfig, LlamaForCausalLM
    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(
        vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=2048,
        pad_token_id=0, eos_token_id=1))


def _gpt2(tok):
    from transformers import GPT2Config, GPT2LMHeadModel
    torch.manual_seed(0)
    return GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_embd=32, n_layer=1, n_head=2,
                                      n_positions=2048, pad_token_id=0, eos_token_id=1))


def _llava():
    from transformers import (CLIPImageProcessor, CLIPVisionConfig, LlamaConfig, LlavaConfig,
                              LlavaForConditionalGeneration, LlavaProcessor)
    tok = _tokenizer()
    proc = LlavaProcessor(
        image_processor=CLIPImageProcessor(size={"shortest_edge": 32},
                                           crop_size={"height": 32, "width": 32}),
        tokenizer=tok, patch_size=8, vision_feature_select_strategy="default",
        chat_template=TEMPLATE, num_additional_image_tokens=1)
    cfg = LlavaConfig(
        vision_config=CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                       num_attention_heads=2, image_size=32, patch_size=8,
                                       projection_dim=32),
        text_config=LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                                num_hidden_layers=1, num_attention_heads=2,
                                num_key_value_heads=2, max_position_embeddings=2048,
                                pad_token_id=0, eos_token_id=1),
        image_token_index=tok.convert_tokens_to_ids("<image>"),
        vision_feature_select_strategy="default", vision_feature_layer=-1)
    torch.manual_seed(0)
    return LlavaForConditionalGeneration(cfg), proc


@pytest.mark.parametrize("make,template", [(_llama, True), (_gpt2, False)])
def test_batched_generation_equals_one_by_one(make, template):
    tok = _tokenizer(template)
    chat = HFChat("tiny", model=make(tok), tokenizer=tok, batch_size=3)
    reqs = [ChatRequest([{"role": "system", "content": "Name an object."},
                         {"role": "user", "content": "Caption: " + "a man riding a horse " * n}],
                        max_tokens=4) for n in (1, 3, 2, 5, 1)]
    batched = chat.chat(reqs)
    assert chat.batches_run == 2 and len(batched) == 5  # 3 + 2, left-padded
    single = [chat.chat([r])[0] for r in reqs]
    assert [b.text for b in batched] == [s.text for s in single]


def test_tiny_models_run_the_pipeline_and_garbage_is_counted(train, tmp_path):
    from negationclip.data.coco import load_coco_captions

    tok = _tokenizer()
    text = HFChat("tiny-llama", model=_llama(tok), tokenizer=tok, batch_size=4)
    vmodel, proc = _llava()
    vision = HFChat("tiny-llava", vision=True, model=vmodel, processor=proc, batch_size=4)
    items = p1_items(load_coco_captions(train["captions"]), train["images"])[:8]
    cfg = RunConfig(out=tmp_path / "h.jsonl", pipeline="P1", propose_per="caption",
                    chunk_size=8, progress=False)
    proposer = LLMProposer(text, temperature=0.0, max_tokens=4)
    runner = Runner(cfg, proposer=proposer, verifier=LLMVerifier(vision, max_tokens=3),
                    rewriter=LLMRewriter(text, temperature=0.0, max_tokens=8))
    summary = runner.run(items)
    _, led = read_ledger(cfg.out)
    assert len(led) == 8 and all(e["status"] == "done" for e in led.values())
    assert summary["calls_proposer"] == 8 and text.batches_run >= 2  # 8 prompts, batches of 4
    skipped = sum(v for k, v in summary.items() if k.startswith("outcome_") and k != "outcome_accepted")
    assert skipped + summary.get("outcome_accepted", 0) == 8
    # random weights answer garbage: nothing is taken as "absent" unless parsed as "no"
    assert summary.get("outcome_accepted", 0) == 0
    if summary.get("calls_verifier"):
        assert vision.batches_run >= 1


def test_tiny_llava_verifier_batches_images_and_skips_missing(train, tmp_path):
    from negationclip.generate.backends.base import VerifyTask

    vmodel, proc = _llava()
    vision = HFChat("tiny-llava", vision=True, model=vmodel, processor=proc, batch_size=2)
    ver = LLMVerifier(vision, max_tokens=3)
    imgs = sorted(train["images"].iterdir())[:3]
    bad = tmp_path / "trunc.png"
    bad.write_bytes(imgs[0].read_bytes()[:40])
    tasks = [VerifyTask(i, str(p), "hat") for i, p in enumerate(imgs)]
    tasks += [VerifyTask(10, str(tmp_path / "nope.png"), "hat"), VerifyTask(11, str(bad), "hat")]
    res = ver.verify(tasks)
    assert vision.batches_run == 2  # 3 readable images in batches of 2
    assert [r.calls for r in res] == [1, 1, 1, 0, 0]
    assert [r.verdict for r in res[3:]] == ["image_missing", "image_missing"]
    # garbage from random weights is "unparseable", never "absent" (unless it reads as "no")
    from negationclip.generate.parse import parse_yes_no
    for r in res[:3]:
        assert r.verdict in ("unparseable", "absent", "present")
        if r.verdict == "absent":
            assert parse_yes_no(r.detail) == "no"
