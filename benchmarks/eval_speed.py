"""NegRefCOCOg evaluation speed: negationclip vs a reference-style loop, side by side.

The reference evaluator reopens the image for every box, runs one crop per forward pass and
encodes the phrase per record padded to 77 tokens. negationclip decodes each image once,
encodes unique crops in batches through the image-embedding cache (cold here: a fresh
in-memory cache, so nothing is reused from earlier runs) and each phrase once with dynamic
padding. Same model (random ViT-B/32-sized CLIP), same fabricated images, same records.

    python benchmarks/eval_speed.py --records 100 --threads 2   # -> benchmarks/results/eval_speed.json

Target: ratio >= 5x on CPU. Also checks that both give the same outcome for every record.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import print_table, write_json  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEFAULT_FILE = REPO.parent / "shared" / "data" / "benchmarks" / "NegRefCOCOg.json"


def fabricate(records: list[dict], root: Path) -> None:
    """A JPEG per image at (at least) COCO size, noisy enough that decoding costs what a photo does."""
    need: dict[str, tuple[int, int]] = {}
    for r in records:
        w, h = need.get(r["image"], (640, 480))
        for x, y, bw, bh in r["bbox_list"]:
            w, h = max(w, math.ceil(x + bw)), max(h, math.ceil(y + bh))
        need[r["image"]] = (w, h)
    for name, (w, h) in need.items():
        rng = np.random.default_rng(zlib.crc32(name.encode()))
        base = Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)).resize((w, h), Image.BICUBIC)
        arr = np.asarray(base, dtype=np.int16) + rng.normal(0, 12, (h, w, 3)).astype(np.int16)
        Image.fromarray(arr.clip(0, 255).astype(np.uint8)).save(root / name, quality=90)


@torch.no_grad()
def reference_loop(bundle, records: list[dict], root: Path) -> tuple[list[str], float]:
    """What the reference evaluator does: per record, tokenize to 77 and encode the phrase;
    per box, reopen the image, crop, preprocess, one forward pass; first maximum wins."""
    from negationclip.models import image_features, text_features

    t0 = time.perf_counter()
    outcomes = []
    for r in records:
        tok = bundle.tokenizer([r["phrase"]], padding="max_length")
        t = F.normalize(text_features(bundle.model, tok.input_ids, tok.attention_mask), dim=-1)[0]
        scores = []
        for x, y, w, h in r["bbox_list"]:
            im = Image.open(root / r["image"]).convert("RGB")
            crop = im.crop((max(0, x), max(0, y), min(im.width, x + w), min(im.height, y + h)))
            v = F.normalize(image_features(bundle.model, bundle.transform([crop])), dim=-1)[0]
            scores.append(float(v @ t))
        ref = r["bbox_list"].index(r["ref_bbox"])
        best = max(range(len(scores)), key=scores.__getitem__)  # first maximum
        outcomes.append("correct" if best == ref else "wrong")
    return outcomes, time.perf_counter() - t0


def ours(bundle, path: Path, root: Path, batch_size: int) -> tuple[dict, float]:
    from negationclip.evaluate.negrefcocog import evaluate_negrefcocog
    from negationclip.models import ImageEmbeddingCache

    t0 = time.perf_counter()
    res = evaluate_negrefcocog(bundle, path, root, cache=ImageEmbeddingCache(False),
                               batch_size=batch_size, return_items=True)
    return res, time.perf_counter() - t0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--negrefcocog", default=str(DEFAULT_FILE), help="released NegRefCOCOg.json")
    ap.add_argument("--records", type=int, default=100, help="first N records")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument("--batch-size", type=int, default=64, help="negationclip crop batch size")
    ap.add_argument("--device", default="cpu", help="torch device for both runs")
    ap.add_argument("--tiny", action="store_true", help="tiny model instead of ViT-B/32 (smoke test)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "eval_speed.json"),
                    help="JSON results")
    args = ap.parse_args(argv)
    os.environ.setdefault("NEGATIONCLIP_NO_PROGRESS", "1")
    torch.set_num_threads(args.threads)
    from negationclip.models import bundle_from_config, tiny_clip_config, vit_b32_config

    src = Path(args.negrefcocog)
    if not src.is_file():
        print(f"error: {src} not found (pass --negrefcocog)", file=sys.stderr)
        return 2
    records = json.loads(src.read_text())[: args.records]
    config = tiny_clip_config() if args.tiny else vit_b32_config()
    bundle = bundle_from_config(config, seed=0)
    if args.device != "cpu":
        bundle = bundle.to(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        fabricate(records, root)
        sub = root / "records.json"
        sub.write_text(json.dumps(records))
        warm = root / "warm.json"
        warm.write_text(json.dumps(records[:2]))
        ours(bundle, warm, root, args.batch_size)  # warm-up both paths (allocator, kernels)
        reference_loop(bundle, records[:2], root)
        ref_out, ref_s = reference_loop(bundle, records, root)
        res, our_s = ours(bundle, sub, root, args.batch_size)
    # "first maximum wins" counts ties as correct: compare with correct-or-tie
    our_out = ["correct" if it["outcome"] in ("correct", "tie") else "wrong" for it in res["items"]]
    agree = sum(a == b for a, b in zip(ref_out, our_out))
    n, crops = len(records), sum(len(r["bbox_list"]) for r in records)
    ratio = ref_s / our_s
    rows = [{"method": "reference loop (reopen per box, batch 1)", "seconds": ref_s,
             "records_per_s": n / ref_s, "crops_encoded": crops, "image_decodes": crops},
            {"method": "negationclip (decode once, batched, cache)", "seconds": our_s,
             "records_per_s": n / our_s, "crops_encoded": res["crops"],
             "image_decodes": res["image_decodes"]},
            {"method": "ratio", "seconds": ratio}]
    print(f"NegRefCOCOg, {n} records, {'tiny' if args.tiny else 'ViT-B/32-sized'} random CLIP, "
          f"device {args.device}, {args.threads} threads")
    print_table(rows, ["method", "seconds", "records_per_s", "crops_encoded", "image_decodes"])
    print(f"speed-up: {ratio:.2f}x (target >= 5x); outcomes agree on {agree}/{n} records; "
          f"accuracy (ties as correct) {res['accuracy_ties_as_correct']:.4f}, strict {res['accuracy']:.4f}")
    out = {"benchmark": "eval_speed", "records": n, "model": "tiny" if args.tiny else "vit-b32-random",
           "device": args.device, "threads": args.threads, "batch_size": args.batch_size,
           "reference_seconds": ref_s, "negationclip_seconds": our_s, "speedup": ratio,
           "reference_records_per_second": n / ref_s, "negationclip_records_per_second": n / our_s,
           "reference_crop_forwards": crops, "negationclip_unique_crops": res["crops"],
           "image_decodes": res["image_decodes"], "outcomes_agree": agree, "target": 5.0,
           "rows": rows}
    write_json(args.out, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
