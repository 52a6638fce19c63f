"""Every training method, same base, same data, same steps, on a small NegWorld: does each run,
how long does it take, and where does a short run take balanced negation?

A NegWorld the shipped base model never saw (seed 1000 + ..., like ``demo --quick``), P1 records
from its train split with the offline rules backends, scene-graph negative images
(``negative_image``) for them (all built once, not timed), then one arm per method: ``finetune``
from the shipped base for --steps steps of --batch, then the demo's six test-split metrics.
The lr is one value for all methods (the released ones, 1e-8 .. 5e-6, are for pretrained
ViT-B CLIPs; this tiny scratch model needs the demo's 1e-3); everything else is each method's
released recipe. The ``base`` arm measures the untrained base (evaluation only).

``_harness`` runs the arms interleaved (--runs rounds, no warm-up round: the base model is
measured once before, which fills the image-embedding cache every arm shares). Per arm:
wall seconds (training + evaluation), ``train_seconds`` (``finetune`` alone) and each metric
as median [min-max] over runs: training is seeded, so a spread above 0 in a metric means the
run is not reproducible. Ratio: each method's training seconds / negationclip's. FLOPs
(``FlopCounter(auto_backward=True)`` on the model being trained): every tower forward from
its shapes, a forward with gradients on a tower with trainable parameters charged 3x (its
backward), cached-embedding and evaluation forwards 1x; the fraction of peak is over
``train_seconds``. The headline is negationclip's balanced-negation accuracy; the whole table
(``readme_table`` in the JSON) goes to the README's ``<!-- bench-table:methods_negworld -->``.

Not in ``make bench`` (minutes: seven trainings per round; ``make bench-full`` runs it). The
defaults are the README table's run:

    python benchmarks/methods_negworld.py           # = --images 600 --steps 50 --batch 64 --lr 1e-3 --threads 1 --runs 2
    python benchmarks/methods_negworld.py --methods negationclip,tng --runs 2
    python benchmarks/methods_negworld.py --quick       # smoke test (tiny world, 2 steps)
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import (Arm, Bench, FlopCounter, add_protocol_args, cli, fmt, nonneg_int, parse_args,  # noqa: E402
                      positive_float, positive_int)

RUNS = [  # (label, method, extra TrainConfig fields)
    ("negationclip", "negationclip", {}),
    ("conclip", "conclip", {}),
    ("negbench (both towers)", "negbench", {}),
    ("negbench (text only)", "negbench", {"train_vision": "none"}),
    ("tng", "tng", {}),
    ("omni", "omni", {}),
]
METRICS = ["negation_balanced", "negation_heldout_phrasing", "negref", "valse_existence",
           "retrieval_i2t_r1", "retrieval_t2i_r1"]


def table(arms: dict) -> str:
    """The README's markdown table: each arm's median metrics (3 decimals)."""
    lines = ["| method | balanced | held-out phrasing | NegRef | VALSE existence | R@1 i->t / t->i |",
             "|---|---|---|---|---|---|"]
    for name, a in arms.items():
        m = {k: a[k]["median"] for k in METRICS}
        lines.append(f"| {name} | {m['negation_balanced']:.3f} | {m['negation_heldout_phrasing']:.3f} | "
                     f"{m['negref']:.3f} | {m['valse_existence']:.3f} | "
                     f"{m['retrieval_i2t_r1']:.3f} / {m['retrieval_t2i_r1']:.3f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=positive_int, default=600, help="NegWorld scenes (default 600)")
    ap.add_argument("--seed", type=nonneg_int, default=1000, help="NegWorld seed (default 1000)")
    ap.add_argument("--steps", type=positive_int, default=50, help="optimizer steps per method (default 50)")
    ap.add_argument("--batch", type=positive_int, default=64, help="batch size (default 64)")
    ap.add_argument("--lr", type=positive_float, default=1e-3, help="one lr for every method (default 1e-3)")
    ap.add_argument("--methods", default=None,
                    help=f"comma-separated labels or method names to run (default all: "
                         f"{', '.join(r[0] for r in RUNS)})")
    ap.add_argument("--work", default=None, help="working folder, reused when it holds the world (default: temporary)")
    ap.add_argument("--out", default=None, help="JSON results (default benchmarks/results/methods_negworld.json)")
    add_protocol_args(ap, threads=1, runs=2)
    args = parse_args(ap, argv)
    wanted = [w.strip() for w in args.methods.split(",")] if args.methods else None
    if wanted:
        known = {r[0] for r in RUNS} | {r[1] for r in RUNS}
        bad = [w for w in wanted if w not in known]
        if bad:
            ap.error(f"argument --methods: unknown {', '.join(map(repr, bad))}; known: "
                     f"{', '.join(r[0] for r in RUNS)} (or a method name)")
    if args.quick:
        args.images, args.steps, args.batch, args.runs = 40, 2, 8, 1

    from transformers.utils import logging as hf_logging

    from negationclip.data.negworld import WorldConfig, WorldExport, build_world
    from negationclip.data.negworld.counterfactual import add_scene_negatives
    from negationclip.demo import BASE_MODEL_DIR, measure
    from negationclip.generate import run_p1
    from negationclip.models import ImageEmbeddingCache, load_clip
    from negationclip.train import finetune
    from negationclip.train.methods import recipe_config

    hf_logging.disable_progress_bar()  # one "Loading weights" bar per checkpoint load otherwise
    bench = Bench("methods_negworld", threads=args.threads, runs=args.runs, warmup=0, quick=args.quick)
    tmp = None if args.work else tempfile.mkdtemp(prefix="methods_negworld_")
    work = Path(args.work or tmp)
    try:
        world_dir = work / "world"
        if not (world_dir / "manifest.json").exists():
            build_world(world_dir, WorldConfig(images=args.images, seed=args.seed), overwrite=True)
        world = WorldExport.open(world_dir)
        p1 = work / "p1.jsonl"
        if not p1.exists():
            run_p1(world.captions("train"), p1, instances=world.instances("train"),
                   images=world.images_dir, seed=0, overwrite=True)
        data = work / "p1+neg.jsonl"
        if not data.exists():
            add_scene_negatives(p1, world.root, data, seed=0, show_progress=False)
        cache = ImageEmbeddingCache(work / "cache")
        measure(load_clip(BASE_MODEL_DIR), world, cache, "base", field=False)  # fills the cache

        def base_arm():
            m, _ = measure(load_clip(BASE_MODEL_DIR), world, cache, "base", field=False)
            return {**m, "train_seconds": 0.0, "flops": 0}

        def method_arm(label, method, extra):
            def run():
                out = work / "runs" / label.replace(" ", "_").replace("(", "").replace(")", "")
                if out.exists():
                    shutil.rmtree(out)
                cfg = recipe_config(method, **{**dict(
                    lr=args.lr, batch_size=args.batch, max_steps=args.steps, epochs=1000,
                    warmup_steps=0, schedule="constant", val_fraction=0.0, seed=0, device="cpu",
                    checkpoint_every_steps=max(50, args.steps), instances=[str(world.instances("train"))],
                    mix="negated"), **extra})
                bundle = load_clip(BASE_MODEL_DIR)
                counter = FlopCounter(bundle.model, auto_backward=True)
                t = time.perf_counter()
                res = finetune(bundle, [str(data)], cfg, out, image_root=world.images_dir, cache=cache,
                               inplace=True, verbose=False)
                secs = time.perf_counter() - t
                counter.close()
                m, _ = measure(res.bundle, world, cache, label, field=False)
                return {**m, "train_seconds": secs, "flops": counter.flops, "steps": res.steps}
            return run

        arms = [Arm("base (no training)", base_arm, "shipped base, evaluation only", seconds_key="train_seconds")]
        arms += [Arm(label, method_arm(label, method, extra), f"{method} {extra or ''}".strip(),
                     seconds_key="train_seconds")
                 for label, method, extra in RUNS if not wanted or label in wanted or method in wanted]
        bench.measure(arms)
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    bench.conclude()
    trained = [a.name for a in arms[1:]]
    ref = "negationclip" if "negationclip" in bench.arms else (trained[0] if trained else None)
    for name in trained:
        if name != ref:
            bench.ratio(f"training seconds, {name} / {ref}", name, ref, key="train_seconds")
    spread = {k: max(a[k]["max"] - a[k]["min"] for a in bench.arms.values()) for k in METRICS}
    bench.target("largest metric spread over runs (seeded training reproduces)", max(spread.values()), "<=", 0.0)
    if ref:
        nb = bench.arms[ref]["negation_balanced"]
        base = bench.arms["base (no training)"]["negation_balanced"]["median"]
        bench.set_headline(f"{ref} balanced-negation accuracy after {args.steps} steps", nb["median"],
                           nb["min"], nb["max"])
        bench.headline["beside"] = (f"base {fmt(base)}; {ref} trained in "
                                    f"{fmt(bench.arms[ref]['train_seconds']['median'])} s")
    bench.write(args.out, columns=["negation_balanced", "negref", "valse_existence"],
                config={"images": args.images, "seed": args.seed, "steps": args.steps, "batch": args.batch,
                        "lr": args.lr},
                extra={"readme_table": table(bench.arms), "metric_spread": spread})
    print(table(bench.arms))
    return 0


if __name__ == "__main__":
    sys.exit(cli(main))
