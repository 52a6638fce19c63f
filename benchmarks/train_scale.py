"""Memory and time of the streaming training path as the caption set grows: 100K, 1M, 5M.

    python benchmarks/train_scale.py            # make bench: 20K, 200K, 1M captions, 100 steps
    python benchmarks/train_scale.py --full     # the issue's sizes: 100K, 1M, 5M, 1000 steps
    python benchmarks/train_scale.py --sizes 100000,1000000,5000000 --steps 200 --workdir /tmp/w

Per size N (synthetic, no pixels): a NegBench-layout CSV of N captions (5 per image, so N/5
images) read by ``train.streaming`` (vectorised chunk offset index), and the images'
embeddings in a ``models.embedding_store`` (float16 shards + uint64 key-hash index,
memory-mapped). Each size runs in its own child process, which opens the data as
``negationclip train --dataset-type csv`` does after its embedding pass (an
``EmbeddedStream``: per image 16 bytes, key hash -> stored row hash), then takes ``--steps``
optimizer steps of the tiny CLIP's text tower on the stream's batches (captions tokenised
per batch, image rows gathered from the store, CLIP's contrastive loss, AdamW): time to the
first step (from the child's start after imports: index + key table + store + model + one
step), seconds per 1,000 steps, and the child's peak RSS (``ru_maxrss``, memory-mapped pages it
touched included). Not measured here: the embedding pass itself (it encodes pixels).

Targets (issue 16): peak RSS at the largest size minus at the smallest < 200 MB; first step
< 30 s at 5M; step time independent of N (largest / smallest <= 1.25). The data is written
once into ``--workdir`` (reused by later runs; about 0.3 GB at 5M) and not timed.

``_harness`` protocol: arms = sizes, interleaved, one untimed warm-up each. The last line of
the output reads ``RSS growth: <N> MB``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import Arm, Bench, add_protocol_args, cli, parse_args, positive_int  # noqa: E402

PER_IMAGE = 5


def _label(n: int) -> str:
    return f"{n // 1_000_000}M" if n % 1_000_000 == 0 else f"{n // 1000}K" if n % 1000 == 0 else str(n)


def make_data(root: Path, n: int, dim: int) -> Path:
    """``root/N``: captions.csv (filepath, caption) and store/ (N/PER_IMAGE float16 rows)."""
    import numpy as np

    from negationclip.models.embedding_store import StoreWriter, merge_index

    d = root / str(n)
    if (d / "done-v2").exists():  # v2: the store layout with index generations
        return d
    d.mkdir(parents=True, exist_ok=True)
    objs = ["dog", "cat", "car", "tree", "umbrella", "bench", "kite", "boat"]
    if (d / "done").exists():  # an earlier layout: the captions stand, the store is rebuilt
        import shutil
        shutil.rmtree(d / "store", ignore_errors=True)
    else:
        with open(d / "captions.csv", "w") as f:
            f.write("filepath,caption\n")
            block = 100_000
            for s in range(0, n, block):
                f.write("".join(f"img/{i // PER_IMAGE:08d}.jpg,a photo number {i} with a "
                                f"{objs[i % 8]} and no {objs[(i * 7 + 3) % 8]}\n"
                                for i in range(s, min(n, s + block))))
    images = (n + PER_IMAGE - 1) // PER_IMAGE
    rng = np.random.default_rng(0)
    with StoreWriter(d / "store", dim, dtype="float16", shard_size=262_144) as w:
        for s in range(0, images, 100_000):
            e = min(images, s + 100_000)
            w.add([f"img/{i:08d}.jpg" for i in range(s, e)],
                  rng.standard_normal((e - s, dim)).astype(np.float32))
    merge_index(d / "store")
    (d / "done-v2").write_text("")
    return d


def child(d: Path, steps: int, batch_size: int) -> dict:
    """One measured run (in its own process, so peak RSS is this size's)."""
    t_start = time.perf_counter()
    import torch

    torch.set_num_threads(1)
    import numpy as np

    from negationclip.models import text_features, tiny_clip_bundle
    from negationclip.models.embedding_store import EmbeddingStore, key_hashes
    from negationclip.train.data import TokenTable
    from negationclip.train.loss import contrastive_loss
    from negationclip.train.streaming import NEGBENCH_CSV, EmbeddedStream, StreamingDataset

    rss_imports = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0, c0 = time.perf_counter(), time.process_time()
    ds = StreamingDataset(str(d / "captions.csv"), "csv", NEGBENCH_CSV, chunk=1024, seed=0)
    t_index = time.perf_counter() - t0
    store = EmbeddingStore(d / "store")
    # what embed_stream keeps per image (16 bytes): its key's hash -> its row's hash in the
    # store (here the store is keyed by the path itself; in a run, by the file's content)
    images = (len(ds) + PER_IMAGE - 1) // PER_IMAGE
    names = [f"img/{i:08d}.jpg" for i in range(images)]
    key_h = key_hashes(os.path.abspath(n) for n in names)
    content_h = key_hashes(names)
    del names
    order = np.argsort(key_h)
    stream = EmbeddedStream(ds, None, key_h[order], content_h[order], store, len(ds), {})
    del key_h, content_h, order
    t_keys = time.perf_counter() - t0 - t_index
    t1 = time.perf_counter()
    bundle = tiny_clip_bundle(seed=0)
    t_model = time.perf_counter() - t1
    model = bundle.model
    params = [p for p in model.text_model.parameters()] + list(model.text_projection.parameters())
    opt = torch.optim.AdamW(params, lr=1e-4)

    tokens = TokenTable(bundle.tokenizer, (), keep=False)  # per batch, as `train` streams

    times, first, first_cpu = [], None, None
    epoch = 0
    while len(times) < steps + 1:
        for batch in stream.batches(epoch, batch_size):  # the rows `negationclip train` reads
            if len(batch) < batch_size:
                continue
            ts = time.perf_counter()
            ids, mask = tokens.batch([e.text for e in batch])
            img = stream.image_rows([e.image for e in batch])
            txt = text_features(model, ids, mask)
            loss = contrastive_loss(img, txt, model.logit_scale.exp())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            now = time.perf_counter()
            if first is None:
                first = now - t0
                first_cpu = time.process_time() - c0
            times.append(now - ts)
            if len(times) >= steps + 1:
                break
        epoch += 1
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    steady = times[1:]
    return {"captions": len(ds), "images": len(store), "peak_rss_mb": rss,
            "rss_after_imports_mb": rss_imports, "first_step_s": first, "index_s": t_index,
            "key_index_s": t_keys, "model_s": t_model,
            "first_step_cpu_s": first_cpu,  # CPU time to the first step: what load cannot inflate
            "s_per_1000_steps": 1000 * sum(steady) / len(steady),
            "import_s": t0 - t_start}


def _run_child(d: Path, steps: int, batch_size: int) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    p = subprocess.run([sys.executable, __file__, "--child", str(d), "--steps", str(steps),
                        "--batch-size", str(batch_size)], capture_output=True, text=True, env=env)
    if p.returncode:
        raise SystemExit(f"child for {d} failed:\n{p.stderr[-3000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default=None,
                    help="caption counts, comma-separated (default 20000,200000,1000000: the "
                         "`make bench` size; --full: 100000,1000000,5000000)")
    ap.add_argument("--steps", type=positive_int, default=None,
                    help="timed steps per run (after the first; default 100, --full 1000)")
    ap.add_argument("--full", action="store_true",
                    help="the issue's sizes and steps: 100K, 1M, 5M captions, 1000 steps "
                         "(about 0.3 GB of data at 5M; tens of minutes)")
    ap.add_argument("--batch-size", type=positive_int, default=32)
    ap.add_argument("--dim", type=positive_int, default=32, help="embedding width (the tiny CLIP's)")
    ap.add_argument("--workdir", default=None,
                    help="where the synthetic data is written and reused (default: a temp dir)")
    ap.add_argument("--out", default=None, help="JSON results (default benchmarks/results/train_scale.json)")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    add_protocol_args(ap, threads=1, runs=1)
    args = parse_args(ap, argv)
    if args.child:
        print(json.dumps(child(Path(args.child), args.steps, args.batch_size)))
        return 0
    if args.steps is None:
        args.steps = 1000 if args.full else 100
    args.sizes = args.sizes or ("100000,1000000,5000000" if args.full else "20000,200000,1000000")
    try:
        sizes = [positive_int(s) for s in args.sizes.split(",")]
    except argparse.ArgumentTypeError as e:
        ap.error(f"argument --sizes: {args.sizes!r}: each caption count must be a {e}")
    if args.quick:
        sizes, args.steps = [2000, 20000], 20
    bench = Bench("train_scale", threads=args.threads, runs=args.runs, quick=args.quick)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.workdir) if args.workdir else Path(tmp)
        dirs = {}
        for n in sizes:
            t = time.perf_counter()
            dirs[n] = make_data(root, n, args.dim)
            print(f"[train_scale] data for {n} captions ready ({time.perf_counter() - t:.1f} s)", flush=True)
        bench.measure([Arm(_label(n), (lambda d=dirs[n]: _run_child(d, args.steps, args.batch_size)),
                           f"{n} captions, {n // PER_IMAGE} stored image embeddings") for n in sizes])
    bench.conclude()
    lo, hi = _label(sizes[0]), _label(sizes[-1])
    a, b = bench.arms[lo], bench.arms[hi]
    growth = b["peak_rss_mb"]["median"] - a["peak_rss_mb"]["median"]
    step_ratio = b["s_per_1000_steps"]["median"] / a["s_per_1000_steps"]["median"]
    bench.target(f"peak RSS growth {lo} -> {hi} captions (MB)", growth, "<=", 200)
    bench.target(f"time to first step at {hi} captions (s)", b["first_step_s"]["median"], "<=", 30)
    bench.target(f"step time {hi} / {lo} (independent of N)", step_ratio, "<=", 1.25)
    bench.set_headline(f"peak RSS growth {lo} -> {hi} captions", growth, growth, growth, "MB")
    bench.write(args.out, columns=["peak_rss_mb", "first_step_s", "first_step_cpu_s", "index_s",
                                   "s_per_1000_steps"],
                config={"sizes": sizes, "steps": args.steps, "batch_size": args.batch_size,
                        "dim": args.dim, "captions_per_image": PER_IMAGE})
    print(f"RSS growth: {growth:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(cli(main))
