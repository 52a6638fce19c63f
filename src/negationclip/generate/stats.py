"""Counts, acceptance rates and model calls per accepted caption of a generation run (from
its ledger), merging shards, and a PNG chart of where the candidates went."""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

from ..utils import NegationClipError, atomic_write_text
from ..utils.paths import OutputLock
from .records import OUTCOMES, ROLES, ledger_path, read_ledger, read_records


def run_stats(outputs: list[str | os.PathLike]) -> dict:
    """Statistics of one or more generation outputs (shards of a run, or several runs)."""
    if not outputs:
        raise NegationClipError("stats: give at least one output JSONL")
    per_pipeline: Counter = Counter()
    outcomes: Counter = Counter()
    calls: Counter = Counter()
    items = Counter()
    missing: dict[str, str] = {}
    affirmed = 0
    affirmed_rejected = 0
    records = 0
    no_ledger = []
    for out in outputs:
        recs = read_records(out)
        records += len(recs)
        for r in recs:
            per_pipeline[r.pipeline] += 1
            affirmed += r.affirmed is not None
        header, led = read_ledger(out)
        if header is None and not led:
            no_ledger.append(str(out))
        for e in led.values():
            items[e.get("status", "done")] += 1
            outcomes.update(e.get("outcomes", {}))
            calls.update(e.get("calls", {}))
            affirmed_rejected += e.get("affirmed_rejected", 0)
            if e.get("missing_image"):
                missing[e["work_id"]] = e["missing_image"]
    total_calls = sum(calls.values())
    candidates = sum(outcomes.values())
    accepted = outcomes.get("accepted", 0)
    return {
        "outputs": [str(o) for o in outputs],
        "records": records,
        "records_per_pipeline": dict(per_pipeline),
        "records_with_affirmed": affirmed,
        "affirmed_rejected": affirmed_rejected,
        "items": dict(items),
        "candidates": candidates,
        "outcomes": {k: outcomes.get(k, 0) for k in OUTCOMES if outcomes.get(k, 0)},
        "acceptance_rate": accepted / candidates if candidates else None,
        "calls": {r: calls.get(r, 0) for r in ROLES},
        "calls_total": total_calls,
        "calls_per_accepted": total_calls / accepted if accepted else None,
        "missing_images": sorted(set(missing.values())),
        "outputs_without_ledger": no_ledger,
    }


def format_stats(s: dict) -> str:
    lines = [f"records: {s['records']}  " + "  ".join(f"{k}={v}" for k, v in
                                                       sorted(s["records_per_pipeline"].items())),
             f"with affirmed twin: {s['records_with_affirmed']} "
             f"(affirmed rewrites rejected: {s['affirmed_rejected']})",
             "work items: " + ", ".join(f"{k} {v}" for k, v in sorted(s["items"].items())),
             f"candidates: {s['candidates']}"]
    for k, v in s["outcomes"].items():
        share = v / s["candidates"] if s["candidates"] else 0
        lines.append(f"  {k:<22} {v:>8}  {share:6.1%}")
    rate = s["acceptance_rate"]
    lines.append(f"acceptance rate: {rate:.1%}" if rate is not None else "acceptance rate: n/a")
    lines.append("model calls: " + ", ".join(f"{k} {v}" for k, v in s["calls"].items())
                 + f" (total {s['calls_total']})")
    cpa = s["calls_per_accepted"]
    lines.append(f"model calls per accepted caption: {cpa:.2f}" if cpa is not None else
                 "model calls per accepted caption: n/a")
    if s["missing_images"]:
        lines.append(f"missing or unreadable images ({len(s['missing_images'])}):")
        lines.extend(f"  {m}" for m in s["missing_images"][:50])
        if len(s["missing_images"]) > 50:
            lines.append(f"  ... and {len(s['missing_images']) - 50} more (see --json)")
    if s["outputs_without_ledger"]:
        lines.append("no ledger beside (counts of records only): "
                     + ", ".join(s["outputs_without_ledger"]))
    return "\n".join(lines)


def plot_stats(s: dict, path: str | os.PathLike) -> None:
    """Two bar charts: candidate outcomes and model calls per role."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    names = list(s["outcomes"]) or ["none"]
    vals = [s["outcomes"].get(n, 0) for n in names]
    colors = ["#2a9d8f" if n == "accepted" else "#e76f51" for n in names]
    a.barh(names[::-1], vals[::-1], color=colors[::-1])
    a.set_title(f"candidates ({s['candidates']}), accepted "
                + (f"{s['acceptance_rate']:.0%}" if s["acceptance_rate"] is not None else "n/a"))
    a.set_xlabel("count")
    roles = list(s["calls"])
    b.bar(roles, [s["calls"][r] for r in roles], color="#264653")
    cpa = s["calls_per_accepted"]
    b.set_title("model calls per role" + (f" ({cpa:.2f} per accepted caption)" if cpa else ""))
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def merge_outputs(inputs: list[str | os.PathLike], out: str | os.PathLike) -> dict:
    """Join shard outputs (records and ledgers), dropping duplicate ids; inputs keep their order."""
    if not inputs:
        raise NegationClipError("merge: give at least one input JSONL")
    out = Path(out)
    if out.resolve() in {Path(p).resolve() for p in inputs}:
        raise NegationClipError(f"{out}: the merged output cannot be one of the inputs")
    with OutputLock(out):
        return _merge(inputs, out)


def _merge(inputs: list[str | os.PathLike], out: Path) -> dict:
    seen: set[str] = set()
    kept: list[dict] = []
    dup = 0
    entries: dict[str, dict] = {}
    headers = []
    for p in inputs:
        for r in read_records(p):
            if r.id in seen:
                dup += 1
                continue
            seen.add(r.id)
            kept.append(r.to_json())
        header, led = read_ledger(p)
        if header:
            headers.append(header)
        for wid, e in led.items():
            if wid not in entries or entries[wid].get("status") != "done":
                entries[wid] = e
    atomic_write_text(out, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in kept))
    led_out = ledger_path(out)
    led_out.unlink(missing_ok=True)
    if headers or entries:
        merged_header = dict(headers[0]) if headers else {"type": "run"}
        merged_header["merged_from"] = [str(p) for p in inputs]
        lines = [merged_header] + list(entries.values())
        atomic_write_text(led_out, "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in lines))
    return {"records": len(kept), "duplicates_dropped": dup, "inputs": len(inputs), "out": str(out)}
