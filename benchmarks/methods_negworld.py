"""Every training method, same base, same data, same steps, on a small NegWorld: does each run,
and where does a short run take balanced negation?

A NegWorld the shipped base model never saw (seed 1000 + ..., like ``demo --quick``), P1 records
from its train split with the offline rules backends, scene-graph negative images
(``negative_image``) for them, then for each method ``finetune`` from the shipped base for the
same number of steps and batch, and the demo's six test-split metrics. The lr is one value for
all methods (the released ones, 1e-8 .. 5e-6, are for pretrained ViT-B CLIPs; this tiny
scratch model needs the demo's 1e-3); everything else is each method's released recipe.

    python benchmarks/methods_negworld.py --images 1500 --steps 50 --batch 64 --lr 1e-3
        # -> benchmarks/results/methods_negworld.json and a table
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import print_table, write_json  # noqa: E402

RUNS = [  # (label, method, extra TrainConfig fields)
    ("negationclip", "negationclip", {}),
    ("conclip", "conclip", {}),
    ("negbench (both towers)", "negbench", {}),
    ("negbench (text only)", "negbench", {"train_vision": "none"}),
    ("tng", "tng", {}),
    ("omni", "omni", {}),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=1500)
    ap.add_argument("--seed", type=int, default=1000)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--methods", default=None, help="comma-separated labels to run (default all)")
    ap.add_argument("--work", default=None, help="working folder (default: a temporary one)")
    ap.add_argument("--out", default="benchmarks/results/methods_negworld.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from negationclip.data.negworld import WorldConfig, WorldExport, build_world
    from negationclip.data.negworld.counterfactual import add_scene_negatives
    from negationclip.demo import BASE_MODEL_DIR, measure
    from negationclip.generate import run_p1
    from negationclip.models import ImageEmbeddingCache, load_clip
    from negationclip.train import finetune
    from negationclip.train.methods import recipe_config

    work = Path(args.work or tempfile.mkdtemp(prefix="methods_negworld_"))
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
    rows = []
    base = load_clip(BASE_MODEL_DIR)
    m, _ = measure(base, world, cache, "base")
    rows.append({"method": "base (no training)", **m, "seconds": 0.0})
    wanted = set(args.methods.split(",")) if args.methods else None
    for label, method, extra in RUNS:
        if wanted and label not in wanted and method not in wanted:
            continue
        out = work / "runs" / label.replace(" ", "_").replace("(", "").replace(")", "")
        if out.exists():
            shutil.rmtree(out)
        cfg = recipe_config(method, **{**dict(
            lr=args.lr, batch_size=args.batch, max_steps=args.steps, epochs=1000,
            warmup_steps=0, schedule="constant", val_fraction=0.0, seed=0, device="cpu",
            checkpoint_every_steps=max(50, args.steps), instances=[str(world.instances("train"))],
            mix="negated"), **extra})
        t = time.time()
        res = finetune(load_clip(BASE_MODEL_DIR), [str(data)], cfg, out, image_root=world.images_dir,
                       cache=cache, verbose=False)
        secs = time.time() - t
        m, _ = measure(res.bundle, world, cache, label)
        rows.append({"method": label, **m, "seconds": round(secs, 1)})
        print_table(rows[-1:], list(rows[-1]))
    cols = ["method", "negation_balanced", "negation_heldout_phrasing", "negref", "valse_existence",
            "retrieval_i2t_r1", "retrieval_t2i_r1", "seconds"]
    print()
    print_table(rows, cols)
    write_json(args.out, {"args": vars(args), "rows": rows})


if __name__ == "__main__":
    main()
