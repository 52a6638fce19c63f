"""Generation throughput against an OpenAI-compatible server with 50 ms latency per call:
``--concurrency 32`` vs sequential (target: >= 20x).

    python benchmarks/generate_throughput.py [--latency 0.05] [--concurrency 32] [--out ...]

The server (negationclip.generate.fakeserver, answering like a cooperative model) runs in its
own process on 127.0.0.1 so it does not share the client's interpreter. Both runs are P1 with
all three roles on the ``openai`` backend over the same NegWorld captions and images; the
rate is model calls per second of wall time (items per second printed beside it).

``_harness`` runs the two interleaved (median [min-max] of --runs runs, load average, busy
flag). The concurrent run is latency-bound only while the client and the server have CPU to
spare: on a busy machine their Python work becomes the bottleneck and the ratio drops. No
FLOPs (network calls), so no fraction of peak.

    python benchmarks/generate_throughput.py --runs 3
"""

from __future__ import annotations

import argparse
import itertools
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import Arm, Bench, add_protocol_args  # noqa: E402

from negationclip.data.negworld import WorldConfig, build_world  # noqa: E402
from negationclip.generate import BackendOptions, run_p1  # noqa: E402


RUN = itertools.count()


def _run(world: Path, out: Path, url: str, concurrency: int, limit: int) -> dict:
    out = out.with_name(f"{out.stem}_{next(RUN)}.jsonl")  # a fresh run each time (no resume)
    o = BackendOptions("openai", model="bench", url=url, concurrency=concurrency, timeout=30)
    t = time.perf_counter()
    s = run_p1(world / "captions_train.json", out, images=world / "images", proposer=o,
               verifier=o, rewriter=o, limit=limit, progress=False)
    wall = time.perf_counter() - t
    calls = s.get("calls_proposer", 0) + s.get("calls_verifier", 0) + s.get("calls_rewriter", 0)
    return {"concurrency": concurrency, "items": s["items"], "records": s["records"],
            "calls": calls, "calls_per_s": calls / wall, "items_per_s": s["items"] / wall}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--latency", type=float, default=0.05, help="server latency per call (s)")
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--sequential-items", type=int, default=40, help="captions in the sequential run")
    ap.add_argument("--concurrent-items", type=int, default=1000, help="captions in the concurrent run")
    ap.add_argument("--out", default=None, help="JSON results (default benchmarks/results/generate_throughput.json)")
    add_protocol_args(ap, threads=1)
    args = ap.parse_args(argv)
    if args.quick:
        args.sequential_items, args.concurrent_items, args.runs = 6, 60, 1
    bench = Bench("generate_throughput", threads=args.threads, runs=args.runs, quick=args.quick)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        images = max(20, args.concurrent_items // 3)
        build_world(tmp / "world", WorldConfig(images=images, seed=0), show_progress=False)
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        srv = subprocess.Popen([sys.executable, "-m", "negationclip.generate.fakeserver",
                                str(args.latency)], stdout=subprocess.PIPE, text=True, env=env)
        try:
            url = srv.stdout.readline().strip()
            bench.measure([
                Arm("sequential", lambda: _run(tmp / "world", tmp / "seq.jsonl", url, 1, args.sequential_items),
                    "--concurrency 1"),
                Arm("concurrent", lambda: _run(tmp / "world", tmp / "conc.jsonl", url, args.concurrency,
                                               args.concurrent_items), f"--concurrency {args.concurrency}"),
            ])
        finally:
            srv.terminate()
            srv.wait(timeout=10)
    bench.conclude()
    r = bench.ratio(f"throughput at --concurrency {args.concurrency} / sequential", "concurrent",
                    "sequential", key="calls_per_s", higher_is_better=True)
    bench.target(f"calls/s at --concurrency {args.concurrency} / sequential (latency "
                 f"{args.latency * 1000:.0f} ms)", r["median_ratio"], ">=", 20,
                 spread=(r["paired_min"], r["paired_max"]))
    bench.set_headline(f"generation throughput, --concurrency {args.concurrency} / sequential",
                       r["median_ratio"], r["paired_min"], r["paired_max"], "x")
    bench.write(args.out, columns=["items", "calls", "calls_per_s", "items_per_s"],
                config={"latency_s": args.latency, "concurrency": args.concurrency,
                        "sequential_items": args.sequential_items,
                        "concurrent_items": args.concurrent_items})
    return 0


if __name__ == "__main__":
    sys.exit(main())
