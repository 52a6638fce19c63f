"""``negationclip generate p1|p2|merge|stats|export``."""

from __future__ import annotations

import json

from ..generate.factory import KINDS, BackendOptions
from ..generate.prompts import DEFAULT_PROMPTS, PROMPT_SET_NAMES
from ..utils.paths import check_output
from ._base import _Formatter, _parser
from ._types import device, nonneg_float, nonneg_int, positive_float, positive_int, probability

_ROLES_P1 = ("proposer", "verifier", "rewriter")


def _backend_args(p, roles) -> None:
    g = p.add_argument_group("backends (chosen per role)")
    for r in roles:
        g.add_argument(f"--{r}", choices=KINDS, default="rules",
                       help=f"backend of the {r}: rules (offline), openai (any OpenAI-compatible "
                            f"server), hf (local transformers model)")
        g.add_argument(f"--{r}-model", default=None,
                       help=f"model of the {r}: the served model name (openai) or a Hugging Face "
                            f"id / folder (hf; default the paper's "
                            + ("llava-hf/llava-v1.6-mistral-7b-hf" if r == "verifier"
                               else "meta-llama/Meta-Llama-3-8B-Instruct") + ")")
        g.add_argument(f"--{r}-url", default=None, action="append",
                       help=f"base URL of the {r}'s server (default: --api-base); repeat it or "
                            f"give a comma-separated list for several replicas of one model")
    g.add_argument("--api-base", default=None, action="append",
                   help="base URL of the OpenAI-compatible server, ending in /v1 (default "
                        "http://127.0.0.1:8000/v1); repeat it or give a comma-separated list "
                        "for several replicas (vLLM behind several URLs): each request goes "
                        "to the least busy live replica, and a dead replica's work moves to "
                        "the others")
    g.add_argument("--api-key-env", default="OPENAI_API_KEY",
                   help="name of the environment variable holding the API key (never logged)")
    g.add_argument("--concurrency", type=positive_int, default=8,
                   help="openai: requests in flight at once per server URL")
    g.add_argument("--timeout", type=positive_float, default=60.0, help="openai: seconds per request")
    g.add_argument("--max-retries", type=nonneg_int, default=4,
                   help="openai: retries (exponential backoff) on 429, 5xx and timeouts")
    g.add_argument("--max-consecutive-failures", type=positive_int, default=20,
                   help="openai: drop a server after this many failed attempts in a row "
                        "(connection errors, timeouts, 5xx; 429 only when a request ends "
                        "rate-limited); the run stops when every server is dropped")
    g.add_argument("--device", type=device, default="cpu", help="hf: torch device (cpu, cuda, cuda:1)")
    g.add_argument("--dtype", default="auto", choices=["auto", "float32", "float16", "bfloat16"],
                   help="hf: weight dtype")
    g.add_argument("--batch-size", type=positive_int, default=8, help="hf: prompts per generate() batch")
    g.add_argument("--temperature", type=nonneg_float, default=None,
                   help="sampling temperature (default: 0.6 for proposer/rewriter as in the "
                        "released code, 0 (greedy) for the verifier)")
    g.add_argument("--top-p", type=probability, default=None,
                   help="nucleus sampling top-p (default 0.9, the released code's)")
    g.add_argument("--max-tokens", type=positive_int, default=None,
                   help="longest answer, in tokens (default: the prompt set's; released: 256 for "
                        "proposer/rewriter, 10 for the verifier; negationclip: 64, verifier 16)")
    g.add_argument("--request-seed", choices=["on", "off"], default="on",
                   help="openai: send a per-request seed so a rerun gets the same samples (on); "
                        "off sends the released code's parameters only")


def _run_args(p) -> None:
    g = p.add_argument_group("run control")
    g.add_argument("--out", required=True, help="output JSONL (a ledger and a cache are kept beside it)")
    g.add_argument("--resume", action="store_true",
                   help="continue a killed or stopped run with the same settings")
    g.add_argument("--overwrite", action="store_true", help="start again, deleting a previous output")
    g.add_argument("--shard", default="0/1",
                   help="i/N: process only shard i of N (split by image, deterministic)")
    g.add_argument("--limit", type=positive_int, default=None, help="process at most this many work items")
    g.add_argument("--seed", type=nonneg_int, default=0, help="seed of every random choice")
    g.add_argument("--chunk-size", type=positive_int, default=None,
                   help="work items per batch of model calls (default max(64, 8 x concurrency))")
    g.add_argument("--affirmed", choices=["auto", "on", "off"], default="auto",
                   help="also write the affirmative twin caption ('affirmed'); auto: on for the "
                        "rules rewriter, off for LLM rewriters (it costs one more call)")


