"""Model calls per accepted P1 caption: our flow vs the reference flow (target <= 0.7x).

    python benchmarks/generate_calls.py [--images 300] [--out benchmarks/results/generate_calls.json]

Both flows run the same roles (the offline ``rules`` proposer, verifier and rewriter, where
each role invocation stands for one model call) on the same NegWorld export:
- reference: the released scripts' flow, for every caption one proposal, one verification
  and one rewrite, no cache;
- ours, ``--propose-per caption``: the paper's one-caption proposal prompt, verification
  cached per (image, object), rewrites only for verified-absent objects, objects named by
  another caption of the same image dropped before verification;
- ours, default (``--propose-per image``): one proposal call for the captions of an image.

Call counts are deterministic (the spread is zero); the wall seconds of each flow are
measured with ``_harness`` (interleaved runs, median [min-max], load average, busy flag).
No FLOPs: these are model calls, not tensor work, so no fraction of peak is reported.

    python benchmarks/generate_calls.py --images 300 --runs 3
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import itertools
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import Arm, Bench, add_protocol_args, cli, nonneg_int, parse_args, positive_int  # noqa: E402

from negationclip.data.coco import load_coco_captions, load_coco_instances  # noqa: E402
from negationclip.data.negworld import WorldConfig, build_world, load_scenes  # noqa: E402
from negationclip.generate import read_records, run_p1, run_stats  # noqa: E402
from negationclip.generate.backends.base import (ProposeTask, RewriteTask, VerifyTask,  # noqa: E402
                                                 stable_seed)
from negationclip.generate.factory import BackendOptions, RoleFactory  # noqa: E402
from negationclip.generate.parse import check_negated  # noqa: E402


def reference_flow(captions_path, instances_path) -> dict:
    caps = load_coco_captions(captions_path)
    inst = load_coco_instances(instances_path)
    f = RoleFactory()
    rules = BackendOptions("rules")
    prop = f.proposer(rules, instances=inst)
    ver, rew = f.verifier(rules, instances=inst), f.rewriter(rules)
    calls = accepted = 0
    records = []
    for c in caps.captions:
        wid = f"P1:{c.id}"
        p = prop.propose([ProposeTask(c.caption, 1, stable_seed(0, wid, "propose"))])[0]
        calls += 1
        obj = p.objects[0] if p.objects else ""
        v = ver.verify([VerifyTask(c.image_id, None, obj)])[0]
        calls += 1
        r = rew.rewrite([RewriteTask(c.caption, obj=obj, seed=stable_seed(0, wid, "rewrite"))])[0]
        calls += 1
        if v.verdict == "absent" and r.negated and not check_negated(c.caption, r.negated, obj):
            accepted += 1
            records.append((c.image_id, obj))
    return {"captions": len(caps.captions), "accepted": accepted, "calls": calls,
            "calls_per_accepted": calls / max(1, accepted), "records": records}


RUN = itertools.count()


def ours_flow(capf: Path, instf: Path, out: Path, per: str, seed: int, present: dict) -> dict:
    out = out.with_name(f"{out.stem}_{next(RUN)}.jsonl")  # a fresh run each time (no resume)
    run_p1(capf, out, instances=instf, propose_per=per, progress=False, seed=seed)
    s = run_stats([out])
    recs = read_records(out)
    return {"accepted": s["outcomes"].get("accepted", 0), "calls": s["calls_total"],
            "calls_per_accepted": s["calls_per_accepted"],
            "wrong": sum(r.object in present[r.image_id] for r in recs)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=positive_int, default=300, help="NegWorld images to build")
    ap.add_argument("--seed", type=nonneg_int, default=0)
    ap.add_argument("--out", default=None, help="JSON results (default benchmarks/results/generate_calls.json)")
    add_protocol_args(ap, threads=1)
    args = parse_args(ap, argv)
    if args.quick:
        args.images, args.runs = 20, 1
    bench = Bench("generate_calls", threads=args.threads, runs=args.runs, quick=args.quick)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        build_world(tmp / "world", WorldConfig(images=args.images, seed=args.seed),
                    show_progress=False)
        capf, instf = tmp / "world" / "captions_train.json", tmp / "world" / "instances_train.json"
        scenes = load_scenes(tmp / "world" / "scenes.json")
        present = {s.id: {o.category for o in s.objects} for s in scenes.values()}

        def ref_run() -> dict:
            ref = reference_flow(capf, instf)
            return {"captions": ref["captions"], "accepted": ref["accepted"], "calls": ref["calls"],
                    "calls_per_accepted": ref["calls_per_accepted"],
                    "wrong": sum(o in present[i] for i, o in ref["records"])}

        bench.measure([
            Arm("reference", ref_run, "propose+verify+rewrite each caption, no cache"),
            Arm("ours-caption", lambda: ours_flow(capf, instf, tmp / "p1_caption.jsonl", "caption",
                                                  args.seed, present), "ours --propose-per caption"),
            Arm("ours-image", lambda: ours_flow(capf, instf, tmp / "p1_image.jsonl", "image",
                                                args.seed, present), "ours --propose-per image (default)"),
        ])
    bench.conclude()
    for name in ("ours-caption", "ours-image"):
        bench.ratio(f"calls per accepted caption, {name} / reference", name, "reference",
                    key="calls_per_accepted")
    r = bench.ratios[-1]
    bench.target("model calls per accepted P1 caption, ours (default) / reference", r["median_ratio"],
                 "<=", 0.7, note="deterministic count")
    bench.set_headline("model calls per accepted caption, ours / reference", r["median_ratio"],
                       r["paired_min"], r["paired_max"], "x")
    bench.write(args.out, columns=["accepted", "calls", "calls_per_accepted", "wrong"],
                config={"images": args.images, "seed": args.seed, "backend": "rules"})
    return 0


if __name__ == "__main__":
    sys.exit(cli(main))
