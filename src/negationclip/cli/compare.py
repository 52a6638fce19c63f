"""``negationclip compare``."""

from __future__ import annotations

import argparse

from ._base import _parser
from ._types import device, positive_int, probability
from .evaluate import add_benchmark_inputs, benchmark_inputs_from_args


def _add_compare(sub) -> None:
    from ..train.config import METHOD_NAMES

    p = _parser(sub, "compare", "train every negation method from the same base and compare",
                "Head to head on NegWorld (the default): the same base model, the same P1 + P2 data (rules "
                "backends, scene-graph negative images), the same steps and batch for every "
                "method, then the demo's test-split benchmarks (balanced negation pairs, held-out "
                "phrasings, NegRef, VALSE existence, retrieval) and the field's formats on the world's "
                "test scenes (NegBench MCQ and (negated) retrieval, CC-Neg, SugarCREPE), plus "
                "the text-only ceiling. Writes OUT/compare.md, "
                "OUT/compare.json, OUT/compare.png and OUT/compare_field.png: one row per method "
                "plus the base (and the ceiling).\n\n"
                "On your data (--data): every method is fine-tuned from --base on the same "
                "caption files (generation JSONL, COCO-format captions: what `negationclip train` "
                "reads) with the same steps, batch and seed (the same number of rows seen), then "
                "the base and every trained model run your benchmarks (--benchmark with the "
                "options of `negationclip eval`; details in OUT/eval/). A method whose data needs "
                "are missing (conclip/negbench/omni: 'affirmed' twins; conclip/omni: distractor "
                "images, mined from the captions here; omni: objects present, tng: object names, "
                "from --instances) is not trained: its row in compare.md says which field and how "
                "to make it, and the other methods run. Exit status 2 if a benchmark failed.",
                "examples:\n"
                "  negationclip compare --base openai/clip-vit-base-patch32 \\\n"
                "      --data p1.jsonl --data p2.jsonl --images coco/train2014 \\\n"
                "      --instances coco/annotations/instances_train2014.json \\\n"
                "      --benchmark negbench-mcq --negbench-mcq COCO_val_mcq_llama3.1_rephrased.csv \\\n"
                "      --negbench-images coco/val2017 --benchmark valse --valse-dir valse/ \\\n"
                "      --valse-images valse-images/ --benchmark coco-retrieval --karpathy \\\n"
                "      dataset_coco.json --retrieval-images coco/ --steps 2000 --out runs/cmp\n"
                "  negationclip compare --out runs/compare\n"
                "  negationclip compare --methods negationclip,conclip,tng --steps 200 --out runs/c3\n"
                "  negationclip compare --quick --out runs/compare-quick   # smoke run (tests)\n"
                "  negationclip compare --no-ceiling --out runs/c  # skip the ceiling fit")
    p.add_argument("--out", default="runs/compare", help="output folder (the world is reused)")
    p.add_argument("--methods", default=",".join(METHOD_NAMES),
                   help=f"comma-separated methods (default: all: {','.join(METHOD_NAMES)})")
    p.add_argument("--quick", action="store_true", help="small unseen world, short runs")
    p.add_argument("--steps", type=int, default=None, help="optimizer steps per method (default 450)")
    p.add_argument("--batch-size", type=int, default=None, help="batch per step (default 256)")
    p.add_argument("--lr", type=float, default=None,
                   help="one lr for every method (default: 1e-3 on NegWorld, whose base is a tiny "
                        "model trained from scratch; with --data each method's released lr)")
    p.add_argument("--train-vision", default=None, metavar="none|last-K|all",
                   help="vision setting for every method (default: each method's released one)")
    p.add_argument("--ceiling", action=argparse.BooleanOptionalAction, default=None,
                   help="add the text-only ceiling row (`negationclip ceiling` on the same world; "
                        "minutes on a 10k-image world). Default: on, off with --quick")
    p.add_argument("--world", default=None, help="use this NegWorld export as it is (default: "
                                                  "OUT/world, built from the base model's record)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of generation, training (and of coco-negation's options)")
    p.add_argument("--base", default=None,
                   help="the model every method starts from: a folder, Hugging Face id or "
                        "OpenAI/open_clip checkpoint (required with --data; NegWorld default: "
                        "the shipped base)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    g = p.add_argument_group("your data (instead of NegWorld)")
    g.add_argument("--data", action="append", default=[], metavar="FILE",
                   help="caption file (repeat): generation JSONL (original, negated, affirmed, "
                        "...), the released negationclip_captions_train2014.json, COCO captions")
    g.add_argument("--images", default=None, metavar="DIR",
                   help="folder the records' image file names are relative to")
    g.add_argument("--instances", action="append", default=[], metavar="FILE",
                   help="COCO-format instances of the training images (tng: nouns; omni: "
                        "objects present)")
    g.add_argument("--benchmark", action="append", default=[], metavar="NAME",
                   help="benchmark to run on the base and every trained model (repeat): the "
                        "names and options of `negationclip eval` (below; eval --list)")
    g.add_argument("--device", type=device, default="cpu", help="torch device (cpu, cuda, cuda:N)")
    g.add_argument("--max-missing", type=probability, default=0.05,
                   help="fail a benchmark when more than this fraction of its images is missing")
    g.add_argument("--limit", type=positive_int, default=None,
                   help="only the first N items per benchmark")
    add_benchmark_inputs(p)
    p.set_defaults(func=_cmd_compare)


def _cmd_compare(args) -> int:
    from ..compare import CompareConfig, run_compare

    cfg = CompareConfig(out=args.out, methods=tuple(m.strip() for m in args.methods.split(",") if m.strip()),
                        quick=args.quick, seed=args.seed, base=args.base, threads=args.threads,
                        lr=args.lr, train_vision=args.train_vision,
                        ceiling=args.ceiling, world=args.world, data=tuple(args.data),
                        images=args.images, instances=tuple(args.instances),
                        benchmarks=tuple(args.benchmark),
                        benchmark_inputs=benchmark_inputs_from_args(args), device=args.device,
                        max_missing=args.max_missing, limit=args.limit)
    for name in ("steps", "batch_size"):
        v = getattr(args, name)
        if v is not None:
            setattr(cfg, ("quick_" if args.quick else "") + name, v)
    rep = run_compare(cfg)
    if rep.get("errors"):
        import sys

        n = sum(len(v) for v in rep["errors"].values())
        print(f"error: {n} benchmark run(s) failed (see {args.out}/compare.md and "
              f"{args.out}/eval/results.json 'errors')", file=sys.stderr)
        return 2
    return 0