def add_generate_parser(sub, make_parser) -> None:
    p = make_parser(sub, "generate", "generate negated captions (P1, Rand-P1, P2); merge, stats, export",
                    "Generate negation-inclusive captions as in NegationCLIP: P1 (an object the "
                    "caption does not mention, verified absent, written into the caption), "
                    "Rand-P1 (a random object), P2 (VQA questions answered 'no').",
                    "examples:\n"
                    "  negationclip generate p1 --captions captions_train2014.json \\\n"
                    "      --instances instances_train2014.json --out p1.jsonl\n"
                    "  negationclip generate p1 --captions captions_train2014.json --images train2014 \\\n"
                    "      --proposer openai --proposer-model llama3 --verifier openai \\\n"
                    "      --verifier-model llava --verifier-url http://gpu2:8000/v1 \\\n"
                    "      --rewriter openai --rewriter-model llama3 --concurrency 32 --out p1.jsonl\n"
                    "  negationclip generate stats p1.jsonl --plot p1.png")
    gsub = p.add_subparsers(dest="generate_command", metavar="STEP")

    def sp(name, help, desc, epilog):
        return gsub.add_parser(name, help=help, description=desc, epilog=epilog,
                               formatter_class=_Formatter)

    p1 = sp("p1", "negation about objects (P1, or Rand-P1 with --random-objects)",
            "For each caption: propose an object it does not mention, verify that the object is "
            "absent from the image, rewrite the caption to say so. Every accepted caption is "
            "appended (with provenance) to --out; the ledger beside it makes --resume exact.",
            "examples:\n"
            "  negationclip generate p1 --captions world/captions_train.json \\\n"
            "      --instances world/instances_train.json --out p1.jsonl\n"
            "  negationclip generate p1 ... --random-objects --out randp1.jsonl   # ablation\n"
            "  negationclip generate p1 --captions captions_train2014.json --images train2014 \\\n"
            "      --proposer openai --proposer-model llama3 --verifier openai --verifier-model llava \\\n"
            "      --rewriter openai --rewriter-model llama3 --out p1.jsonl   # the released prompts\n"
            "  negationclip generate p1 ... --prompts negationclip --out p1.jsonl  # this project's\n"
            "  negationclip generate p1 ... --proposer openai --proposer-model llama3 \\\n"
            "      --random-objects --out randp1.jsonl   # Rand-P1: the LLM names a random object\n"
            "  negationclip generate p1 ... --shard 3/8 --out p1.3.jsonl           # machine 4 of 8\n"
            "  negationclip generate p1 ... --out p1.jsonl --resume                # after a kill")
    p1.add_argument("--captions", required=True, help="COCO captions JSON")
    p1.add_argument("--instances", default=None,
                    help="COCO instances JSON (needed by the rules verifier; the rules proposer "
                         "learns co-occurrence from it)")
    p1.add_argument("--images", default=None,
                    help="folder of the images (needed by openai/hf verifiers)")
    p1.add_argument("--random-objects", action="store_true",
                    help="Rand-P1: a random object instead of one proposed from the caption")
    p1.add_argument("--random-source", choices=["auto", "llm", "categories"], default="auto",
                    help="with --random-objects: llm asks the proposer's LLM the paper's prompt "
                         "(system 'You are a helpful chatbot that answers with only one word.', "
                         "user 'Name a random object.', one call per caption); categories draws "
                         "uniformly from the category list (no model call); auto: llm with an "
                         "openai/hf --proposer, categories with the rules proposer")
    p1.add_argument("--candidates", type=positive_int, default=1, help="objects tried per caption")
    p1.add_argument("--prompts", choices=PROMPT_SET_NAMES, default=DEFAULT_PROMPTS,
                    help="words of the openai/hf roles: released = the released "
                         "src/data_generation.py (its system turns, few-shot pairs, 'Is there X in "
                         "this image?', temperature 0.6 / top-p 0.9, 256 tokens, answers kept as "
                         "given, unreadable ones skipped); negationclip = this project's wording "
                         "(several candidates per call, grouped proposals, robust parsing)")
    p1.add_argument("--propose-per", choices=["auto", "image", "caption"], default="auto",
                    help="image: one proposer call for all captions of an image (rules, or "
                         "--prompts negationclip); caption: one call each, as the released loop; "
                         "auto: caption with --prompts released LLM proposers, else image. Objects "
                         "any caption of the image names are never verified, in every mode")
    p1.add_argument("--checks", choices=["on", "off"], default="on",
                    help="on: objects a caption of the image names are never verified, and rewrites "
                         "that do not negate, drop the caption or miss the object are rejected "
                         "(counted in the ledger); off: the released loop, which verifies every "
                         "proposal and keeps every rewrite (unreadable answers stay skips)")
    p1.add_argument("--cooccurrence", choices=["auto", "instances", "captions"], default="auto",
                    help="rules proposer: learn co-occurrence from instances or from captions")
    _backend_args(p1, _ROLES_P1)
    _run_args(p1)
    p1.set_defaults(generate_func=_cmd_p1)

    p2 = sp("p2", "negation beyond objects from VQA 'no' answers",
            "For each VQAv2 yes/no question whose majority answer is 'no', rewrite a caption of "
            "the same image to include the negated fact ('Is the man smiling?' no -> 'a man who "
            "is not smiling ...').",
            "example:\n"
            "  negationclip generate p2 --questions v2_OpenEnded_mscoco_train2014_questions.json \\\n"
            "      --annotations v2_mscoco_train2014_annotations.json \\\n"
            "      --captions captions_train2014.json --out p2.jsonl")
    p2.add_argument("--questions", required=True, help="VQAv2 questions JSON")
    p2.add_argument("--annotations", required=True, help="VQAv2 annotations JSON")
    p2.add_argument("--captions", required=True, help="COCO captions JSON of the same images")
    p2.add_argument("--question-types", default=None,
                    help="comma-separated question-type prefixes to keep (e.g. 'is the,are there'); "
                         "default all yes/no questions")
    _backend_args(p2, ("rewriter",))
    _run_args(p2)
    p2.set_defaults(generate_func=_cmd_p2)

    m = sp("merge", "join shard outputs (and their ledgers), dropping duplicate ids",
           "Concatenate generation outputs in the given order; a record id seen before is "
           "dropped. Ledgers are merged too, so stats of the merged file are complete.",
           "example:\n  negationclip generate merge p1.0.jsonl p1.1.jsonl --out p1.jsonl")
    m.add_argument("inputs", nargs="+", help="output JSONL files")
    m.add_argument("--out", required=True, help="merged JSONL")
    m.set_defaults(generate_func=_cmd_merge)

    s = sp("stats", "counts, acceptance rates, model calls per accepted caption, plot",
           "Read outputs and their ledgers; print counts per pipeline and outcome, the acceptance "
           "rate, model calls per role and per accepted caption, and missing images; write a PNG.",
           "example:\n  negationclip generate stats p1.jsonl p2.jsonl --plot gen.png")
    s.add_argument("inputs", nargs="+", help="output JSONL files")
    s.add_argument("--plot", default=None, help="PNG to write (default <first input>.stats.png)")
    s.add_argument("--no-plot", action="store_true", help="do not write a plot")
    s.add_argument("--json", action="store_true", help="print JSON instead of the table")
    s.set_defaults(generate_func=_cmd_stats)

    e = sp("export", "write the released negationclip_captions_train2014.json layout",
           "Write records as a COCO captions file whose annotations add 'updated_caption' (the "
           "negated caption), the layout of the released NegationCLIP data.",
           "example:\n  negationclip generate export p1.jsonl p2.jsonl --captions captions_train2014.json \\\n"
           "      --out negationclip_captions_train2014.json")
    e.add_argument("inputs", nargs="+", help="output JSONL files")
    e.add_argument("--out", required=True, help="JSON file to write")
    e.add_argument("--format", default="negationclip-coco", choices=["negationclip-coco"],
                   help="output layout")
    e.add_argument("--captions", default=None,
                   help="the source COCO captions file (its 'images' are copied)")
    e.add_argument("--pipelines", default=None, help="comma-separated pipelines to keep (P1,Rand-P1,P2)")
    e.set_defaults(generate_func=_cmd_export)
    p.set_defaults(generate_parser=p)


