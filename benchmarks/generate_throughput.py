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

Replica arms (``--replicas 4``, 0 to skip; results in ``generate_replicas.json``): the same P1
run against 1 server, against 4 servers (one ``--ROLE-url`` each, ``--concurrency 32``
per server), each server its own process, and against 4 servers of which one is killed
(SIGKILL) half-way through the run (at half of the first 1-server run's wall time divided
by 4), so its in-flight and later work fails over to the other three. Targets: 4-server
throughput >= 3x the 1-server one, and every run's output holds exactly the 1-server run's record ids (none lost, none doubled).
These arms use ``--replica-latency`` (default 0.5 s, an LLM-sized call) so that the client's
own Python work at 128 requests in flight stays below the latency bound on a small machine.
"""

from __future__ import annotations

import argparse
import itertools
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import (Arm, Bench, add_protocol_args, cli, nonneg_float, nonneg_int, parse_args,  # noqa: E402
                      positive_int)

from negationclip.data.negworld import WorldConfig, build_world  # noqa: E402
from negationclip.generate import BackendOptions, run_p1  # noqa: E402


RUN = itertools.count()


def _serve(latency: float) -> tuple[subprocess.Popen, str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    srv = subprocess.Popen([sys.executable, "-m", "negationclip.generate.fakeserver", str(latency)],
                           stdout=subprocess.PIPE, text=True, env=env)
    return srv, srv.stdout.readline().strip()


def _stop(srv: subprocess.Popen) -> None:
    if srv.poll() is None:
        srv.terminate()
    srv.wait(timeout=10)


class Replicas:
    """The replica arms: ``one()`` = 1 server, ``four()`` = N servers with one killed mid-run;
    every run's record ids are checked against the first 1-server run's."""

    def __init__(self, world: Path, tmp: Path, n: int, latency: float, concurrency: int, items: int):
        self.world, self.tmp, self.n, self.latency = world, tmp, n, latency
        self.concurrency, self.items = concurrency, items
        self.reference: list[str] | None = None
        self.reference_wall: float | None = None
        self.checks: list[dict] = []

    def _ids(self, path: Path) -> list[str]:
        from negationclip.generate import read_records
        return [r.id for r in read_records(path)]

    def _go(self, servers: int, kill: bool) -> dict:
        procs = [_serve(self.latency) for _ in range(servers)]
        out = self.tmp / f"replicas{servers}_{next(RUN)}.jsonl"
        killer, killed = None, threading.Event()
        if kill and self.reference_wall:
            victim = procs[1][0]
            # records reach the file a chunk at a time, so time decides "mid-run": half of
            # what this run would take if it scaled perfectly (the 1-server wall / servers)
            at = self.reference_wall / servers / 2

            def kill_mid_run():
                if not killed.wait(at):
                    victim.kill()
                    killed.set()
            killer = threading.Thread(target=kill_mid_run, daemon=True)
            killer.start()
        try:
            r = _run(self.world, out, [u for _, u in procs], self.concurrency, self.items,
                     fresh=False)
        finally:
            was_killed = killed.is_set()
            killed.set()
            if killer:
                killer.join(5)
            for p, _ in procs:
                _stop(p)
        ids = self._ids(out)
        if self.reference is None:
            self.reference = ids
            self.reference_wall = r["calls"] / r["calls_per_s"]
        lost = len(set(self.reference) - set(ids))
        doubled = len(ids) - len(set(ids))
        extra = len(set(ids) - set(self.reference))
        self.checks.append({"servers": servers, "kill": kill, "killed": was_killed, "records": len(ids),
                            "lost": lost, "doubled": doubled, "unexpected": extra})
        return {**r, "servers": servers, "killed": int(was_killed), "lost": lost,
                "doubled": doubled}

    def one(self) -> dict:
        return self._go(1, kill=False)

    def many(self) -> dict:
        return self._go(self.n, kill=False)

    def many_killed(self) -> dict:
        return self._go(self.n, kill=True)


def _run(world: Path, out: Path, url, concurrency: int, limit: int, fresh: bool = True) -> dict:
    if fresh:
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
    ap.add_argument("--latency", type=nonneg_float, default=0.05, help="server latency per call (s)")
    ap.add_argument("--concurrency", type=positive_int, default=32)
    ap.add_argument("--sequential-items", type=positive_int, default=40, help="captions in the sequential run")
    ap.add_argument("--concurrent-items", type=positive_int, default=1000, help="captions in the concurrent run")
    ap.add_argument("--out", default=None, help="JSON results (default benchmarks/results/generate_throughput.json)")
    ap.add_argument("--replicas", type=nonneg_int, default=4,
                    help="servers in the replica arms (0: skip them)")
    ap.add_argument("--replica-latency", type=nonneg_float, default=0.5,
                    help="server latency per call in the replica arms (s)")
    ap.add_argument("--replica-items", type=positive_int, default=600, help="captions per replica-arm run")
    ap.add_argument("--replicas-out", default=None,
                    help="JSON results of the replica arms (default benchmarks/results/generate_replicas.json)")
    ap.add_argument("--only-replicas", action="store_true", help="run only the replica arms")
    add_protocol_args(ap, threads=1)
    args = parse_args(ap, argv)
    if args.quick:
        args.sequential_items, args.concurrent_items, args.runs = 6, 60, 1
        args.replica_items, args.replica_latency = 60, 0.1
    if not args.only_replicas:
        _concurrency_bench(args)
    if args.replicas > 1:
        _replica_bench(args)
    return 0


def _replica_bench(args) -> None:
    bench = Bench("generate_replicas", threads=args.threads, runs=args.runs, quick=args.quick)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        build_world(tmp / "world", WorldConfig(images=max(20, args.replica_items // 3), seed=0),
                    show_progress=False)
        rep = Replicas(tmp / "world", tmp, args.replicas, args.replica_latency, args.concurrency,
                       args.replica_items)
        bench.measure([
            Arm("one_server", rep.one, f"1 server, --concurrency {args.concurrency}"),
            Arm("replicas", rep.many, f"{args.replicas} servers, --concurrency {args.concurrency} each"),
            Arm("replicas_killed", rep.many_killed, f"{args.replicas} servers, one killed mid-run"),
        ])
    bench.conclude()
    r = bench.ratio(f"throughput with {args.replicas} servers / 1 server", "replicas",
                    "one_server", key="calls_per_s", higher_is_better=True)
    bench.ratio(f"throughput with {args.replicas} servers, one killed mid-run / 1 server",
                "replicas_killed", "one_server", key="calls_per_s", higher_is_better=True)
    bench.target(f"calls/s with {args.replicas} servers / 1 server (latency "
                 f"{args.replica_latency * 1000:.0f} ms, --concurrency {args.concurrency} each)",
                 r["median_ratio"], ">=", 3, spread=(r["paired_min"], r["paired_max"]))
    killed = [c for c in rep.checks if c["servers"] > 1 and c["kill"]]
    bad = sum(c["lost"] + c["doubled"] + c["unexpected"] for c in rep.checks)
    bench.target("records lost, doubled or unexpected vs the 1-server run (all runs)", bad,
                 "<=", 0, note=f"{sum(c['killed'] for c in killed)}/{len(killed)} multi-server runs "
                 "had a server killed")
    bench.set_headline(f"generation throughput, {args.replicas} servers / 1 server",
                       r["median_ratio"], r["paired_min"], r["paired_max"], "x")
    bench.write(args.replicas_out, columns=["items", "records", "calls", "calls_per_s", "killed",
                                            "lost", "doubled"],
                config={"latency_s": args.replica_latency, "concurrency": args.concurrency,
                        "servers": args.replicas, "items": args.replica_items},
                extra={"record_checks": rep.checks})


def _concurrency_bench(args) -> None:
    bench = Bench("generate_throughput", threads=args.threads, runs=args.runs, quick=args.quick)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        images = max(20, args.concurrent_items // 3)
        build_world(tmp / "world", WorldConfig(images=images, seed=0), show_progress=False)
        srv, url = _serve(args.latency)
        try:
            bench.measure([
                Arm("sequential", lambda: _run(tmp / "world", tmp / "seq.jsonl", url, 1, args.sequential_items),
                    "--concurrency 1"),
                Arm("concurrent", lambda: _run(tmp / "world", tmp / "conc.jsonl", url, args.concurrency,
                                               args.concurrent_items), f"--concurrency {args.concurrency}"),
            ])
        finally:
            _stop(srv)
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


if __name__ == "__main__":
    sys.exit(cli(main))
