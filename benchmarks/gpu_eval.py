"""eval_speed on a GPU: one crop per forward vs the batched image pass, where batch 1 is
latency-bound and the ratio can be large (on a CPU both are compute-bound: see eval_speed.py).

Same random ViT-B/32-sized CLIP as ``eval_speed.py``, on --device in --dtype. Arms, run
interleaved by ``_harness`` with the device synchronized after every call (median [min-max]
of --runs runs, the device's matmul peak in --dtype measured in the same run, achieved
fraction of it from FlopCounter's shape-counted FLOPs, load average):
- ``one-crop``: --crops crops (pixels already transformed and on the device), one forward
  each: the reference evaluators' loop;
- ``batched``: the same crops through ``encode_pixels`` in batches of --batch-size;
- ``ref`` / ``ours`` (with --records > 0): eval_speed's NegRefCOCOg arms end to end, JPEG
  decoding and cropping on the CPU included, on --records fabricated records in the released
  format (640x480 JPEGs, 2-6 boxes each; no released file needed on the GPU machine).

Headline: one-crop / batched (ratio of medians, per-run paired spread), ref / ours beside it.
``--dry-run`` runs the same code on the CPU with a tiny model and tiny sizes (a check of the
script, figures meaningless). Needs a CUDA build of torch and the package's dependencies
(``pip install -e .``); a missing one is named before any work.

    python benchmarks/gpu_eval.py --device cuda                    # -> benchmarks/results/gpu_eval.json
    python benchmarks/gpu_eval.py --device cuda --dtype float16 --crops 512 --records 40 --runs 5
    python benchmarks/gpu_eval.py --dry-run --out /tmp/gpu_eval.json   # CPU, tiny: checks the script
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import random
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import (Arm, Bench, FlopCounter, add_protocol_args, cli, device, nonneg_int, parse_args,  # noqa: E402
                      positive_int)

NEEDS = ["transformers", "PIL", "numpy", "ftfy", "wcwidth", "regex", "tokenizers", "safetensors"]
PHRASES = ["a dog without a collar", "the car that has no roof rack", "a man not wearing a hat",
           "the pizza with no olives", "a chair without armrests", "the bus that is not red"]


def fabricate_records(n: int, seed: int = 0) -> list[dict]:
    """Records in NegRefCOCOg's released layout (image, phrase, ref_bbox, bbox_list [x, y, w, h])."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        boxes = []
        for _ in range(rng.randint(2, 6)):
            w, h = rng.randint(40, 320), rng.randint(40, 240)
            boxes.append([rng.randint(0, 640 - w), rng.randint(0, 480 - h), w, h])
        out.append({"image": f"gpu_{i // 2:05d}.jpg", "phrase": rng.choice(PHRASES),
                    "ref_bbox": rng.choice(boxes), "bbox_list": boxes})
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default=None, help="cuda, cuda:N (default cuda) or cpu")
    ap.add_argument("--dtype", choices=["float32", "float16", "bfloat16"], default="float32",
                    help="model and peak GEMM dtype (default float32, as eval_speed; float32 GEMMs follow "
                         "torch's TF32 setting, recorded with the peak)")
    ap.add_argument("--crops", type=positive_int, default=256, help="crops in the pass arms (default 256)")
    ap.add_argument("--batch-size", type=positive_int, default=64, help="batched arm and ours (default 64)")
    ap.add_argument("--records", type=nonneg_int, default=40,
                    help="fabricated NegRefCOCOg records for ref/ours (0: pass arms only; default 40)")
    ap.add_argument("--dry-run", action="store_true",
                    help="CPU, tiny model, tiny sizes, one run: checks the script, figures meaningless")
    ap.add_argument("--out", default=None, help="JSON results (default benchmarks/results/gpu_eval.json)")
    add_protocol_args(ap, threads=2, runs=5)
    args = parse_args(ap, argv)
    if args.dry_run or args.quick:
        args.quick, args.device, args.crops, args.records, args.runs = True, "cpu", 6, 3, 1
    missing = [m for m in NEEDS if importlib.util.find_spec(m) is None]
    if missing:
        ap.error(f"missing Python packages: {', '.join(missing)} (pip install -e . in the repository)")
    args.device = args.device or "cuda"
    if torch.device(args.device).type == "cuda" and not torch.cuda.is_available():
        ap.error(f"--device {args.device}: torch {torch.__version__} sees no CUDA device "
                 "(a CPU build, or no GPU here); --dry-run checks the script on the CPU")
    try:
        device(args.device)
    except argparse.ArgumentTypeError as e:
        ap.error(f"argument --device: {e}")

    import eval_speed as es
    from negationclip.models import bundle_from_config, encode_pixels, image_features, tiny_clip_config, vit_b32_config
    from PIL import Image

    dtype = getattr(torch, args.dtype)
    bench = Bench("gpu_eval", threads=args.threads, runs=args.runs, quick=args.quick, device=args.device,
                  dtype=dtype)
    bundle = bundle_from_config(tiny_clip_config() if args.quick else vit_b32_config(), seed=0)
    bundle.to(args.device, dtype)
    counter = FlopCounter(bundle.model)
    crops = [Image.new("RGB", (200, 150), (i * 7 % 256, 90, 160)) for i in range(args.crops)]
    pixels = bundle.transform(crops).to(args.device, dtype)
    state: dict = {}

    @torch.no_grad()
    def one_crop():
        for i in range(len(pixels)):
            image_features(bundle.model, pixels[i: i + 1])

    def batched():
        for s in range(0, len(pixels), args.batch_size):
            encode_pixels(bundle, pixels[s: s + args.batch_size])

    arms = [Arm("one-crop", counter.counted(one_crop), f"{args.crops} crops, one per forward (pixels ready)"),
            Arm("batched", counter.counted(batched), f"the same crops, batches of {args.batch_size}")]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        if args.records:
            records = fabricate_records(args.records)
            es.fabricate_negref(records, root)
            sub = root / "records.json"
            sub.write_text(json.dumps(records))
            arms += [Arm("ref", counter.counted(lambda: state.__setitem__("ref", es.negref_reference(bundle, records, root))),
                         "NegRefCOCOg reference (reopen per box, batch 1, pad 77)"),
                     Arm("ours", counter.counted(lambda: state.__setitem__(
                         "ours", es.negref_ours(bundle, sub, root, args.batch_size))),
                         "NegRefCOCOg negationclip (decode once, batched)")]
        bench.measure(arms)
    counter.close()
    bench.conclude()
    r = bench.ratio("one crop per forward / batched image pass", "one-crop", "batched")
    bench.set_headline(f"one crop per forward / batched ({args.dtype})", r["median_ratio"], r["paired_min"],
                       r["paired_max"], "x")
    checks: dict = {}
    if args.records:
        e2e = bench.ratio("NegRefCOCOg speed-up (ref / ours)", "ref", "ours")
        bench.headline["beside"] = (f"NegRefCOCOg end to end ref / ours {e2e['median_ratio']:.2f}x "
                                    f"[{e2e['paired_min']:.2f}-{e2e['paired_max']:.2f}]")
        ours = ["correct" if it["outcome"] in ("correct", "tie") else "wrong" for it in state["ours"]["items"]]
        checks["negref_outcomes_agree"] = sum(a == b for a, b in zip(state["ref"], ours))
        checks["negref_records"] = len(ours)
    bench.write(args.out, config={"crops": args.crops, "batch_size": args.batch_size, "records": args.records,
                                  "dtype": args.dtype, "model": "tiny" if args.quick else "vit-b32-random"},
                extra={"checks": checks, "dry_run": bool(args.dry_run)})
    return 0


if __name__ == "__main__":
    sys.exit(cli(main))