def _opts(args, role: str) -> BackendOptions:
    return BackendOptions(
        kind=getattr(args, role), model=getattr(args, f"{role}_model"),
        url=getattr(args, f"{role}_url") or args.api_base or "http://127.0.0.1:8000/v1",
        api_key_env=args.api_key_env,
        concurrency=args.concurrency, timeout=args.timeout, max_retries=args.max_retries,
        max_consecutive_failures=args.max_consecutive_failures, device=args.device,
        dtype=args.dtype, batch_size=args.batch_size, temperature=args.temperature,
        top_p=args.top_p, max_tokens=args.max_tokens, send_seed=args.request_seed == "on",
        prompts=getattr(args, "prompts", None) or DEFAULT_PROMPTS)


def _affirmed(args):
    return {"auto": None, "on": True, "off": False}[args.affirmed]


def _print_summary(summary: dict) -> None:
    keys = ("items_total", "items_done_before", "items", "items_error", "records")
    print("  ".join(f"{k}={summary[k]}" for k in keys if k in summary))
    rest = {k: v for k, v in summary.items() if k not in keys and k != "out"}
    print("  ".join(f"{k}={v}" for k, v in sorted(rest.items())))
    print(f"wrote {summary['out']}")


def _cmd_p1(args) -> int:
    check_output(args.out, kind="file", overwrite=args.overwrite, resume=args.resume)
    from ..generate.p1 import run_p1
    from ..generate.runner import parse_shard

    summary = run_p1(args.captions, args.out, instances=args.instances, images=args.images,
                     proposer=_opts(args, "proposer"), verifier=_opts(args, "verifier"),
                     rewriter=_opts(args, "rewriter"), random_objects=args.random_objects,
                     candidates=args.candidates, affirmed=_affirmed(args),
                     shard=parse_shard(args.shard), resume=args.resume, overwrite=args.overwrite,
                     limit=args.limit, seed=args.seed, chunk_size=args.chunk_size,
                     cooccurrence=args.cooccurrence, propose_per=args.propose_per,
                     random_source=args.random_source, prompts=args.prompts,
                     checks=args.checks == "on")
    _print_summary(summary)
    return 0 if not summary.get("items_error") else 1


