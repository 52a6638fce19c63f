"""``negationclip demo``."""

from __future__ import annotations

from ..utils.errors import NegationClipError
from ..utils.paths import check_output
from ._base import _parser
from ._types import nonneg_int, positive_int

# --- demo (the whole loop on NegWorld) -------------------------------------------------------

def _add_demo(sub) -> None:
    p = _parser(sub, "demo", "run the whole NegationCLIP loop offline on NegWorld and report",
                "Export NegWorld (COCO, VQAv2, NegRefCOCOg, VALSE formats, balanced negation "
                "pairs), benchmark the shipped tiny base CLIP, generate P1 + P2 negated captions "
                "with the offline rules backends (plus NegWorld's scene-graph part, absence and "
                "presence records, see --scene-records), fine-tune the text encoder (and, with "
                "--train-vision, vision layers), benchmark again, and "
                "write OUT/report.md, OUT/report.json, OUT/metrics.png and OUT/pairs.png. All "
                "figures are measured on held-out test images.",
                "examples:\n"
                "  negationclip demo --out runs/demo\n"
                "  negationclip demo --out runs/demo-quick --quick      # < 90 s smoke run\n"
                "  negationclip demo --out runs/demo-ablation --ablation # + P1/Rand-P1/P2 rows\n"
                "  negationclip demo --out runs/demo-paper --scene-records none \\\n"
                "      --prototype-weight 0 --keep-weight 0 --hinge-weight 50\n"
                "      # the paper's setting: P1 + P2, text tower only (+ this project's hinge)\n"
                "  negationclip demo --out runs/demo --compare  # + every method head to head")
    p.add_argument("--out", default="runs/demo", help="output folder (reused parts are kept)")
    p.add_argument("--quick", action="store_true",
                   help="small world of unseen scenes and a short fine-tune (tests, CI)")
    p.add_argument("--ablation", action="store_true",
                   help="also fine-tune on P1, Rand-P1 and P2 alone (same base and budget)")
    p.add_argument("--compare", action="store_true",
                   help="then run `negationclip compare` (every training method, plus the base "
                        "and, unless --quick, the text-only ceiling) on the same world: OUT/compare/")
    p.add_argument("--seed", type=nonneg_int, default=0, help="seed of generation and fine-tuning")
    p.add_argument("--base", default=None,
                   help="base model folder made by `world pretrain` (default: the shipped one)")
    from ._base import add_act_option
    add_act_option(p, what="--base (default: its config.json)")
    p.add_argument("--steps", type=positive_int, default=None, help="fine-tuning steps (default: the recipe's)")
    p.add_argument("--scene-records", default=None, metavar="KINDS",
                   help="NegWorld scene-graph records added to P1 + P2, comma-separated: parts, "
                        "absence, presence (existence = absence,presence), or 'none' (P1 + P2 "
                        "only). Default: the recipe's")
    p.add_argument("--part-properties", default=None, metavar="PROPS",
                   help="what part records may negate, comma-separated: color, size, part "
                        "(default: the recipe's, color,part: a re-sized twin crop looks the same)")
    p.add_argument("--presence-fraction", type=float, default=None, metavar="F",
                   help="presence-negation records for this share of the scenes (0-1; default: "
                        "the recipe's)")
    p.add_argument("--train-vision", default=None, metavar="none|last-K|all",
                   help="what of the vision tower trains with the text tower (default: the "
                        "recipe's); 'none' is the paper's text-only fine-tuning")
    p.add_argument("--batch-size", type=positive_int, default=None,
                   help="fine-tuning batch size (default: the recipe's)")
    p.add_argument("--hinge-weight", type=float, default=None, metavar="W",
                   help="weight of the hinge on negative images and texts (default: the "
                        "recipe's)")
    p.add_argument("--hinge-margin", type=float, default=None, metavar="M",
                   help="its margin, on cosine similarities (default: the recipe's)")
    p.add_argument("--original-ratio", type=float, default=None, metavar="R",
                   help="original captions per negated one in the mix (default: the recipe's)")
    p.add_argument("--prototype-weight", type=float, default=None, metavar="W",
                   help="the negationclip method's prototype hinge: each 'no Y' caption against "
                        "the batch's mean direction (image - negative image) of the rows negating "
                        "Y, times the hinge weight (default: the recipe's, 0 = off)")
    p.add_argument("--keep-weight", type=float, default=None, metavar="W",
                   help="keep the original captions' text features at the base model's (1 - "
                        "cosine, times W): holds retrieval under heavy hinges (default: the "
                        "recipe's, 0 = off)")
    p.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads")
    p.set_defaults(func=_cmd_demo)


def _cmd_demo(args) -> int:
    from ..demo import DemoConfig, run_demo

    check_output(args.out, kind="dir")
    cfg = DemoConfig(out=args.out, quick=args.quick, ablation=args.ablation, compare=args.compare,
                     seed=args.seed, base=args.base, threads=args.threads, act=args.act)
    if args.scene_records is not None:
        from ..data.negworld.scene_records import parse_kinds

        kinds = "" if args.scene_records.strip().lower() == "none" else args.scene_records
        try:
            cfg.scene_records = ",".join(parse_kinds(kinds))
        except NegationClipError as e:
            raise NegationClipError(f"demo: --scene-records: {e} (or none)") from None
    if args.part_properties is not None:
        from ..data.negworld.scene_records import parse_part_properties

        try:
            cfg.scene_part_properties = ",".join(parse_part_properties(args.part_properties))
        except NegationClipError as e:
            raise NegationClipError(f"demo: --part-properties: {e}") from None
    if args.presence_fraction is not None:
        if not 0.0 <= args.presence_fraction <= 1.0:
            raise NegationClipError(f"demo: --presence-fraction must be in [0, 1], got "
                                    f"{args.presence_fraction}")
        cfg.scene_presence_fraction = args.presence_fraction
    if args.train_vision is not None:
        from ..train.methods.base import parse_train_vision

        parse_train_vision(args.train_vision)  # a clear error before any work
        cfg.train_vision = args.train_vision
    if args.batch_size is not None:
        if args.quick:
            cfg.quick_batch_size = args.batch_size
        else:
            cfg.batch_size = args.batch_size
    for flag, field in (("hinge_weight", "hard_negative_weight"),
                        ("hinge_margin", "hard_negative_margin"),
                        ("original_ratio", "original_ratio"),
                        ("prototype_weight", "prototype_weight"), ("keep_weight", "keep_weight")):
        v = getattr(args, flag)
        if v is not None:
            if v < 0:
                raise NegationClipError(f"demo: --{flag.replace('_', '-')} must be >= 0, got {v}")
            setattr(cfg, field, v)
    if args.steps is not None:
        if args.quick:
            cfg.quick_steps = args.steps
        else:
            cfg.steps = args.steps
    run_demo(cfg)
    return 0
