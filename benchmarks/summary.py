"""One table from every benchmark's JSON: benchmarks/results/summary.md and summary.json.

    python benchmarks/summary.py [--results benchmarks/results]    # `make bench` runs it last
    python benchmarks/summary.py --readme README.md                # and paste it into the README

With ``--readme`` it rewrites, in that file, the block between ``<!-- bench-summary:start -->``
and ``<!-- bench-summary:end -->`` (the table), each ``<!-- bench:NAME -->...<!-- /bench -->``
(benchmark NAME's headline as one phrase: figure, spread, protocol, roofline, load) and each
``<!-- bench-table:NAME -->...<!-- /bench-table -->`` (NAME's own ``readme_table``, e.g.
methods_negworld's metrics); markers of benchmarks with no result are left as they are.

Per benchmark: its headline figure (median, and the min-max of the per-run values or paired
ratios), every arm's median seconds with spread and achieved fraction of the matmul peak, its
targets and whether they were met, the peak itself, the load averages before and after and
the busy flag. The markdown is what the README's performance section quotes.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import RESULTS, fmt  # noqa: E402

START, END = "<!-- bench-summary:start -->", "<!-- bench-summary:end -->"
OFF_PROTOCOL: list[str] = []  # result files of scripts not on the protocol (listed, not tabled)
ORDER = ["eval_speed", "encode_text", "train_speed", "generate_calls", "generate_throughput",
         "generate_replicas", "train_scale",
         "negworld_render", "preprocess", "explore_speed", "methods_negworld", "gpu_eval"]
TABLE_START, TABLE_END = "<!-- bench-table:{} -->", "<!-- /bench-table -->"


def _spread(d: dict) -> str:
    return f"{fmt(d['median'])} [{fmt(d['min'])}-{fmt(d['max'])}]"


def collect(results: Path) -> list[dict]:
    found = {}
    for p in sorted(results.glob("*.json")):
        if p.name == "summary.json":
            continue
        try:
            d = json.loads(p.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise SystemExit(f"error: {p}: not readable JSON ({e})")
        if isinstance(d, dict) and d.get("protocol") and "arms" in d:
            found[d["benchmark"]] = d
        else:
            OFF_PROTOCOL.append(p.name)
    return [found[k] for k in sorted(found, key=lambda k: (ORDER.index(k) if k in ORDER else 99, k))]


def sizes(b: dict) -> str:
    """The run's numeric settings (records, captions, batch, ...), as its JSON config has them."""
    return ", ".join(f"{k.replace('_', ' ')} {fmt(v)}" for k, v in b.get("config", {}).items()
                     if isinstance(v, (int, float)) and not isinstance(v, bool))


def phrase(b: dict) -> str:
    """The headline as one README phrase: figure, spread, protocol, roofline, load."""
    h = b.get("headline") or {}
    if not h:
        return "(no headline)"
    unit = h["unit"] if h["unit"] == "x" else f" {h['unit']}"
    dev = b["protocol"].get("device", "cpu")
    parts = [h["beside"]] if h.get("beside") else []
    parts.append(f"median of {b['protocol']['runs']} interleaved runs, "
                 + (f"{b['protocol']['threads']} thread{'s' if b['protocol']['threads'] != 1 else ''}"
                    if dev == "cpu" else b["peak"]["before"].get("gpu", dev)))
    if sizes(b):
        parts.append(sizes(b))
    fr = next((r["flops_ratio"] for r in b["ratios"] if "flops_ratio" in r), None)
    if fr:
        parts.append(f"FLOP ratio {fr:.2f}x")
    fracs = [f"{k} {100 * a['fraction_of_peak']:.0f}%" for k, a in b["arms"].items() if a.get("fraction_of_peak")]
    if fracs:
        parts.append(f"of the {b['peak']['gflops']:.0f} GFLOP/s matmul peak: {', '.join(fracs)}")
    ld = b["load"]
    parts.append(f"load average {ld['before'][0] if ld['before'] else '?'} -> {ld['after'][0] if ld['after'] else '?'}"
                 + (", busy machine" if ld["busy"] else ", quiet"))
    return f"**{fmt(h['value'])}{unit}** [{fmt(h['min'])}-{fmt(h['max'])}] ({'; '.join(parts)})"


