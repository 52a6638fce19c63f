"""``negationclip eval`` and ``negationclip build-negrefcocog``."""

from __future__ import annotations

import dataclasses

from ..evaluate.runner import BENCHMARK_NAMES, EvalConfig
from ._base import _parser

EVAL_EPILOG = """\
benchmarks:
  negrefcocog     NegRefCOCOg: does the negated expression pick its own box (accuracy, ties)
  valse           every VALSE piece in --valse-dir/--valse-file (existence first);
                  or one piece: valse-existence, valse-plurals, ...
  zeroshot        zero-shot top-1/top-5 (ImageNet folder tree or list file; alias imagenet)
  coco-retrieval  image->text and text->image R@1/5/10 (alias retrieval)
  negbench        NegBench-style MCQ (affirmation/negation/hybrid) + negated retrieval
  negation-pairs  NegWorld balanced pairs (accuracy, held-out phrasing accuracy)

examples:
  negationclip eval --model clip=openai/clip-vit-base-patch32 --model negclip=negclip.pth \\
      --benchmark negrefcocog --negrefcocog NegRefCOCOg.json --negrefcocog-images train2014/ \\
      --benchmark valse --valse-dir valse/ --valse-images images/ --out results/
  negationclip eval --model world-ckpt/ --benchmark negation-pairs \\
      --negation-pairs world/negation_pairs.json --benchmark negbench \\
      --negbench-instances world/instances_test.json --negbench-images world/images \\
      --benchmark valse --valse-file world/valse_existence.json --valse-images world/images \\
      --benchmark negrefcocog --negrefcocog world/negref.json \\
      --negrefcocog-images world/images --out r/

writes <out>/results.json (per model, per benchmark, per metric; provenance; software),
<out>/results.md, <out>/charts/*.png and <out>/missing/<benchmark>.txt for missing images.
Re-running with the same --out resumes: finished (model, benchmark) pairs are kept."""


def add_eval_parser(sub, make_parser) -> None:
    from ._base import add_act_option

    p = make_parser(sub, "eval", "benchmark one or more models side by side",
                    "Evaluate CLIP models on NegRefCOCOg, VALSE, zero-shot classification, COCO "
                    "retrieval, NegBench-style negation tests and NegWorld negation pairs. Image "
                    "embeddings go through the shared cache, so a second model sharing the "
                    "vision tower (NegationCLIP only tunes the text encoder) re-encodes nothing.",
                    EVAL_EPILOG)
    p.add_argument("--model", action="append", default=[], metavar="[LABEL=]SOURCE",
                   help="model to evaluate (repeat): Hugging Face id or folder, OpenAI/open_clip "
                        ".pt, released NegationCLIP .pth or .safetensors; LABEL names it in tables")
    p.add_argument("--benchmark", action="append", default=[], metavar="NAME",
                   help=f"benchmark to run (repeat): {', '.join(BENCHMARK_NAMES)}")
    add_act_option(p, what="every --model (default: each checkpoint's own)")
    p.add_argument("--out", default="eval-results", help="output folder")
    p.add_argument("--cache-dir", default=None,
                   help="image-embedding cache folder ('none': memory only); default "
                        "$NEGATIONCLIP_CACHE or ~/.cache/negationclip")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu, cuda, cuda:1")
    p.add_argument("--dtype", choices=["float32", "float16", "bfloat16"], default="float32",
                   help="model dtype")
    p.add_argument("--batch-size", type=int, default=64, help="image encoding batch size")
    p.add_argument("--max-missing", type=float, default=0.05,
                   help="fail a benchmark when more than this fraction of its images is missing "
                        "or unreadable (the list is written to <out>/missing/)")
    p.add_argument("--limit", type=int, default=None, help="only the first N items per benchmark")
    p.add_argument("--overwrite", action="store_true",
                   help="start afresh instead of resuming from <out>/results.json")
    p.add_argument("--no-charts", action="store_true", help="skip the PNG bar charts")
    g = p.add_argument_group("NegRefCOCOg")
    g.add_argument("--negrefcocog", help="NegRefCOCOg.json (released format)")
    g.add_argument("--negrefcocog-images", help="folder with the COCO train2014 images it names")
    g = p.add_argument_group("VALSE")
    g.add_argument("--valse-dir", help="folder of VALSE piece files (existence.json, ...)")
    g.add_argument("--valse-file", dest="valse_files", action="append", default=None,
                   help="a single VALSE piece file (repeat), e.g. a NegWorld valse_existence.json")
    g.add_argument("--valse-images", help="folder with the images named by 'image_file'")
    g.add_argument("--valse-mturk-min-votes", type=int, default=None,
                   help="keep only items at least this many VALSE annotators validated (0-3)")
    g = p.add_argument_group("zero-shot classification")
    g.add_argument("--zeroshot-root", help="ImageFolder tree root/<class>/<image> (ImageNet val "
                                           "with WordNet-id folders gets the shipped names)")
    g.add_argument("--zeroshot-list", help="list file: '<relative image path> <label index>' per line")
    g.add_argument("--zeroshot-images", help="root the list file's paths are relative to "
                                             "(default: the list file's folder)")
    g.add_argument("--zeroshot-classnames", help="JSON list of class names (or folder -> name "
                                                 "object); 'imagenet' for the shipped names")
    g.add_argument("--zeroshot-templates", default="openai",
                   help="'openai' (80 templates), 'simple' (7) or a JSON list with {c}")
    g = p.add_argument_group("COCO retrieval")
    g.add_argument("--karpathy", help="Karpathy split file (dataset_coco.json)")
    g.add_argument("--retrieval-split", default="test", help="Karpathy split to evaluate")
    g.add_argument("--coco-captions", help="COCO captions file (instead of --karpathy)")
    g.add_argument("--coco-image-list", help="file names or ids of the images to use, one a line")
    g.add_argument("--retrieval-images", help="image root (Karpathy: holds val2014/ etc.)")
    g.add_argument("--captions-per-image", type=int, default=None,
                   help="use at most this many captions per image (default: all)")
    g = p.add_argument_group("NegBench-style tests")
    g.add_argument("--negbench-instances", help="COCO-format instances file (COCO or NegWorld)")
    g.add_argument("--negbench-images", help="folder the instances' file_name values are relative to")
    g.add_argument("--negbench-max-images", type=int, default=None,
                   help="sample at most this many images (seeded)")
    g.add_argument("--seed", type=int, default=0, help="seed for the NegBench construction")
    g = p.add_argument_group("NegWorld negation pairs")
    g.add_argument("--negation-pairs", help="negation_pairs.json of a NegWorld export")
    g.add_argument("--negation-pairs-root", help="export root (default: the file's folder)")
    g.add_argument("--negation-pairs-split", default=None, help="only this split (default: all)")


