"""Dynamic padding vs padding every caption to 77 tokens, on a ViT-B/32-sized text tower.

Both arms call ``encode_text`` on the same random model and the same COCO-length captions
(8-16 words), interleaved by ``_harness`` (median [min-max] of --runs runs, achieved fraction
of the float32 matmul peak, load average, busy flag). FLOPs are counted at the length each
forward really runs, so ``pad77`` is credited with its padding: its fraction of peak shows
how well it uses the machine, the ratio how much work dynamic padding avoids (about 77 / the
batch's longest caption, less the fixed costs). The embeddings are checked to agree (the text
tower is causal and pools at end-of-text, so padding cannot change them).

The ``siglip`` arm encodes the same captions with a ViT-B/16-SigLIP-sized text tower (12 x 768,
context 64, a SentencePiece tokenizer trained here on captions of the same kind), always
padded to its context length: SigLIP pools the last position, so that is its only exact
padding; the check ``siglip_dynamic_max_abs_diff`` records how far dynamic padding would move
its embeddings (why negationclip never uses it there).

    python benchmarks/encode_text.py                    # -> benchmarks/results/encode_text.json
    python benchmarks/encode_text.py --captions 512 --batch-size 128 --runs 5
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import Arm, Bench, FlopCounter, add_protocol_args, cli, parse_args, positive_int  # noqa: E402

WORDS = ("a man woman child dog cat street car bus table plate pizza kitchen with on in of the "
         "sitting standing riding holding next to near red blue small large white black two three "
         "people bike horse field tree park frisbee laptop desk window").split()


def coco_like_captions(n: int, seed: int = 0) -> list[str]:
    """Captions of COCO's length distribution (about 8-16 words, mean ~10.5)."""
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 16))) + "." for _ in range(n)]


def encode(bundle, caps: list[str], batch_size: int, padding: str):
    from negationclip.models import encode_text

    return encode_text(bundle, caps, batch_size=batch_size, padding=padding, show_progress=False)


def siglip_bundle(quick: bool, folder: Path):
    """A random SigLIP (text tower 12 x 768, context 64, or tiny with --quick; a minimal vision
    tower) with a SentencePiece tokenizer trained here, saved and read back by ``load_clip``."""
    import sentencepiece as spm
    import torch
    from transformers import SiglipConfig, SiglipImageProcessor, SiglipModel, SiglipTokenizer

    from negationclip.models import load_clip

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "corpus.txt").write_text("\n".join(coco_like_captions(2000, seed=1)) + "\n")
    spm.SentencePieceTrainer.train(input=str(folder / "corpus.txt"), model_prefix=str(folder / "spiece"),
                                   vocab_size=120, pad_id=0, eos_id=1, unk_id=2, bos_id=-1,
                                   hard_vocab_limit=False, minloglevel=2)
    tok = SiglipTokenizer(vocab_file=str(folder / "spiece.model"), model_max_length=64)
    w, layers, heads = (32, 2, 4) if quick else (768, 12, 12)
    torch.manual_seed(0)
    cfg = SiglipConfig(text_config=dict(vocab_size=len(tok), hidden_size=w, intermediate_size=4 * w,
                                        num_hidden_layers=layers, num_attention_heads=heads,
                                        max_position_embeddings=64, pad_token_id=tok.pad_token_id,
                                        projection_size=32,  # the joint space is the vision width
                                        eos_token_id=tok.eos_token_id),
                       vision_config=dict(hidden_size=32, intermediate_size=37, num_hidden_layers=1,
                                          num_attention_heads=4, image_size=32, patch_size=16))
    SiglipModel(cfg).eval().save_pretrained(folder)
    tok.save_pretrained(folder)
    SiglipImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    return load_clip(folder)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--captions", type=positive_int, default=256)
    ap.add_argument("--batch-size", type=positive_int, default=128)
    ap.add_argument("--out", default=None, help="JSON results (default benchmarks/results/encode_text.json)")
    add_protocol_args(ap)
    args = parse_args(ap, argv)
    if args.quick:
        args.captions, args.batch_size, args.runs = 16, 8, 1
    bench = Bench("encode_text", threads=args.threads, runs=args.runs, quick=args.quick)
    from negationclip.models import bundle_from_config, tiny_clip_config, vit_b32_config

    bundle = bundle_from_config(tiny_clip_config() if args.quick else vit_b32_config(), seed=0)
    caps = coco_like_captions(args.captions)
    counter = FlopCounter(bundle.model)
    import tempfile
    sig = siglip_bundle(args.quick, Path(tempfile.mkdtemp(prefix="siglip-bench-")))
    sig_counter = FlopCounter(sig.model)
    outs: dict = {}
    bench.measure([
        Arm("pad77", counter.counted(lambda: outs.__setitem__("pad77", encode(bundle, caps, args.batch_size, "max_length"))),
            "every caption padded to 77"),
        Arm("dynamic", counter.counted(lambda: outs.__setitem__("dynamic", encode(bundle, caps, args.batch_size, "longest"))),
            "each batch padded to its longest (negationclip)"),
        Arm("siglip", sig_counter.counted(lambda: outs.__setitem__("siglip", encode(sig, caps, args.batch_size, "max_length"))),
            "SigLIP B/16 text tower, padded to 64 (its only exact padding)"),
    ])
    counter.close()
    sig_counter.close()
    from negationclip.models.encode import text_features
    import torch
    with torch.no_grad():  # what dynamic padding would do to SigLIP (one batch, not timed)
        tb = sig.tokenizer(caps[: args.batch_size])
        width = int(tb.attention_mask.sum(1).max()) if sig.tokenizer.uses_mask else int(
            (tb.input_ids != sig.tokenizer.pad_token_id).sum(1).max())
        full = torch.nn.functional.normalize(text_features(sig.model, tb.input_ids, tb.attention_mask), dim=-1)
        cut = torch.nn.functional.normalize(text_features(sig.model, tb.input_ids[:, :width],
                                                          tb.attention_mask[:, :width]), dim=-1)
    sig_diff = (full - cut).abs().max().item()
    bench.conclude()
    max_diff = (outs["dynamic"] - outs["pad77"]).abs().max().item()
    tok = bundle.tokenizer(caps)
    mean_len = float(tok.attention_mask.sum(1).float().mean())
    for arm in ("pad77", "dynamic", "siglip"):
        bench.arms[arm]["captions_per_s"] = args.captions / bench.arms[arm]["seconds"]["median"]
    r = bench.ratio("dynamic padding speed-up (pad77 / dynamic)", "pad77", "dynamic")
    bench.set_headline("text encoding speed-up, dynamic padding", r["median_ratio"], r["paired_min"],
                       r["paired_max"], "x")
    bench.write(args.out, columns=["captions_per_s"],
                config={"captions": args.captions, "batch_size": args.batch_size,
                        "model": "tiny" if args.quick else "vit-b32-random text tower",
                        "mean_tokens": mean_len},
                extra={"checks": {"max_abs_diff": max_diff, "siglip_dynamic_max_abs_diff": sig_diff}})
    print(f"{args.captions} COCO-length captions (mean {mean_len:.1f} tokens), batch {args.batch_size}; "
          f"max |difference| of embeddings {max_diff:.2e}; SigLIP with dynamic padding would move "
          f"its embeddings by up to {sig_diff:.2e} (so it is always padded to 64)")
    return 0


if __name__ == "__main__":
    sys.exit(cli(main))
