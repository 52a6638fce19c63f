"""How fast `negationclip explore` answers: embed a folder once, then time queries.

    python benchmarks/explore_speed.py [--images 10000] [--queries 20] [--top-k 8] [--threads 2]

Writes N small synthetic PNGs (64 px, random blocks) into a temporary folder, opens an
``Explorer`` with two tiny random CLIPs (``tiny_clip_bundle``) through a fresh
``ImageEmbeddingCache`` (the one-off cost, then a reopen that reads the cache back), and times
the page's search handler for negated queries with the negation-removed row on (two text
encodings, the ranking and the thumbnails of 4 x top-k images per query). Prints the embedding
time and the median / worst query latency.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import print_table, write_json  # noqa: E402

QUERIES = ("a red star without a blue dot", "a moon with no circles", "a square but not a triangle",
           "there are no hearts in this picture of a cross", "a small green arrow, lacking any dots")


def make_images(folder: Path, n: int) -> None:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(n):
        blocks = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        Image.fromarray(blocks).resize((64, 64), Image.Resampling.NEAREST).save(folder / f"{i:06d}.png")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=10000)
    ap.add_argument("--queries", type=int, default=20)
    ap.add_argument("--top-k", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (1: a one-text query gains nothing from more, and on a busy "
                         "machine extra threads only wait on each other)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "explore_speed.json"))
    args = ap.parse_args(argv)

    import torch

    from negationclip.apps.explore import Explorer
    from negationclip.apps.explore.page import ExplorePage
    from negationclip.models import ImageEmbeddingCache, tiny_clip_bundle

    torch.set_num_threads(args.threads)
    models = {"base": tiny_clip_bundle(seed=0), "negclip": tiny_clip_bundle(seed=1)}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "images"
        folder.mkdir()
        t = time.perf_counter()
        make_images(folder, args.images)
        write_s = time.perf_counter() - t
        cache = Path(tmp) / "cache"
        t = time.perf_counter()
        ex = Explorer.open(models, folder, cache=ImageEmbeddingCache(cache), log=lambda m: None)
        embed_s = time.perf_counter() - t
        t = time.perf_counter()
        ex = Explorer.open(models, folder, cache=ImageEmbeddingCache(cache), log=lambda m: None)
        reopen_s = time.perf_counter() - t
        page = ExplorePage(ex, top_k=args.top_k)
        page.search(QUERIES[0], args.top_k, True)  # warm-up
        lat = []
        for i in range(args.queries):
            q = QUERIES[i % len(QUERIES)] + ("" if i < len(QUERIES) else f" {i}")
            t = time.perf_counter()
            html = page.search(q, args.top_k, True)
            lat.append(time.perf_counter() - t)
            assert html.count('class="nc-hit"') == 4 * args.top_k, html[:500]
    row = {"images": args.images, "models": 2, "embed_once_s": embed_s, "reopen_from_cache_s": reopen_s,
           "query_median_ms": 1000 * statistics.median(lat), "query_max_ms": 1000 * max(lat),
           "write_pngs_s": write_s}
    print_table([row], list(row))
    write_json(args.out, {"benchmark": "explore_speed", "args": vars(args), "result": row})
    return 0


if __name__ == "__main__":
    sys.exit(main())
