"""Fine-tuning step speed: negationclip vs the reference-style step, side by side.

The released script runs, at every step, the frozen vision tower on the batch's 224 px
images and the text tower on captions padded to 77 tokens. negationclip encodes each image
once (the vision tower is frozen, so that is exact) and pads captions to the longest in the
batch. Same model (random ViT-B/32-sized CLIP), same negated COCO-length captions, same
batch, same optimizer (AdamW over the same trainable parameters).

Each run of a variant is its own child process (so its peak memory is its own: build the
model, one warm-up step, --steps timed steps, median ms/step); ``_harness`` runs the variants
interleaved (A B A B ..., --runs each) and reports median [min-max] ms/step over runs, the
ratio, the achieved fraction of the float32 matmul peak and the load average. The reference
is timed on pixels already decoded and transformed (conservative: the released DataLoader
would also decode the JPEGs every epoch); that decode cost is printed separately.

FLOPs per step (counted by hooks from the shapes each forward runs): the vision tower's
forward (frozen: no backward) for the reference; the text tower's forward at the padded
length plus its backward, counted as twice the forward (activation and weight gradients);
the optimizer's elementwise update is left out.

    python benchmarks/train_speed.py                    # -> benchmarks/results/train_speed.json
    python benchmarks/train_speed.py --batch 32 --steps 3 --runs 5 --threads 2

A third variant, ``buckets``, is ours with ``--text-buckets 4`` (the ``negationclip`` recipe's
default): the batch's captions run as four length groups, each padded to its own longest.

The ratio is bounded by the work each step does (the reference's vision forward and 77-token
text tower against ours' text tower at the batch's longest caption); it is reported with the
fraction of peak of each variant beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import Arm, Bench, add_protocol_args, cli, device, parse_args, positive_int  # noqa: E402

SUBJECTS = ["a man", "a woman", "two children", "a dog", "a cat", "a group of people", "a young boy",
            "an old woman", "a brown horse", "a small bird"]
ACTIONS = ["riding a bike", "sitting on a bench", "walking down a busy street", "eating a sandwich",
           "standing next to a red car", "playing with a frisbee in the park",
           "looking out of a large window", "holding an umbrella in the rain"]
PLACES = ["", "near the beach", "in a kitchen", "on a snowy hill", "at a train station",
          "in front of a brick building"]
OBJECTS = ["hat", "tree", "car", "bag", "table", "fence", "lamp", "bottle"]


def captions(n: int, seed: int = 0) -> list[str]:
    """Negated captions of COCO length (about 10-11 words, + 'with no X')."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        words = f"{rng.choice(SUBJECTS)} {rng.choice(ACTIONS)} {rng.choice(PLACES)}".split()
        out.append(" ".join(words) + f" with no {rng.choice(OBJECTS)}")
    return out


def fabricate_images(root: Path, n: int) -> list[Path]:
    import numpy as np
    from PIL import Image

    paths = []
    for i in range(n):
        rng = np.random.default_rng(i)
        base = Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)).resize((640, 480))
        arr = np.asarray(base, dtype=np.int16) + rng.normal(0, 12, (480, 640, 3)).astype(np.int16)
        p = root / f"{i:04d}.jpg"
        Image.fromarray(arr.clip(0, 255).astype(np.uint8)).save(p, quality=90)
        paths.append(p)
    return paths


