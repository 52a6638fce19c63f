"""The ``negationclip`` command: parsing and calling only; the work lives in the library.

Each command is one ``_add_<name>(sub)`` function that builds its parser and sets
``func`` to a ``_cmd_<name>(args)`` that calls the library.
"""

from __future__ import annotations

import argparse
import sys

from . import __version__
from .utils.errors import NegationClipError


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    pass


def _parser(sub, name: str, help: str, description: str, epilog: str = ""):
    return sub.add_parser(name, help=help, description=description, epilog=epilog,
                          formatter_class=_Formatter)


# --- convert / encode (models) -------------------------------------------------------------

def _add_convert(sub) -> None:
    p = _parser(sub, "convert", "convert a CLIP checkpoint to a Hugging Face folder (or back)",
                "Read any CLIP checkpoint the model layer understands (Hugging Face id or folder, "
                "OpenAI/open_clip .pt, the released NegationCLIP .pth, .safetensors) and write it "
                "as a Hugging Face CLIPModel folder, an OpenAI-style state dict, or a text-encoder "
                "folder for diffusers/CLIPSeg.",
                "examples:\n"
                "  negationclip convert --input negclip.pth --output negclip-hf\n"
                "  negationclip convert --input negclip-hf --output negclip.pt --to openai\n"
                "  negationclip convert --input negclip.pth --output te --to text-encoder")
    p.add_argument("--input", required=True, help="checkpoint: HF id or folder, .pt/.pth, .safetensors")
    p.add_argument("--output", required=True, help="output folder (hf, text-encoder) or file (openai)")
    p.add_argument("--to", choices=["hf", "openai", "text-encoder"], default="hf",
                   help="output format: Hugging Face CLIPModel folder, OpenAI state dict (.pt), "
                        "or CLIPTextModel + tokenizer folder")
    p.add_argument("--dtype", choices=["float32", "float16", "bfloat16"], default="float32",
                   help="dtype of the written weights")
    p.set_defaults(func=_cmd_convert)


def _cmd_convert(args) -> int:
    from .models import export_openai, export_text_encoder, load_clip, save
    from .models.load import parse_dtype

    bundle = load_clip(args.input, dtype=parse_dtype(args.dtype))
    if args.to == "hf":
        save(bundle, args.output)
    elif args.to == "openai":
        export_openai(bundle, args.output)
    else:
        export_text_encoder(bundle, args.output)
    print(f"wrote {args.output} ({args.to}) from {args.input}")
    return 0


def _add_encode(sub) -> None:
    p = _parser(sub, "encode", "print cosine similarities between texts and images",
                "Encode texts and images with a CLIP model and print the cosine-similarity "
                "matrix (rows: images, columns: texts) and each image's best text.",
                "example:\n"
                "  negationclip encode --model openai/clip-vit-base-patch32 \\\n"
                "      --text 'a street with cars' --text 'a street with no cars' --image street.jpg")
    p.add_argument("--model", required=True, help="checkpoint: HF id or folder, .pt/.pth, .safetensors")
    p.add_argument("--text", action="append", default=[], help="a text (repeat for several)")
    p.add_argument("--image", action="append", default=[], help="an image file (repeat for several)")
    p.add_argument("--batch-size", type=int, default=64, help="encoding batch size")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu, cuda, cuda:1")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=_cmd_encode)


def _cmd_encode(args) -> int:
    import json

    from .models import encode_images, encode_text, load_clip

    if not args.text and not args.image:
        raise NegationClipError("encode: give at least one --text or --image")
    bundle = load_clip(args.model, device=args.device)
    t = encode_text(bundle, args.text, batch_size=args.batch_size) if args.text else None
    i = encode_images(bundle, args.image, batch_size=args.batch_size) if args.image else None
    if t is not None and i is not None:
        sims = (i @ t.T).tolist()
        if args.json:
            print(json.dumps({"images": args.image, "texts": args.text, "cosine": sims}, indent=2))
            return 0
        width = max(len(x) for x in args.text)
        for img, row in zip(args.image, sims):
            print(img)
            for txt, s in zip(args.text, row):
                print(f"  {s:+.4f}  {txt:<{width}}")
            best = max(range(len(row)), key=row.__getitem__)
            print(f"  best: {args.text[best]!r}")
    else:
        emb = t if t is not None else i
        names = args.text or args.image
        out = {n: e[:8].tolist() for n, e in zip(names, emb)}
        print(json.dumps({"dim": emb.shape[1], "first_8_dims": out}, indent=2))
    return 0


# --- world (NegWorld) ------------------------------------------------------------------------
# `negationclip world <sub>`: each subcommand is an `_add_world_<name>(wsub)` in _WORLD_COMMANDS.

