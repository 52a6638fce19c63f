"""``negationclip eval`` and ``negationclip build-negrefcocog``."""

from __future__ import annotations

import dataclasses
import sys

from ..evaluate.runner import EvalConfig
from ..utils.paths import check_output
from ._base import _parser
from ._types import device, nonneg_float, nonneg_int, positive_int, probability

def _epilog() -> str:
    from ..evaluate.registry import registry

    lines = ["benchmarks (negationclip eval --list for inputs and official rules):"]
    for b in registry().values():
        lines.append(f"  {b.name:<19}{b.summary}")
    return "\n".join(lines) + EVAL_EXAMPLES


EVAL_EXAMPLES = """

Every argmax benchmark reports accuracy_official (the benchmark's own rule, first maximum;
tables lead with it), accuracy_strict and ties (scores within the tie tolerance).

examples:
  negationclip eval --model clip=openai/clip-vit-base-patch32 --model negclip=negclip.pth \\
      --benchmark negrefcocog --negrefcocog NegRefCOCOg.json --negrefcocog-images train2014/ \\
      --benchmark valse --valse-dir valse/ --valse-images images/ --out results/
  negationclip eval --model negclip.pth --benchmark negbench-mcq \\
      --negbench-mcq COCO_val_mcq_llama3.1_rephrased.csv --negbench-mcq VOC2007_mcq_llama3.1_rephrased.csv \\
      --benchmark negbench-retrieval --negbench-retrieval COCO_val_negated_retrieval_llama3.1_rephrased_affneg_true.csv \\
      --negbench-images /data/images/ --out nb/
  negationclip eval --model negclip.pth --benchmark ccneg --ccneg ccneg_preprocessed.pt \\
      --ccneg-images ccneg_images/ --benchmark sugarcrepe --sugarcrepe-dir sugar-crepe/data/ \\
      --sugarcrepe-images val2017/ --out cc/
  negationclip eval --model world-ckpt/ --benchmark negation-pairs \\
      --negation-pairs world/negation_pairs.json \\
      --benchmark valse --valse-file world/valse_existence.json --valse-images world/images \\
      --benchmark negrefcocog --negrefcocog world/negref.json \\
      --negrefcocog-images world/images --out r/

writes <out>/results.json (results[model][benchmark]; multi-file benchmarks keyed
<benchmark>:<file stem>, e.g. valse:existence), <out>/results.md, <out>/charts/*.png,
<out>/clip_benchmark/*.json (CLIP_benchmark's {dataset, model, pretrained, task, metrics,
language}) and <out>/missing/<benchmark>.txt for missing images. Re-running with the same
--out resumes: finished (model, benchmark) pairs are kept. A benchmark that fails (bad file,
too many missing images) is reported on stderr after the others finish; exit status 2."""


_TYPES = {"int": nonneg_int, "float": nonneg_float}  # counts, seeds, sizes: never negative


def add_eval_parser(sub, make_parser) -> None:
    from ..evaluate.registry import registry
    from ._base import add_act_option

    p = make_parser(sub, "eval", "benchmark one or more models side by side",
                    "Evaluate CLIP models on NegRefCOCOg, VALSE, NegBench (MCQ, retrieval), "
                    "CC-Neg, SugarCREPE, zero-shot classification, COCO retrieval, negationclip's "
                    "COCO negation tests and NegWorld negation pairs. Image embeddings go through "
                    "the shared cache, so a second model sharing the vision tower (NegationCLIP "
                    "only tunes the text encoder) re-encodes nothing.",
                    _epilog())
    p.add_argument("--model", action="append", default=[], metavar="[LABEL=]SOURCE",
                   help="model to evaluate (repeat): Hugging Face id or folder (CLIP, SigLIP, SigLIP 2), "
                        "open_clip name (ViT-B-32/openai, hf-hub:ORG/REPO), OpenAI/open_clip "
                        ".pt, released NegationCLIP .pth or .safetensors; LABEL names it in tables")
    p.add_argument("--benchmark", action="append", default=[], metavar="NAME",
                   help="benchmark to run (repeat): " + ", ".join(registry())
                        + "; NAME:PART runs one file of a multi-file benchmark (valse:existence)")
    p.add_argument("--list", action="store_true", help="list the benchmarks, their inputs and "
                                                       "official rules, and exit")
    add_act_option(p, what="every --model (default: each checkpoint's own)")
    p.add_argument("--out", default="eval-results", help="output folder")
    p.add_argument("--cache-dir", default=None,
                   help="image-embedding cache folder ('none': memory only); default "
                        "$NEGATIONCLIP_CACHE or ~/.cache/negationclip")
    p.add_argument("--device", type=device, default="cpu", help="torch device, e.g. cpu, cuda, cuda:1")
    p.add_argument("--dtype", choices=["float32", "float16", "bfloat16"], default="float32",
                   help="model dtype (the tie tolerance follows it)")
    p.add_argument("--batch-size", type=positive_int, default=64, help="image encoding batch size")
    p.add_argument("--max-missing", type=probability, default=0.05,
                   help="fail a benchmark when more than this fraction of its images is missing "
                        "or unreadable (the list is written to <out>/missing/)")
    p.add_argument("--limit", type=positive_int, default=None, help="only the first N items per benchmark")
    p.add_argument("--overwrite", action="store_true",
                   help="start afresh instead of resuming from <out>/results.json")
    p.add_argument("--no-charts", action="store_true", help="skip the PNG bar charts")
    add_benchmark_inputs(p)


