"""Generation throughput against an OpenAI-compatible server with 50 ms latency per call:
``--concurrency 32`` vs sequential (target: >= 20x).

    python benchmarks/generate_throughput.py [--latency 0.05] [--concurrency 32] [--out ...]

The server (negationclip.generate.fakeserver, answering like a cooperative model) runs in its
own process on 127.0.0.1 so it does not share the client's interpreter. Both runs are P1 with
all three roles on the ``openai`` backend over the same NegWorld captions and images; the
rate is model calls per second of wall time (items per second printed beside it).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import print_table, write_json  # noqa: E402

from negationclip.data.negworld import WorldConfig, build_world  # noqa: E402
from negationclip.generate import BackendOptions, run_p1  # noqa: E402


def _run(world: Path, out: Path, url: str, concurrency: int, limit: int) -> dict:
    o = BackendOptions("openai", model="bench", url=url, concurrency=concurrency, timeout=30)
    t = time.perf_counter()
    s = run_p1(world / "captions_train.json", out, images=world / "images", proposer=o,
               verifier=o, rewriter=o, limit=limit, progress=False)
    wall = time.perf_counter() - t
    calls = s.get("calls_proposer", 0) + s.get("calls_verifier", 0) + s.get("calls_rewriter", 0)
    return {"concurrency": concurrency, "items": s["items"], "records": s["records"],
            "calls": calls, "seconds": wall, "calls_per_s": calls / wall,
            "items_per_s": s["items"] / wall}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--latency", type=float, default=0.05, help="server latency per call (s)")
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--sequential-items", type=int, default=40, help="captions in the sequential run")
    ap.add_argument("--concurrent-items", type=int, default=1000, help="captions in the concurrent run")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "generate_throughput.json"))
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        images = max(20, args.concurrent_items // 3)
        build_world(tmp / "world", WorldConfig(images=images, seed=0), show_progress=False)
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        srv = subprocess.Popen([sys.executable, "-m", "negationclip.generate.fakeserver",
                                str(args.latency)], stdout=subprocess.PIPE, text=True, env=env)
        try:
            url = srv.stdout.readline().strip()
            rows = [_run(tmp / "world", tmp / "seq.jsonl", url, 1, args.sequential_items),
                    _run(tmp / "world", tmp / "conc.jsonl", url, args.concurrency,
                         args.concurrent_items)]
        finally:
            srv.terminate()
            srv.wait(timeout=10)
    ratio = rows[1]["calls_per_s"] / rows[0]["calls_per_s"]
    print_table(rows, ["concurrency", "items", "records", "calls", "seconds", "calls_per_s",
                       "items_per_s"])
    print(f"\nthroughput at --concurrency {args.concurrency} / sequential: {ratio:.1f}x "
          f"(latency {args.latency * 1000:.0f} ms; target >= 20x) -> "
          f"{'PASS' if ratio >= 20 else 'FAIL'}")
    write_json(args.out, {"benchmark": "generate_throughput", "latency_s": args.latency,
                          "rows": rows, "ratio": ratio, "target": 20, "pass": ratio >= 20})
    return 0


if __name__ == "__main__":
    sys.exit(main())