def fill_readme(text: str, md: str, benches: list[dict]) -> str:
    """Replace the table block, every ``<!-- bench:NAME -->...<!-- /bench -->`` phrase and every
    ``<!-- bench-table:NAME -->...<!-- /bench-table -->`` block (a benchmark's ``readme_table``)."""
    if START in text and END in text:
        head, rest = text.split(START, 1)
        text = head + START + "\n" + md + rest[rest.index(END):]
    by_name = {b["benchmark"]: b for b in benches}

    def table(m: re.Match) -> str:
        b = by_name.get(m.group(1))
        if b is None or not b.get("readme_table"):
            return m.group(0)
        return f"{TABLE_START.format(m.group(1))}\n{b['readme_table'].strip()}\n{TABLE_END}"

    text = re.sub(r"<!-- bench-table:(\w+) -->.*?<!-- /bench-table -->", table, text, flags=re.S)

    def sub(m: re.Match) -> str:
        b = by_name.get(m.group(1))
        return m.group(0) if b is None else f"<!-- bench:{m.group(1)} -->{phrase(b)}<!-- /bench -->"

    return re.sub(r"<!-- bench:(\w+) -->.*?<!-- /bench -->", sub, text, flags=re.S)


def markdown(benches: list[dict]) -> str:
    lines = ["| benchmark | headline: median [min-max] | FLOP ratio | of matmul peak | targets | peak | load before -> after | busy |",
             "|---|---|---|---|---|---|---|---|"]
    for b in benches:
        h = b.get("headline") or {}
        head = (f"{h['what']}: **{fmt(h['value'])}{h['unit'] if h['unit'] == 'x' else ' ' + h['unit']}** "
                f"[{fmt(h['min'])}-{fmt(h['max'])}]") if h else ""
        tg = "; ".join(f"{t['what']} {t['op']} {fmt(t['goal'])}: {'n/a' if t['value'] is None else fmt(t['value'])} "
                       f"({'skipped' if t['met'] is None else 'met' if t['met'] else 'NOT met'})"
                       for t in b["targets"]) or "-"
        ld = b["load"]
        fr = next((r["flops_ratio"] for r in b["ratios"] if "flops_ratio" in r), None)
        fracs = ", ".join(f"{k} {100 * a['fraction_of_peak']:.0f}%" for k, a in b["arms"].items()
                          if a.get("fraction_of_peak")) or "-"
        lines.append(f"| {b['benchmark']} ({b['protocol']['runs']} runs, {b['protocol']['threads']} thr.; {sizes(b)}) | {head} | "
                     f"{f'{fr:.2f}x' if fr else '-'} | {fracs} | "
                     f"{tg} | {b['peak']['gflops']:.0f} GFLOP/s | {ld['before'][0] if ld['before'] else '?'} -> "
                     f"{ld['after'][0] if ld['after'] else '?'} | {'**busy**' if ld['busy'] else 'quiet'} |")
    lines += ["", "| benchmark | arm | what | seconds: median [min-max] | GFLOP/s | of peak |",
              "|---|---|---|---|---|---|"]
    for b in benches:
        for name, a in b["arms"].items():
            key = a.get("seconds_key", "seconds")
            sec = a.get(key)
            unit = " ms/step" if key.startswith("ms") else ""
            frac = a.get("fraction_of_peak")
            lines.append(f"| {b['benchmark']} | {name} | {a.get('label', '')} | "
                         f"{_spread(sec) + unit if isinstance(sec, dict) else ''} | "
                         f"{fmt(a['gflops_per_s']) if a.get('gflops_per_s') else '-'} | "
                         f"{f'{100 * frac:.0f}%' if frac else '-'} |")
    notes = [f"- {b['benchmark']}: {b['mcq']['note']}" for b in benches if (b.get("mcq") or {}).get("note")]
    if any(b.get("quick") for b in benches):
        notes.append("- some results come from `--quick` smoke runs: their figures mean nothing")
    if OFF_PROTOCOL:
        notes.append(f"- not on the protocol (no interleaved runs, spread or load flag), left out: "
                     f"{', '.join(sorted(set(OFF_PROTOCOL)))}")
    busy = [b["benchmark"] for b in benches if b["load"]["busy"]]
    notes.append("- FLOP ratio = the headline ratio's arms' FLOPs (counted from the shapes each forward "
                 "runs): on a compute-bound CPU the speed-up cannot exceed it by more than the arms' "
                 "efficiency difference (of matmul peak)")
    notes.append(f"- busy = a 1-minute load average sampled during the run exceeded max(threads, 2) + 0.5 "
                 f"(other work on the machine): {', '.join(busy) if busy else 'none'}")
    machine = benches[0]["machine"] if benches else {}
    when = sorted(b["machine"].get("time_utc", "") for b in benches)
    return ("Generated by `python benchmarks/summary.py` from benchmarks/results/*.json "
            f"(runs finished {when[0][:16].replace('T', ' ')}"
            f"{' to ' + when[-1][11:16] if when[-1][:10] == when[0][:10] else ' to ' + when[-1][:16]} UTC; "
            f"{machine.get('processor', '?')}, {machine.get('cpu_count', '?')} cores, torch "
            f"{machine.get('torch', '?')}; "
            + ("CPU only, GPU figures not measured" if all(b["protocol"].get("device", "cpu") == "cpu" for b in benches)
               else "GPU rows name their device") + "). Each arm ran "
            "its script's warm-up rounds untimed (`protocol.warmup` in its JSON: 1, or 0 where every run "
            "must start fresh or warms itself up), then interleaved with the others; spread = min-max over "
            "runs (of the per-run paired ratios for ratios).\n\n" + "\n".join(lines) + "\n\n" + "\n".join(notes) + "\n")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", default=str(RESULTS), help="folder of the benchmarks' JSON files")
    ap.add_argument("--readme", default=None,
                    help=f"also put the table into this file between the lines {START} and {END}, "
                         "each benchmark's headline where the file has <!-- bench:NAME -->...<!-- /bench -->, "
                         "and a benchmark's own table where it has <!-- bench-table:NAME -->...<!-- /bench-table -->")
    args = ap.parse_args(argv)
    root = Path(args.results)
    benches = collect(root)
    if not benches:
        print(f"error: no benchmark results in {root} (run the benchmarks first: make bench)", file=sys.stderr)
        return 2
    md = markdown(benches)
    summary = {"benchmarks": [{"benchmark": b["benchmark"], "headline": b.get("headline"),
                               "targets": b["targets"], "ratios": b["ratios"], "peak_gflops": b["peak"]["gflops"],
                               "load": b["load"], "protocol": b["protocol"], "quick": b.get("quick", False),
                               "arms": {k: {"seconds": a.get(a.get("seconds_key", "seconds")),
                                            "seconds_key": a.get("seconds_key", "seconds"),
                                            "fraction_of_peak": a.get("fraction_of_peak")}
                                        for k, a in b["arms"].items()}} for b in benches]}
    for name, text in (("summary.md", md), ("summary.json", json.dumps(summary, indent=2) + "\n")):
        tmp = root / f".{name}.tmp"
        tmp.write_text(text)
        os.replace(tmp, root / name)
    print(md)
    print(f"wrote {root / 'summary.md'} and {root / 'summary.json'}")
    if args.readme:
        path = Path(args.readme)
        text = path.read_text()
        if START not in text or END not in text:
            print(f"error: {path}: no {START} ... {END} block to replace", file=sys.stderr)
            return 2
        path.write_text(fill_readme(text, md, benches))
        print(f"updated {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
