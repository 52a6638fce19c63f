"""Tiny random SigLIP / SigLIP 2 folders with tokenizers trained here (no downloads)."""

from __future__ import annotations

from pathlib import Path

import torch

SENTENCES = ["a photo of a cat", "a dog with no ball", "there is no apple on the table",
             "a red car next to a tree", "two people and no umbrella", "a bowl without fruit",
             "the sky is blue", "a cat that is not black", "a man riding a horse"] * 4


def _text_cfg(vocab: int, pad: int, eos: int, bos: int | None = None) -> dict:
    d = dict(vocab_size=vocab, hidden_size=32, intermediate_size=37, num_hidden_layers=2,
             num_attention_heads=4, max_position_embeddings=16, pad_token_id=pad, eos_token_id=eos)
    if bos is not None:
        d["bos_token_id"] = bos
    return d


def make_siglip(folder: Path) -> Path:
    import sentencepiece as spm
    from transformers import SiglipConfig, SiglipImageProcessor, SiglipModel, SiglipTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    corpus = folder / "corpus.txt"
    corpus.write_text("\n".join(SENTENCES) + "\n")
    spm.SentencePieceTrainer.train(input=str(corpus), model_prefix=str(folder / "spiece"),
                                   vocab_size=60, model_type="unigram", pad_id=0, eos_id=1,
                                   unk_id=2, bos_id=-1, hard_vocab_limit=False,
                                   minloglevel=2)
    tok = SiglipTokenizer(vocab_file=str(folder / "spiece.model"), model_max_length=16)
    torch.manual_seed(0)
    cfg = SiglipConfig(text_config=_text_cfg(len(tok), tok.pad_token_id, tok.eos_token_id),
                       vision_config=dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                                          num_attention_heads=4, image_size=32, patch_size=8))
    SiglipModel(cfg).eval().save_pretrained(folder)
    tok.save_pretrained(folder)
    SiglipImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


def make_siglip2(folder: Path) -> Path:
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import (GemmaTokenizerFast, Siglip2Config, Siglip2ImageProcessor,
                              Siglip2Model)

    folder.mkdir(parents=True, exist_ok=True)
    raw = Tokenizer(models.BPE(unk_token="<unk>"))
    raw.normalizer = normalizers.Lowercase()
    raw.pre_tokenizer = pre_tokenizers.Metaspace()
    raw.train_from_iterator(SENTENCES, trainers.BpeTrainer(
        vocab_size=80, special_tokens=["<pad>", "<eos>", "<bos>", "<unk>"]))
    tok = GemmaTokenizerFast(tokenizer_object=raw, pad_token="<pad>", eos_token="<eos>",
                             bos_token="<bos>", unk_token="<unk>", model_max_length=16)
    torch.manual_seed(0)
    cfg = Siglip2Config(text_config=_text_cfg(len(tok), tok.pad_token_id, tok.eos_token_id,
                                              tok.bos_token_id),
                        vision_config=dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                                           num_attention_heads=4, num_patches=16, patch_size=8))
    Siglip2Model(cfg).eval().save_pretrained(folder)
    tok.save_pretrained(folder)
    Siglip2ImageProcessor(patch_size=8, max_num_patches=16).save_pretrained(folder)
    return folder
