"""How fast `negationclip explore` answers: embed a folder once, reopen it, then time queries.

Writes --images small synthetic PNGs (64 px, random blocks) into a temporary folder (once,
not timed) and uses two tiny random CLIPs (``tiny_clip_bundle``, the page's side-by-side
models). Three arms, run interleaved by ``_harness`` (median [min-max] of --runs runs, load
average, busy flag):
- ``embed``: ``Explorer.open`` through a fresh on-disk ``ImageEmbeddingCache`` (a new folder
  every run): hash, decode and embed every image for both models, the one-off cost;
- ``reopen``: ``Explorer.open`` through a cache that already holds them (what every later
  start of ``negationclip explore`` on the folder costs);
- ``query``: the page's search handler for --queries negated queries with the
  negation-removed row on (two text encodings per model, the ranking and the thumbnails of
  4 x top-k images per query); per run, the median and worst query latency.

Headline: the median query latency (ms; spread = min-max of the runs' medians), with the worst
query, the embedding and the reopening beside it; ratio ``embed / reopen`` (what the cache
saves). FLOPs are counted by ``FlopCounter`` hooks on both models (vision forwards in
``embed``, text forwards in ``query``), so each arm reports its fraction of the matmul peak;
with tiny models it is small by design: the time goes to PNG decoding, hashing and thumbnails,
which is what this measures. No warm-up round (each ``embed`` run is its own cold start);
a 16-image folder is opened once first to warm the code paths.

    python benchmarks/explore_speed.py                  # -> benchmarks/results/explore_speed.json
    python benchmarks/explore_speed.py --images 10000 --queries 20 --top-k 8 --runs 3
    python benchmarks/explore_speed.py --quick          # smoke test
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import Arm, Bench, FlopCounter, add_protocol_args, cli, fmt, parse_args, positive_int  # noqa: E402

QUERIES = ("a red star without a blue dot", "a moon with no circles", "a square but not a triangle",
           "there are no hearts in this picture of a cross", "a small green arrow, lacking any dots")


def make_images(folder: Path, n: int) -> None:
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        blocks = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        Image.fromarray(blocks).resize((64, 64), Image.Resampling.NEAREST).save(folder / f"{i:06d}.png")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=positive_int, default=10000, help="images in the folder (default 10000)")
    ap.add_argument("--queries", type=positive_int, default=20, help="queries per query-arm run (default 20)")
    ap.add_argument("--top-k", type=positive_int, default=8, help="images per model and row (default 8)")
    ap.add_argument("--out", default=None, help="JSON results (default benchmarks/results/explore_speed.json)")
    # 1 thread: a one-text query gains nothing from more, and on a busy machine extra threads
    # only wait on each other
    add_protocol_args(ap, threads=1)
    args = parse_args(ap, argv)
    if args.quick:
        args.images, args.queries, args.top_k, args.runs = 24, 3, 2, 1

    from negationclip.apps.explore import Explorer
    from negationclip.apps.explore.page import ExplorePage
    from negationclip.models import ImageEmbeddingCache, tiny_clip_bundle

    bench = Bench("explore_speed", threads=args.threads, runs=args.runs, warmup=0, quick=args.quick)
    models = {"base": tiny_clip_bundle(seed=0), "negclip": tiny_clip_bundle(seed=1)}
    counters = [FlopCounter(b.model) for b in models.values()]
    quiet = lambda m: None  # noqa: E731
    state: dict = {"opens": 0}

    def counted(fn):
        def run():
            for c in counters:
                c.reset()
            out = fn() or {}
            return {**out, "flops": sum(c.flops for c in counters)}
        return run

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        folder = tmp / "images"
        t = time.perf_counter()
        make_images(folder, args.images)
        write_s = time.perf_counter() - t
        make_images(tmp / "warm", 16)
        Explorer.open(models, tmp / "warm", cache=ImageEmbeddingCache(tmp / "warm-cache"), log=quiet)
        warm_cache = tmp / "cache"
        page = ExplorePage(Explorer.open(models, folder, cache=ImageEmbeddingCache(warm_cache), log=quiet),
                           top_k=args.top_k)
        page.search(QUERIES[0], args.top_k, True)

        def embed():
            state["opens"] += 1
            Explorer.open(models, folder, cache=ImageEmbeddingCache(tmp / f"cache-{state['opens']}"), log=quiet)

        def reopen():
            Explorer.open(models, folder, cache=ImageEmbeddingCache(warm_cache), log=quiet)

        def query():
            lat = []
            for i in range(args.queries):
                q = QUERIES[i % len(QUERIES)] + ("" if i < len(QUERIES) else f" {i}")
                t0 = time.perf_counter()
                html = page.search(q, args.top_k, True)
                lat.append(1000 * (time.perf_counter() - t0))
                if html.count('class="nc-hit"') != 4 * args.top_k:  # 2 models x 2 rows
                    raise RuntimeError(f"query {q!r}: expected {4 * args.top_k} hits on the page")
            return {"query_median_ms": statistics.median(lat), "query_max_ms": max(lat)}

        bench.measure([Arm("embed", counted(embed), f"open {args.images} images, fresh cache (2 models)"),
                       Arm("reopen", counted(reopen), "open again, cache filled"),
                       Arm("query", counted(query), f"{args.queries} queries, negation-removed row on")])
    for c in counters:
        c.close()
    bench.conclude()
    a = bench.arms
    r = bench.ratio("embedding once / reopening from the cache", "embed", "reopen")
    q, worst = a["query"]["query_median_ms"], a["query"]["query_max_ms"]
    bench.set_headline("median query latency", q["median"], q["min"], q["max"], "ms")
    bench.headline["beside"] = (
        f"worst query {fmt(worst['median'])} ms; embedding {args.images:,} images once (both models) "
        f"{fmt(a['embed']['seconds']['median'])} s, reopening from the cache "
        f"{fmt(a['reopen']['seconds']['median'])} s ({r['median_ratio']:.1f}x less)")
    bench.write(args.out, columns=["query_median_ms", "query_max_ms"],
                config={"images": args.images, "queries": args.queries, "top_k": args.top_k, "models": 2,
                        "image_side": 64},
                extra={"write_pngs_s": write_s})
    return 0


if __name__ == "__main__":
    sys.exit(cli(main))