def add_benchmark_inputs(p) -> None:
    """Every benchmark plug-in's inputs as options of parser ``p``, one group per benchmark
    (``eval`` and ``compare --data`` share them). An option ``p`` already has (``compare``'s
    ``--seed``) is not declared twice: the benchmark reads that option's value."""
    from ..evaluate.registry import all_inputs, registry

    shared = all_inputs(registry())
    done: set[str] = set()
    for b in registry().values():
        g = p.add_argument_group(b.title)
        for inp in b.inputs:
            if inp.name in done or inp.option in p._option_string_actions:
                continue
            done.add(inp.name)
            users = shared[inp.name][1]
            extra = f" (used by {', '.join(users)})" if len(users) > 1 else ""
            kw: dict = {"dest": inp.name, "help": inp.help + extra}
            if inp.type in _TYPES:
                kw["type"] = _TYPES[inp.type]
            if inp.choices:
                kw["choices"] = list(inp.choices)
            if inp.metavar:
                kw["metavar"] = inp.metavar
            if inp.multiple:
                kw |= {"action": "append", "default": None}
            else:
                kw["default"] = inp.default
            g.add_argument(inp.option, **kw)


def benchmark_inputs_from_args(args) -> dict:
    """The benchmark plug-ins' inputs as ``add_benchmark_inputs`` parsed them."""
    from ..evaluate.registry import all_inputs, registry

    return {n: getattr(args, n) for n in all_inputs(registry()) if hasattr(args, n)}


def eval_config_from_args(args) -> EvalConfig:
    names = {f.name for f in dataclasses.fields(EvalConfig)} - {"inputs", "out_dir", "charts"}
    kw = {k: v for k, v in vars(args).items() if k in names}
    return EvalConfig(out_dir=args.out, charts=not args.no_charts,
                      inputs=benchmark_inputs_from_args(args), **kw)


def run_eval_cli(args) -> int:
    from ..evaluate.runner import list_benchmarks, run_eval

    if args.list:
        print(list_benchmarks())
        return 0
    cfg = eval_config_from_args(args)
    check_output(cfg.out_dir, kind="dir", overwrite=args.overwrite)
    loader = None
    if getattr(args, "act", None):
        from ..models import load_clip

        def loader(src, device, dtype):
            return load_clip(src, device=device, dtype=dtype, act=args.act)
    results = run_eval(args.model, args.benchmark, cfg, loader=loader)
    print(f"wrote {cfg.out_dir}/results.json, results.md, clip_benchmark/"
          + ("" if args.no_charts else ", charts/"))
    if results.get("errors"):
        n = sum(len(v) for v in results["errors"].values())
        print(f"error: {n} benchmark run(s) failed (see above and results.json 'errors')",
              file=sys.stderr)
        return 2
    return 0


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
    p.add_argument("--min-box-area", type=nonneg_float, default=0.0,
                   help="drop boxes smaller than this many pixels (P+: the record; P-: that box)")
    p.add_argument("--min-box-area-frac", type=probability, default=0.0,
                   help="same, as a fraction of the image area")
    p.add_argument("--expand-ratio", type=nonneg_float, default=0.0,
                   help="grow each box by ratio*size/2 on every side (clipped to the image)")
    p.add_argument("--all-negatives", action="store_true",
                   help="one record with every P- box instead of one record per (P+, P-) pair")
    p.add_argument("--keep-without-negative", action="store_true",
                   help="keep expressions whose image has no other instance of the category")
    p.add_argument("--text-field", choices=["sent", "raw"], default="sent",
                   help="RefCOCOg sentence field: normalised 'sent' or original 'raw'")


def run_build_negrefcocog_cli(args) -> int:
    from ..evaluate.refcocog_build import NEGATION_CUES, BuildConfig, build_negrefcocog, write_negrefcocog

    check_output(args.out, kind="file")
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
