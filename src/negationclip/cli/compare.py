"""``negationclip compare``."""

from __future__ import annotations

import argparse

from ._base import _parser


def _add_compare(sub) -> None:
    from ..train.config import METHOD_NAMES

    p = _parser(sub, "compare", "train every negation method from the same base on NegWorld and compare",
                "Head to head on NegWorld: the same base model, the same P1 + P2 data (rules "
                "backends, scene-graph negative images), the same steps and batch for every "
                "method, then the demo's test-split benchmarks (balanced negation pairs, held-out "
                "phrasings, NegRef, VALSE existence, retrieval) and the field's formats on the world's "
                "test scenes (NegBench MCQ and (negated) retrieval, CC-Neg, SugarCREPE), plus "
                "the text-only ceiling. Writes OUT/compare.md, "
                "OUT/compare.json, OUT/compare.png and OUT/compare_field.png: one row per method "
                "plus the base (and the ceiling).",
                "examples:\n"
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
    p.add_argument("--lr", type=float, default=1e-3, help="one lr for every method")
    p.add_argument("--train-vision", default=None, metavar="none|last-K|all",
                   help="vision setting for every method (default: each method's released one)")
    p.add_argument("--ceiling", action=argparse.BooleanOptionalAction, default=None,
                   help="add the text-only ceiling row (`negationclip ceiling` on the same world; "
                        "minutes on a 10k-image world). Default: on, off with --quick")
    p.add_argument("--world", default=None, help="use this NegWorld export (default: OUT/world, "
                                                  "built from the base model's record)")
    p.add_argument("--seed", type=int, default=0, help="seed of generation and training")
    p.add_argument("--base", default=None, help="base model folder (default: the shipped one)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.set_defaults(func=_cmd_compare)


def _cmd_compare(args) -> int:
    from ..compare import CompareConfig, run_compare

    cfg = CompareConfig(out=args.out, methods=tuple(m.strip() for m in args.methods.split(",") if m.strip()),
                        quick=args.quick, seed=args.seed, base=args.base, threads=args.threads,
                        lr=args.lr, train_vision=args.train_vision,
                        ceiling=args.ceiling, world=args.world)
    for name in ("steps", "batch_size"):
        v = getattr(args, name)
        if v is not None:
            setattr(cfg, ("quick_" if args.quick else "") + name, v)
    run_compare(cfg)
    return 0
