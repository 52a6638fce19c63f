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
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import print_table, write_json  # noqa: E402

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


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=300, help="NegWorld images to build")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "generate_calls.json"))
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        build_world(tmp / "world", WorldConfig(images=args.images, seed=args.seed),
                    show_progress=False)
        capf, instf = tmp / "world" / "captions_train.json", tmp / "world" / "instances_train.json"
        scenes = load_scenes(tmp / "world" / "scenes.json")
        present = {s.id: {o.category for o in s.objects} for s in scenes.values()}
        rows = []
        t = time.perf_counter()
        ref = reference_flow(capf, instf)
        rows.append({"flow": "reference (propose+verify+rewrite each caption, no cache)",
                     "captions": ref["captions"], "accepted": ref["accepted"],
                     "calls": ref["calls"], "calls_per_accepted": ref["calls_per_accepted"],
                     "wrong": sum(o in present[i] for i, o in ref["records"]),
                     "seconds": time.perf_counter() - t})
        for per in ("caption", "image"):
            out = tmp / f"p1_{per}.jsonl"
            t = time.perf_counter()
            run_p1(capf, out, instances=instf, propose_per=per, progress=False, seed=args.seed)
            s = run_stats([out])
            recs = read_records(out)
            rows.append({"flow": f"ours --propose-per {per}", "captions": ref["captions"],
                         "accepted": s["outcomes"].get("accepted", 0), "calls": s["calls_total"],
                         "calls_per_accepted": s["calls_per_accepted"],
                         "wrong": sum(r.object in present[r.image_id] for r in recs),
                         "seconds": time.perf_counter() - t})
    for r in rows:
        r["ratio_vs_reference"] = r["calls_per_accepted"] / rows[0]["calls_per_accepted"]
    print_table(rows, ["flow", "captions", "accepted", "calls", "calls_per_accepted",
                       "ratio_vs_reference", "wrong", "seconds"])
    ratio = rows[-1]["ratio_vs_reference"]
    print(f"\nmodel calls per accepted P1 caption, ours (default) / reference: {ratio:.3f}x "
          f"(target <= 0.7x) -> {'PASS' if ratio <= 0.7 else 'FAIL'}")
    write_json(args.out, {"benchmark": "generate_calls", "images": args.images, "rows": rows,
                          "ratio": ratio, "target": 0.7, "pass": ratio <= 0.7})
    return 0


if __name__ == "__main__":
    sys.exit(main())