def eval_config_from_args(args) -> EvalConfig:
    names = {f.name for f in dataclasses.fields(EvalConfig)}
    kw = {k: v for k, v in vars(args).items() if k in names}
    return EvalConfig(out_dir=args.out, charts=not args.no_charts, **kw)


def run_eval_cli(args) -> int:
    from ..evaluate.runner import run_eval

    cfg = eval_config_from_args(args)
    loader = None
    if getattr(args, "act", None):
        from ..models import load_clip

        def loader(src, device, dtype):
            return load_clip(src, device=device, dtype=dtype, act=args.act)
    results = run_eval(args.model, args.benchmark, cfg, loader=loader)
    print(f"wrote {cfg.out_dir}/results.json, results.md" + ("" if args.no_charts else ", charts/"))
    return 1 if results.get("errors") else 0


def add_build_negrefcocog_parser(sub, make_parser) -> None:
    p = make_parser(sub, "build-negrefcocog", "build NegRefCOCOg from RefCOCOg",
                    "Keep RefCOCOg expressions with a negation cue; the referred instance is P+, "
                    "other instances of its category in the image are P-; filter small boxes and "
                    "records without P-; expand boxes; write the released NegRefCOCOg format. "
                    "The refs pickle is read with a restricted unpickler (plain data only).",
                    "example:\n"
                    "  negationclip build-negrefcocog --refs refcocog/refs(umd).p \\\n"
                    "      --instances refcocog/instances.json --out NegRefCOCOg.json \\\n"
                    "      --min-box-area 1000 --expand-ratio 0.1")
    p.add_argument("--refs", required=True, help="RefCOCOg refs(umd).p (untrusted pickle, read safely)")
    p.add_argument("--instances", required=True, help="RefCOCOg instances.json (COCO format)")
    p.add_argument("--out", required=True, help="output JSON (released NegRefCOCOg format)")
    p.add_argument("--split", action="append", default=None,
                   help="RefCOCOg split(s) to use (repeat; default: all)")
    p.add_argument("--cue", action="append", default=None,
                   help="negation cue (repeat; default: no not without none nothing nobody "
                        "n't neither nor)")
    p.add_argument("--min-box-area", type=float, default=0.0,
                   help="drop boxes smaller than this many pixels (P+: the record; P-: that box)")
    p.add_argument("--min-box-area-frac", type=float, default=0.0,
                   help="same, as a fraction of the image area")
    p.add_argument("--expand-ratio", type=float, default=0.0,
                   help="grow each box by ratio*size/2 on every side (clipped to the image)")
    p.add_argument("--all-negatives", action="store_true",
                   help="one record with every P- box instead of one record per (P+, P-) pair")
    p.add_argument("--keep-without-negative", action="store_true",
                   help="keep expressions whose image has no other instance of the category")
    p.add_argument("--text-field", choices=["sent", "raw"], default="sent",
                   help="RefCOCOg sentence field: normalised 'sent' or original 'raw'")


def run_build_negrefcocog_cli(args) -> int:
    from ..evaluate.refcocog_build import NEGATION_CUES, BuildConfig, build_negrefcocog, write_negrefcocog

    cfg = BuildConfig(cues=tuple(args.cue) if args.cue else NEGATION_CUES,
                      splits=tuple(args.split) if args.split else None,
                      min_box_area=args.min_box_area, min_box_area_frac=args.min_box_area_frac,
                      expand_ratio=args.expand_ratio, pairs=not args.all_negatives,
                      require_negative=not args.keep_without_negative, text_field=args.text_field)
    records, stats = build_negrefcocog(args.refs, args.instances, cfg)
    write_negrefcocog(records, args.out)
    s = stats.as_dict()
    print(f"wrote {args.out}: {s['records']} records from {s['negated_sentences']} negated of "
          f"{s['sentences']} expressions ({s['refs']} refs); skipped: {s['skipped'] or 'none'}")
    return 0


# --- eval / build-negrefcocog (benchmarks) -------------------------------------------------

def _add_eval(sub) -> None:
    add_eval_parser(sub, _parser)
    sub.choices["eval"].set_defaults(func=_cmd_eval)


def _cmd_eval(args) -> int:
    return run_eval_cli(args)


def _add_build_negrefcocog(sub) -> None:
    add_build_negrefcocog_parser(sub, _parser)
    sub.choices["build-negrefcocog"].set_defaults(func=_cmd_build_negrefcocog)


def _cmd_build_negrefcocog(args) -> int:
    return run_build_negrefcocog_cli(args)
