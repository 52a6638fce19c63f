"""Dynamic padding vs padding every caption to 77 tokens, on a ViT-B/32-sized text tower.

    python benchmarks/encode_text.py [--captions 512] [--batch-size 128] [--out benchmarks/results/encode_text.json]

Both arms run in the same process on the same random model and the same COCO-length captions;
the embeddings are checked to agree (the text tower is causal and pools at end-of-text, so
padding cannot change them), then ms per batch and the ratio are printed.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import print_table, write_json  # noqa: E402

from negationclip.models import bundle_from_config, encode_text, vit_b32_config  # noqa: E402

WORDS = ("a man woman child dog cat street car bus table plate pizza kitchen with on in of the "
         "sitting standing riding holding next to near red blue small large white black two three "
         "people bike horse field tree park frisbee laptop desk window").split()


def coco_like_captions(n: int, seed: int = 0) -> list[str]:
    """Captions of COCO's length distribution (about 8-16 words, mean ~10.5)."""
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 16))) + "." for _ in range(n)]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--captions", type=int, default=512)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "encode_text.json"))
    args = ap.parse_args(argv)

    bundle = bundle_from_config(vit_b32_config(), seed=0)
    caps = coco_like_captions(args.captions)
    encode_text(bundle, caps[: args.batch_size])  # warm-up
    times = {"dynamic": [], "pad77": []}
    outs = {}
    for _ in range(args.repeats):
        for arm, padding in (("dynamic", "longest"), ("pad77", "max_length")):
            t0 = time.perf_counter()
            outs[arm] = encode_text(bundle, caps, batch_size=args.batch_size, padding=padding,
                                    show_progress=False)
            times[arm].append(time.perf_counter() - t0)
    max_diff = (outs["dynamic"] - outs["pad77"]).abs().max().item()
    n_batches = -(-args.captions // args.batch_size)
    tok = bundle.tokenizer(caps)
    rows = []
    for arm in ("pad77", "dynamic"):
        best = min(times[arm])
        rows.append({"arm": arm, "ms_per_batch": 1000 * best / n_batches,
                     "captions_per_s": args.captions / best})
    ratio = min(times["pad77"]) / min(times["dynamic"])
    print(f"ViT-B/32-sized text tower, {args.captions} COCO-length captions, batch {args.batch_size}, "
          f"mean length {tok.attention_mask.sum(1).float().mean():.1f} tokens")
    print_table(rows, ["arm", "ms_per_batch", "captions_per_s"])
    print(f"speed-up of dynamic padding: {ratio:.2f}x   (max |difference| of embeddings: {max_diff:.2e})")
    write_json(args.out, {"benchmark": "encode_text", "rows": rows, "speedup": ratio,
                          "max_abs_diff": max_diff, "captions": args.captions,
                          "batch_size": args.batch_size})
    return 0


if __name__ == "__main__":
    sys.exit(main())