def rss_mb() -> float:
    # ru_maxrss is KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(mode: str, batch: int, steps: int, threads: int, device: str, workdir: Path,
          quick: bool = False) -> dict:
    import torch
    import torch.nn.functional as F

    from negationclip.models import (bundle_from_config, image_features, open_image, text_features,
                                     tiny_clip_config, vit_b32_config)
    from negationclip.train.config import TrainConfig
    from negationclip.train.data import Example, TokenTable
    from negationclip.train.distributed import DistInfo
    from negationclip.train.loop import _Data, _Trainer, make_optimizer
    from negationclip.train.trainable import configure_trainable, trainable_parameters
    from _harness import FlopCounter

    torch.set_num_threads(threads)
    dev = torch.device(device)
    bundle = bundle_from_config(tiny_clip_config() if quick else vit_b32_config(), seed=0).to(dev)
    configure_trainable(bundle.model)
    model = bundle.model
    params = [p for _, p in trainable_parameters(model)]
    opt = make_optimizer(params, TrainConfig(adamw_kernel="fused"))  # the same (fused) AdamW for both variants
    texts = captions(batch)
    paths = sorted(workdir.glob("*.jpg"))[:batch]
    t0 = time.perf_counter()
    pixels = bundle.transform([open_image(p) for p in paths]).to(dev)
    decode_ms = (time.perf_counter() - t0) * 1000
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    base_rss = rss_mb()

    if mode == "reference":
        tok = bundle.tokenizer(texts, padding="max_length")
        ids, mask = tok.input_ids.to(dev), tok.attention_mask.to(dev)

        def step():
            opt.zero_grad(set_to_none=True)
            img = F.normalize(image_features(model, pixels), dim=-1)
            txt = F.normalize(text_features(model, ids, mask), dim=-1)
            logits = model.logit_scale.exp() * img @ txt.t()
            labels = torch.arange(len(texts), device=dev)
            loss = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels)) / 2
            loss.backward()
            opt.step()
            return float(loss)
        setup_ms = 0.0
    else:
        # the one-off image pass (what the cache computes once per image, ever)
        t0 = time.perf_counter()
        with torch.no_grad():
            emb = F.normalize(image_features(model, pixels).float(), dim=-1)
        setup_ms = (time.perf_counter() - t0) * 1000
        keys = [str(p) for p in paths]
        rows = [Example(k, t) for k, t in zip(keys, texts)]
        data = _Data(rows, [], {k: i for i, k in enumerate(keys)}, emb, TokenTable(bundle.tokenizer, texts),
                     None, {})
        tr = _Trainer(bundle, data, TrainConfig(batch_size=batch, val_fraction=0.0, device=device,
                                                text_buckets=4 if mode == "buckets" else 1),
                      DistInfo(), dev)
        model.text_model.train()

        def step():
            opt.zero_grad(set_to_none=True)
            loss, value = tr.batch_loss(rows)
            loss.backward()
            opt.step()
            return value

    counter = FlopCounter(model, backward_text=True)
    step()  # warm-up, FLOPs counted
    flops = counter.flops
    counter.close()
    times = []
    for _ in range(steps):
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        t0 = time.perf_counter()
        step()
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        times.append((time.perf_counter() - t0) * 1000)
    times.sort()
    out = {"mode": mode, "ms_per_step": times[len(times) // 2], "ms_all": times, "flops": flops,
           "peak_rss_mb": rss_mb(), "rss_before_steps_mb": base_rss,
           "decode_transform_ms_per_batch": decode_ms, "one_off_image_pass_ms": setup_ms,
           "text_tokens_per_caption": (77 if mode == "reference" else
                                       int(tr.d.tokens.batch(texts)[0].shape[1]))}
    if dev.type == "cuda":
        out["peak_cuda_mb"] = torch.cuda.max_memory_allocated(dev) / 2 ** 20
    return out


def run_child(mode: str, args, workdir: str) -> dict:
    cmd = [sys.executable, __file__, "--child", mode, "--workdir", workdir, "--batch", str(args.batch),
           "--steps", str(args.steps), "--threads", str(args.threads), "--device", args.device]
    if args.quick:
        cmd.append("--quick")
    env = dict(os.environ, NEGATIONCLIP_NO_PROGRESS="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
    if proc.returncode != 0 or line is None:
        sys.exit(f"{mode} run failed:\n{proc.stderr[-3000:]}")
    out = json.loads(line[len("RESULT "):])
    out.pop("ms_all")
    out.pop("mode")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=positive_int, default=32, help="captions per step")
    ap.add_argument("--steps", type=positive_int, default=2, help="timed steps per child run (after 1 warm-up step)")
    ap.add_argument("--device", type=device, default="cpu", help="cpu or cuda")
    ap.add_argument("--out", default=None, help="JSON results (default benchmarks/results/train_speed.json)")
    ap.add_argument("--child", choices=["reference", "ours", "buckets"], help=argparse.SUPPRESS)
    ap.add_argument("--workdir", help=argparse.SUPPRESS)
    add_protocol_args(ap)
    args = parse_args(ap, argv)
    if args.quick:
        args.batch, args.steps, args.runs = 4, 1, 1
    if args.child:
        print("RESULT " + json.dumps(child(args.child, args.batch, args.steps, args.threads,
                                           args.device, Path(args.workdir), args.quick)))
        return 0

    # each child run warms itself up (one untimed step), so no harness warm-up round
    bench = Bench("train_speed", threads=args.threads, runs=args.runs, warmup=0, quick=args.quick)
    with tempfile.TemporaryDirectory() as tmp:
        fabricate_images(Path(tmp), args.batch)
        bench.measure([
            Arm("reference", lambda: run_child("reference", args, tmp),
                "vision tower every step, pad 77", seconds_key="ms_per_step"),
            Arm("ours", lambda: run_child("ours", args, tmp),
                "cached image embeddings, dynamic padding (negationclip)", seconds_key="ms_per_step"),
            Arm("buckets", lambda: run_child("buckets", args, tmp),
                "ours with --text-buckets 4 (recipe negationclip)", seconds_key="ms_per_step"),
        ])
    bench.conclude()
    r = bench.ratio("step speed-up (reference / ours)", "reference", "ours", key="ms_per_step")
    bench.set_headline("fine-tuning step speed-up", r["median_ratio"], r["paired_min"], r["paired_max"], "x")
    bench.ratio("length groups speed-up (ours / buckets)", "ours", "buckets", key="ms_per_step")
    ref, ours = bench.arms["reference"], bench.arms["ours"]
    cols = ["text_tokens_per_caption", "peak_rss_mb"] + (["peak_cuda_mb"] if args.device.startswith("cuda") else [])
    bench.write(args.out, columns=cols,
                config={"batch": args.batch, "steps": args.steps, "device": args.device,
                        "model": "tiny" if args.quick else "random ViT-B/32-sized CLIPModel"})
    print(f"reference decode+transform of a batch's JPEGs (not timed above): "
          f"{ref['decode_transform_ms_per_batch']['median']:.0f} ms; one-off image pass of ours: "
          f"{ours['one_off_image_pass_ms']['median']:.0f} ms per {args.batch} images")
    return 0


if __name__ == "__main__":
    sys.exit(cli(main))
