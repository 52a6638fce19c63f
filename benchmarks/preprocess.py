"""Image preprocessing: negationclip's two rules vs Hugging Face's CLIPImageProcessor.

On the same random images of COCO's common sizes (RGB, 640x480, 480x640, 500x375, ...), each
arm turns one batch of --images PIL images into a 224x224 pixel tensor:
- ``openai``: ``ImageTransform(rule="openai")`` (OpenAI's ``_transform``, for OpenAI and
  open_clip checkpoints);
- ``hf``: ``ImageTransform(rule="hf")`` (for Hugging Face folders);
- ``processor``: transformers' ``CLIPImageProcessor`` (PIL backend), the reference of ``hf``.

``_harness`` runs them interleaved (median [min-max] of --runs runs, load average, busy
flag); the headline is the ratio of medians processor / ``hf`` (same pixels, so a pure speed
ratio), with processor / ``openai`` beside it. The check ``max_abs_diff_hf`` (must be 0) is the
largest |difference| between the ``hf`` rule's pixels and the processor's. No FLOPs: resizing
and cropping are not matrix work, so no fraction of peak is reported.

    python benchmarks/preprocess.py                     # -> benchmarks/results/preprocess.json
    python benchmarks/preprocess.py --images 256 --runs 5
    python benchmarks/preprocess.py --quick             # smoke test
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import Arm, Bench, add_protocol_args, cli, parse_args, positive_int  # noqa: E402

SIZES = [(640, 480), (480, 640), (640, 427), (427, 640), (500, 375), (375, 500), (640, 360),
         (612, 612), (640, 512), (333, 500), (640, 425), (299, 224), (1024, 768)]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=positive_int, default=64, help="images per arm call (default 64)")
    ap.add_argument("--out", default=None, help="JSON results (default benchmarks/results/preprocess.json)")
    add_protocol_args(ap, threads=1)
    args = parse_args(ap, argv)
    if args.quick:
        args.images, args.runs = 4, 1
    from PIL import Image
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    from negationclip.models import ImageTransform

    bench = Bench("preprocess", threads=args.threads, runs=args.runs, quick=args.quick)
    rng = np.random.default_rng(0)
    ims = [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
           for w, h in (SIZES[i % len(SIZES)] for i in range(args.images))]
    proc = CLIPImageProcessorPil()
    fns = {"openai": ImageTransform(224), "hf": ImageTransform(224, rule="hf"),
           "processor": lambda x: torch.as_tensor(proc(images=x, return_tensors="np")["pixel_values"])}
    out: dict[str, torch.Tensor] = {}

    def arm(name):
        def run():
            out[name] = fns[name](ims)
        return run

    labels = {"openai": "ImageTransform(rule='openai')", "hf": "ImageTransform(rule='hf')",
              "processor": "transformers CLIPImageProcessor (PIL backend)"}
    bench.measure([Arm(k, arm(k), labels[k]) for k in fns])
    bench.conclude()
    diff = (out["hf"] - out["processor"]).abs().max().item()
    r = bench.ratio("preprocessing speed-up, processor / hf rule", "processor", "hf")
    bench.ratio("preprocessing speed-up, processor / openai rule", "processor", "openai")
    bench.target("max |hf rule - CLIPImageProcessor| (pixel-exact)", diff, "<=", 0.0)
    bench.set_headline("preprocessing speed-up, CLIPImageProcessor / hf rule", r["median_ratio"],
                       r["paired_min"], r["paired_max"], "x")
    ms = {k: 1000 * a["seconds"]["median"] / args.images for k, a in bench.arms.items()}
    bench.write(args.out, config={"images": args.images, "size": 224, "sources": "random RGB, COCO sizes"},
                extra={"checks": {"max_abs_diff_hf": diff}, "ms_per_image": ms})
    print("ms per image (median): " + ", ".join(f"{k} {v:.2f}" for k, v in ms.items())
          + f"; max |hf - processor| {diff}")
    return 0


if __name__ == "__main__":
    sys.exit(cli(main))