def _add_world(sub) -> None:
    p = _parser(sub, "world", "NegWorld: the rendered world with exact ground truth",
                "NegWorld renders simple scenes (shapes, colours, parts, sizes) and writes them "
                "in the real dataset formats (COCO, VQAv2, NegRefCOCOg, VALSE) plus a balanced "
                "negated-retrieval test, so the whole pipeline runs offline on it.",
                "examples:\n"
                "  negationclip world build --out runs/negworld --images 2000 --seed 0")
    wsub = p.add_subparsers(dest="world_command", metavar="WORLD_COMMAND")
    for add in _WORLD_COMMANDS:
        add(wsub)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def _add_world_build(wsub) -> None:
    p = _parser(wsub, "build", "render NegWorld scenes and write all exports to a folder",
                "Render --images scenes (deterministic from --seed) and write, under --out: "
                "images/*.png, COCO captions_{split}.json and instances_{split}.json, VQAv2 "
                "vqa_questions_{split}.json + vqa_annotations_{split}.json, dataset_coco.json "
                "(Karpathy split), negref.json (NegRefCOCOg format), valse_existence.json (VALSE "
                "format), negation_pairs.json (balanced negated retrieval), scenes.json (ground "
                "truth) and manifest.json. Splits are by image; negref/valse/negation pairs use "
                "test images only. The folder appears only when complete.",
                "examples:\n"
                "  negationclip world build --out runs/negworld --images 2000 --seed 0\n"
                "  negationclip world build --out runs/nw128 --images 500 --size 128 --overwrite")
    p.add_argument("--out", required=True, help="output folder (created; see --overwrite)")
    p.add_argument("--images", type=int, default=1000, help="number of scenes to render")
    p.add_argument("--seed", type=int, default=0, help="random seed: same seed, same bytes")
    p.add_argument("--size", type=int, default=64, help="image side in pixels")
    p.add_argument("--min-objects", type=int, default=1, help="fewest objects in a scene")
    p.add_argument("--max-objects", type=int, default=4, help="most objects in a scene")
    p.add_argument("--captions-per-image", type=int, default=5, help="positive captions per image")
    p.add_argument("--questions-per-image", type=int, default=6, help="VQA questions per image")
    p.add_argument("--val-fraction", type=float, default=0.05, help="share of images in val")
    p.add_argument("--test-fraction", type=float, default=0.2,
                   help="share of images in test (negref, VALSE and negation pairs come from these)")
    p.add_argument("--pairs-per-scene", type=int, default=2,
                   help="negation pairs made from each test scene with at least two objects")
    p.add_argument("--heldout-fraction", type=float, default=0.35,
                   help="share of negation pairs phrased with a held-out cue (\"but not\", \"lacking\", ...)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing NegWorld export at --out")
    p.set_defaults(func=_cmd_world_build)


def _cmd_world_build(args) -> int:
    import json

    from .data.negworld import WorldConfig, build_world

    if args.val_fraction < 0 or args.test_fraction < 0 or args.val_fraction + args.test_fraction >= 1:
        raise NegationClipError("world build: need val and test fractions >= 0 with a sum below 1")
    cfg = WorldConfig(images=args.images, seed=args.seed, size=args.size,
                      min_objects=args.min_objects, max_objects=args.max_objects,
                      captions_per_image=args.captions_per_image,
                      questions_per_image=args.questions_per_image,
                      split_fractions={"train": 1 - args.val_fraction - args.test_fraction,
                                       "val": args.val_fraction, "test": args.test_fraction},
                      pairs_per_scene=args.pairs_per_scene, heldout_fraction=args.heldout_fraction)
    manifest = build_world(args.out, cfg, overwrite=args.overwrite)
    print(json.dumps(manifest["counts"], indent=2))
    print(f"wrote NegWorld export to {args.out}")
    return 0


_WORLD_COMMANDS = [_add_world_build]


# --- generate (negation data) -------------------------------------------------------------
# The subcommands' options live in negationclip.generate.cli (p1, p2, merge, stats, export).

def _add_generate(sub) -> None:
    from .generate.cli import add_generate_parser

    add_generate_parser(sub, _parser)
    sub.choices["generate"].set_defaults(func=_cmd_generate)


def _cmd_generate(args) -> int:
    from .generate.cli import run_generate

    return run_generate(args)


# --- eval / build-negrefcocog (benchmarks) -------------------------------------------------
# The options live in negationclip.evaluate.cli_args; the work in evaluate.runner.

def _add_eval(sub) -> None:
    from .evaluate.cli_args import add_eval_parser

    add_eval_parser(sub, _parser)
    sub.choices["eval"].set_defaults(func=_cmd_eval)


def _cmd_eval(args) -> int:
    from .evaluate.cli_args import run_eval_cli

    return run_eval_cli(args)


def _add_build_negrefcocog(sub) -> None:
    from .evaluate.cli_args import add_build_negrefcocog_parser

    add_build_negrefcocog_parser(sub, _parser)
    sub.choices["build-negrefcocog"].set_defaults(func=_cmd_build_negrefcocog)


def _cmd_build_negrefcocog(args) -> int:
    from .evaluate.cli_args import run_build_negrefcocog_cli

    return run_build_negrefcocog_cli(args)


# --- entry point --------------------------------------------------------------------------

_COMMANDS = [_add_convert, _add_encode, _add_world, _add_generate, _add_eval, _add_build_negrefcocog]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="negationclip",
        description="Make CLIP models understand negation: generate negation data (P1, P2), "
                    "fine-tune the text encoder, benchmark, and use it downstream.",
        formatter_class=_Formatter)
    parser.add_argument("--version", action="version", version=f"negationclip {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in _COMMANDS:
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except NegationClipError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
