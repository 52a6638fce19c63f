"""Image preprocessing: negationclip's two rules vs Hugging Face's CLIPImageProcessor.

    python benchmarks/preprocess.py [--images 64] [--out benchmarks/results/preprocess.json]

On the same random images of COCO's common sizes (RGB, 640x480, 480x640, 500x375, ...), time
one batch through ``ImageTransform(rule="openai")``, ``ImageTransform(rule="hf")`` and
transformers' ``CLIPImageProcessor`` (PIL backend), and check the "hf" rule's pixels equal the
processor's (max |difference|, which must be 0).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import print_table, write_json  # noqa: E402

from negationclip.models import ImageTransform  # noqa: E402

SIZES = [(640, 480), (480, 640), (640, 427), (427, 640), (500, 375), (375, 500), (640, 360),
         (612, 612), (640, 512), (333, 500), (640, 425), (299, 224), (1024, 768)]


def main(argv=None) -> int:
    from PIL import Image
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "preprocess.json"))
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    ims = [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
           for w, h in (SIZES[i % len(SIZES)] for i in range(args.images))]
    proc = CLIPImageProcessorPil()
    arms = {"negationclip openai": ImageTransform(224),
            "negationclip hf": ImageTransform(224, rule="hf"),
            "CLIPImageProcessor (PIL)": lambda x: torch.as_tensor(
                proc(images=x, return_tensors="np")["pixel_values"])}
    out, times = {}, {k: [] for k in arms}
    for _ in range(args.repeats):
        for name, fn in arms.items():
            t0 = time.perf_counter()
            out[name] = fn(ims)
            times[name].append(time.perf_counter() - t0)
    diff = (out["negationclip hf"] - out["CLIPImageProcessor (PIL)"]).abs().max().item()
    ref = min(times["CLIPImageProcessor (PIL)"])
    rows = [{"arm": k, "ms_per_image": 1000 * min(v) / args.images, "images_per_s": args.images / min(v),
             "speedup_vs_processor": ref / min(v)} for k, v in times.items()]
    print(f"{args.images} random RGB images of COCO sizes -> 224x224, one thread")
    print_table(rows, ["arm", "ms_per_image", "images_per_s", "speedup_vs_processor"])
    print(f"max |negationclip hf - CLIPImageProcessor|: {diff}")
    write_json(args.out, {"benchmark": "preprocess", "rows": rows, "max_abs_diff_hf": diff,
                          "images": args.images})
    return 0


if __name__ == "__main__":
    sys.exit(main())