def _cmd_p2(args) -> int:
    check_output(args.out, kind="file", overwrite=args.overwrite, resume=args.resume)
    from ..generate.p2 import run_p2
    from ..generate.runner import parse_shard

    qt = [q for q in (args.question_types or "").split(",") if q.strip()]
    summary = run_p2(args.questions, args.annotations, args.captions, args.out,
                     rewriter=_opts(args, "rewriter"), question_types=qt or None,
                     affirmed=_affirmed(args), shard=parse_shard(args.shard), resume=args.resume,
                     overwrite=args.overwrite, limit=args.limit, seed=args.seed,
                     chunk_size=args.chunk_size)
    _print_summary(summary)
    return 0 if not summary.get("items_error") else 1


def _cmd_merge(args) -> int:
    from ..generate.stats import merge_outputs

    check_output(args.out, kind="file")
    r = merge_outputs(args.inputs, args.out)
    print(f"merged {r['inputs']} files: {r['records']} records "
          f"({r['duplicates_dropped']} duplicates dropped) -> {r['out']}")
    return 0


def _cmd_stats(args) -> int:
    from ..generate.stats import format_stats, plot_stats, run_stats

    s = run_stats(args.inputs)
    if args.json:
        print(json.dumps(s, indent=2))
    else:
        print(format_stats(s))
    if not args.no_plot:
        path = args.plot or f"{args.inputs[0]}.stats.png"
        check_output(path, kind="file", option="--plot")
        plot_stats(s, path)
        if not args.json:
            print(f"plot: {path}")
    return 0


def _cmd_export(args) -> int:
    from ..generate.export import export_records

    pipes = [p.strip() for p in args.pipelines.split(",") if p.strip()] if args.pipelines else None
    check_output(args.out, kind="file")
    r = export_records(args.inputs, args.out, fmt=args.format, captions=args.captions,
                       pipelines=pipes)
    print(f"wrote {r['annotations']} annotations over {r['images']} images -> {r['out']}")
    return 0


def run_generate(args) -> int:
    func = getattr(args, "generate_func", None)
    if func is None:
        args.generate_parser.print_help()
        return 2
    return func(args)


# --- generate (negation data) -------------------------------------------------------------

def _add_generate(sub) -> None:
    add_generate_parser(sub, _parser)
    sub.choices["generate"].set_defaults(func=_cmd_generate)


def _cmd_generate(args) -> int:
    return run_generate(args)
