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
    """Shows defaults, except where the help already says what the default is, or it is None."""

    def _get_help_string(self, action):
        text = action.help or ""
        d = action.default
        if "default" in text.lower() or d is None or d is False or d == [] or d == argparse.SUPPRESS:
            return text
        return super()._get_help_string(action)


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
                "vqa_questions_{split}.json + vqa_annotations_{split}.json, negref.json (NegRefCOCOg format), valse_existence.json (VALSE "
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


def _add_world_pretrain(wsub) -> None:
    p = _parser(wsub, "pretrain", "pretrain a tiny CLIP from scratch on a COCO captions export",
                "Contrastive pretraining (CLIP's symmetric loss) of a small Hugging Face CLIPModel "
                "with the real CLIP tokenizer, from random weights, on the train split of a COCO "
                "captions export (NegWorld's, or any COCO-format captions + images). Writes a "
                "Hugging Face folder (weights in --dtype) and PRETRAIN.json with the exact "
                "command, config, seed, loss curve and, for a NegWorld export, the measured test "
                "figures (retrieval R@1, balanced negation accuracy). Killed runs resume from the "
                "last state (every --checkpoint-every steps) when re-run with the same options.",
                "examples:\n"
                "  negationclip world build --out runs/negworld --images 10000 --seed 0\n"
                "  negationclip world pretrain --world runs/negworld --out runs/base --steps 400\n"
                "  negationclip world pretrain --captions coco/captions_train2014.json \\\n"
                "      --images coco/train2014 --out runs/base-coco --image-size 64")
    p.add_argument("--world", help="a NegWorld export folder (uses its train captions and images)")
    p.add_argument("--captions", help="COCO captions file (instead of --world)")
    p.add_argument("--images", help="image folder of --captions")
    p.add_argument("--out", required=True, help="output folder for the model and PRETRAIN.json")
    p.add_argument("--steps", type=int, default=400, help="optimizer steps")
    p.add_argument("--batch-size", type=int, default=256, help="images per step (one caption each)")
    p.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (AdamW)")
    p.add_argument("--warmup-steps", type=int, default=40, help="linear warm-up, then cosine decay")
    p.add_argument("--weight-decay", type=float, default=0.1, help="AdamW weight decay")
    p.add_argument("--width", type=int, default=128, help="transformer width (text and vision)")
    p.add_argument("--layers", type=int, default=4, help="transformer depth (text and vision)")
    p.add_argument("--image-size", type=int, default=64, help="model input side in pixels")
    p.add_argument("--patch-size", type=int, default=8, help="ViT patch side in pixels")
    p.add_argument("--embed-dim", type=int, default=128, help="joint embedding size")
    p.add_argument("--seed", type=int, default=0, help="seed of the initial weights and batches")
    p.add_argument("--dtype", choices=["float32", "float16", "bfloat16"], default="float16",
                   help="dtype of the written weights")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--checkpoint-every", type=int, default=50, help="resume state every N steps")
    p.add_argument("--no-eval", action="store_true", help="skip the test figures at the end")
    p.set_defaults(func=_cmd_world_pretrain)


def _cmd_world_pretrain(args) -> int:
    import json
    import shlex

    from .train.pretrain import PretrainConfig, pretrain, update_record

    if bool(args.world) == bool(args.captions):
        raise NegationClipError("world pretrain: give either --world or --captions (with --images)")
    world = None
    if args.world:
        from .data.negworld import WorldExport
        world = WorldExport.open(args.world)
        captions, images = world.captions("train"), world.images_dir
    else:
        if not args.images:
            raise NegationClipError("world pretrain: --captions needs --images")
        captions, images = args.captions, args.images
    cfg = PretrainConfig(width=args.width, layers=args.layers, image_size=args.image_size,
                         patch_size=args.patch_size, embed_dim=args.embed_dim, steps=args.steps,
                         batch_size=args.batch_size, lr=args.lr, warmup_steps=args.warmup_steps,
                         weight_decay=args.weight_decay, seed=args.seed,
                         checkpoint_every=args.checkpoint_every, threads=args.threads)
    command = "negationclip world pretrain " + " ".join(shlex.quote(a) for a in sys.argv[3:]) \
        if sys.argv[1:3] == ["world", "pretrain"] else None
    extra = {"world": {"seed": world.manifest["seed"], "config": world.manifest["config"]}} \
        if world else None
    res = pretrain(captions, images, args.out, cfg, save_dtype=args.dtype, command=command,
                   extra_record=extra)
    print(f"pretrained {res.steps} steps on {res.images} images ({res.captions} captions) in "
          f"{res.seconds:.0f} s; final loss {res.final_loss:.3f}"
          + (f"; resumed at step {res.resumed_from}" if res.resumed_from else ""))
    if world is not None and not args.no_eval:
        from .evaluate.negation_pairs import evaluate_negation_pairs
        from .evaluate.retrieval import evaluate_retrieval
        from .models import load_clip

        bundle = load_clip(args.out)
        ret = evaluate_retrieval(bundle, image_root=world.images_dir, captions=world.captions("test"),
                                 benchmark="negworld-retrieval")
        neg = evaluate_negation_pairs(bundle, world.negation_pairs, root=world.root, split="test")
        figures = {"test_images": ret["images"], "retrieval_i2t_r1": ret["i2t_r1"],
                   "retrieval_t2i_r1": ret["t2i_r1"], "retrieval_i2t_r5": ret["i2t_r5"],
                   "retrieval_t2i_r5": ret["t2i_r5"], "negation_balanced": neg["accuracy"],
                   "negation_heldout_phrasing": neg["heldout_accuracy"], "negation_pairs": neg["total"]}
        update_record(args.out, figures=figures)
        print(json.dumps(figures, indent=2))
    print(f"wrote {args.out}")
    return 0


_WORLD_COMMANDS = [_add_world_build, _add_world_pretrain]


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


# --- train (fine-tuning) ------------------------------------------------------------------

def _add_train(sub) -> None:
    from .train.config import HARD_NEGATIVES, MIXES, PRECISIONS, SCHEDULES, SPLITS, TrainConfig

    d = TrainConfig()
    p = _parser(sub, "train", "fine-tune a CLIP text encoder on negation-inclusive captions",
                "NegationCLIP fine-tuning: only the text encoder learns (vision tower, visual "
                "projection and final text layer norm frozen, as in the released script), with "
                "CLIP's contrastive loss. Each image is encoded once through the frozen vision "
                "tower into the shared image-embedding cache (exact, and reused by later runs and "
                "benchmarks); each step runs only the text tower on captions padded to the "
                "longest in the batch. Records whose image is missing or unreadable are skipped "
                "and counted before training. The best model by validation loss is written to "
                "OUT/best (Hugging Face folder); OUT/state holds what --resume needs; "
                "OUT/log.jsonl the per-step log; OUT/loss_curve.png the loss curve. Runs "
                "unchanged under torchrun / accelerate launch (loss over the global batch).",
                "examples:\n"
                "  negationclip train --model openai/clip-vit-base-patch32 \\\n"
                "      --data p1.jsonl --data p2.jsonl --images coco/train2014 --out runs/negclip\n"
                "  negationclip train --model ViT-B-32.pt --data negationclip_captions_train2014.json \\\n"
                "      --images coco/train2014 --out runs/paper --save-openai\n"
                "  negationclip train --model world/base --data p1.jsonl --images world/images \\\n"
                "      --out runs/hn --hard-negatives affirmed --mine-negative-images \\\n"
                "      --hard-negative-margin 0.1 --lr 1e-5\n"
                "  negationclip train ... --out runs/negclip --resume      # continue a killed run\n"
                "  torchrun --nproc-per-node 4 -m negationclip.cli train ... # 4 GPUs, global batch")
    g = p.add_argument_group("inputs and outputs")
    g.add_argument("--model", required=True,
                   help="starting checkpoint: HF id or folder, OpenAI/open_clip .pt/.pth, .safetensors")
    g.add_argument("--data", action="append", required=True, metavar="FILE",
                   help="caption file (repeat for several): generation JSONL (original, negated, "
                        "affirmed, ...), the released negationclip_captions_train2014.json layout "
                        "(COCO + updated_caption), or plain COCO captions (with --mix original)")
    g.add_argument("--val-data", action="append", default=None, metavar="FILE",
                   help="validation caption file(s) (same layouts), instead of the random "
                        "--val-fraction split of --data")
    g.add_argument("--images", default=None, metavar="DIR",
                   help="folder the records' image file names are relative to (absolute names "
                        "are used as they are)")
    g.add_argument("--out", required=True, metavar="DIR", help="run folder (best model, state, log, plot)")
    g.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its last state (optimizer, scheduler, RNG, "
                        "data position restored: same weights as an uninterrupted run)")
    g.add_argument("--save-openai", action="store_true",
                   help="also write OUT/best_openai.pt, an OpenAI-style state dict")
    g.add_argument("--cache-dir", default=None, metavar="DIR",
                   help="image-embedding cache (default: $NEGATIONCLIP_CACHE or ~/.cache/negationclip)")
    g = p.add_argument_group("optimisation (defaults: the released recipe)")
    g.add_argument("--epochs", type=int, default=d.epochs, help="passes over the training captions")
    g.add_argument("--max-steps", type=int, default=None, help="stop after this many optimizer steps")
    g.add_argument("--batch-size", type=int, default=d.batch_size,
                   help="global batch (all processes together); the contrastive negatives")
    g.add_argument("--lr", type=float, default=d.lr, help="AdamW learning rate")
    g.add_argument("--weight-decay", type=float, default=d.weight_decay, help="AdamW weight decay")
    g.add_argument("--schedule", choices=SCHEDULES, default=d.schedule, help="lr after warm-up")
    g.add_argument("--warmup-steps", type=int, default=d.warmup_steps, help="linear lr warm-up steps")
    g.add_argument("--grad-accum", type=int, default=d.grad_accum,
                   help="batches per optimizer step (negatives stay within each batch)")
    g.add_argument("--max-grad-norm", type=float, default=None, help="clip gradients to this norm")
    g.add_argument("--freeze-logit-scale", action="store_true",
                   help="keep the temperature fixed (the released script trains it)")
    g.add_argument("--train-final-layer-norm", action="store_true",
                   help="also train the final text layer norm (the released script freezes it)")
    g = p.add_argument_group("data mix and hard negatives")
    g.add_argument("--mix", choices=MIXES, default=d.mix,
                   help="negated: negated captions only (the paper); both: + every original "
                        "caption; ratio: + --original-ratio originals per negated caption; "
                        "original: originals only (plain COCO captions)")
    g.add_argument("--original-ratio", type=float, default=d.original_ratio,
                   help="with --mix ratio: original captions added per negated caption")
    g.add_argument("--hard-negatives", choices=HARD_NEGATIVES, default=d.hard_negatives,
                   help="texts added as extra negatives for their own image in the image->text "
                        "softmax: the original caption, the 'affirmed' caption (stating the "
                        "object's presence), or both; none is the paper's setting")
    g.add_argument("--hard-negative-margin", type=float, default=None,
                   help="also a hinge per hard negative: cos(image, negated) must beat cos(image, "
                        "hard text), and cos(negated, image) cos(negated, hard image), by this")
    g.add_argument("--hard-negative-weight", type=float, default=d.hard_negative_weight,
                   help="weight of the hinge term")
    g.add_argument("--mine-negative-images", action="store_true",
                   help="give each negated caption an extra negative image: a training image "
                        "whose captions mention the negated object (text->image softmax); a "
                        "record's own 'negative_image' field is used when present")
    g.add_argument("--val-fraction", type=float, default=d.val_fraction,
                   help="held-out share for validation loss and best-checkpoint choice (0: none, "
                        "the last weights are kept)")
    g.add_argument("--split-by", choices=SPLITS, default=d.split_by,
                   help="split by image (no image in both parts) or by caption (the released way)")
    g.add_argument("--dedupe-images", action="store_true",
                   help="avoid two captions of one image in a batch (they would be false negatives)")
    g = p.add_argument_group("runtime")
    g.add_argument("--seed", type=int, default=d.seed, help="seed of the split and the batch order")
    g.add_argument("--device", default=d.device, help="auto, cpu, cuda, cuda:N")
    g.add_argument("--precision", choices=PRECISIONS, default=d.precision,
                   help="auto: bf16 autocast on CUDA when supported, fp32 on CPU")
    g.add_argument("--compile", action="store_true", help="torch.compile the text tower")
    g.add_argument("--eval-every", type=int, default=None, metavar="STEPS",
                   help="also validate every N steps (always after each epoch)")
    g.add_argument("--checkpoint-every", type=int, default=d.checkpoint_every_steps, metavar="STEPS",
                   help="write the resume state every N steps (and at the end)")
    g.add_argument("--log-every", type=int, default=d.log_every_steps, metavar="STEPS",
                   help="write a log.jsonl record every N steps")
    g.add_argument("--image-batch-size", type=int, default=d.image_batch_size,
                   help="batch size of the one-off image-embedding pass")
    p.set_defaults(func=_cmd_train)


def _cmd_train(args) -> int:
    import json

    from .train import TrainConfig, finetune

    cfg = TrainConfig(
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay,
        schedule=args.schedule, warmup_steps=args.warmup_steps, grad_accum=args.grad_accum,
        max_grad_norm=args.max_grad_norm, max_steps=args.max_steps,
        train_logit_scale=not args.freeze_logit_scale,
        freeze_final_layer_norm=not args.train_final_layer_norm, mix=args.mix,
        original_ratio=args.original_ratio, hard_negatives=args.hard_negatives,
        hard_negative_margin=args.hard_negative_margin,
        hard_negative_weight=args.hard_negative_weight,
        mine_negative_images=args.mine_negative_images, val_fraction=args.val_fraction,
        split_by=args.split_by, dedupe_images_in_batch=args.dedupe_images, seed=args.seed,
        device=args.device, precision=args.precision, compile=args.compile,
        eval_every_steps=args.eval_every, checkpoint_every_steps=args.checkpoint_every,
        log_every_steps=args.log_every, save_openai=args.save_openai,
        image_batch_size=args.image_batch_size, cache_dir=args.cache_dir)
    res = finetune(args.model, args.data, cfg, args.out, image_root=args.images,
                   resume=args.resume, val_records=args.val_data)
    if res.rank == 0:  # under torchrun every process returns; one summary is enough
        print(json.dumps(res.summary(), indent=2))
    return 0


# --- t2i / segment / segment-eval (apps) ---------------------------------------------------

def _add_t2i(sub) -> None:
    p = _parser(sub, "t2i", "text-to-image with a NegationCLIP text encoder in a diffusers pipeline",
                "Load a diffusers pipeline (Stable Diffusion 1.x/2.x, SDXL, ... from a local folder "
                "or the local Hugging Face cache), put a NegationCLIP text encoder in place of its "
                "own (architectures are checked: widths, heads, layers; SD 2.x's penultimate-layer "
                "encoder is matched by dropping the last layer), and generate one image per prompt "
                "and seed. Each image's noise depends only on its seed, so --compare puts the "
                "original and the NegationCLIP image of the same seed side by side in the contact "
                "sheet. Optionally judge the negation score: for 'X with no Y' prompts, the share "
                "of images where Y is absent (and, as a control, X present). Output: OUT/original/, "
                "OUT/negationclip/ (images/, manifest.jsonl), OUT/contact_sheet.png, "
                "OUT/negation_score.json. Rerunning resumes.",
                "examples:\n"
                "  negationclip t2i --pipeline ./stable-diffusion-v1-5 --text-encoder negclip-L14.pth \\\n"
                "      --compare --out runs/t2i --device cuda --dtype float16 --seeds 0 1 2 \\\n"
                "      --judge clip --judge-model openai/clip-vit-large-patch14\n"
                "  negationclip t2i --pipeline ./sd15 --text-encoder negclip-hf --prompts my.txt "
                "--out runs/mine")
    p.add_argument("--pipeline", required=True,
                   help="diffusers pipeline folder, or a Hugging Face id already in the local cache")
    p.add_argument("--text-encoder", default=None,
                   help="NegationCLIP checkpoint (HF folder/id, .pt/.pth, .safetensors, or a "
                        "CLIPTextModel folder from 'convert --to text-encoder'); omit to run the "
                        "pipeline as it is")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--prompts", default=None,
                   help="prompt file: .txt (one a line) or .jsonl/.json ({\"prompt\", \"id\", "
                        "\"present\": X, \"absent\": Y}); default: the shipped 40 'X with no Y' prompts")
    p.add_argument("--compare", action="store_true",
                   help="also generate with the pipeline's original text encoder (same seeds)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="one image per prompt and seed")
    p.add_argument("--steps", type=int, default=30, help="denoising steps")
    p.add_argument("--guidance", type=float, default=7.5, help="classifier-free guidance scale")
    p.add_argument("--height", type=int, default=None, help="image height (default: the pipeline's)")
    p.add_argument("--width", type=int, default=None, help="image width (default: the pipeline's)")
    p.add_argument("--batch-size", type=int, default=4, help="images per pipeline call")
    p.add_argument("--negative-prompt", default=None, help="a negative prompt for every image")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu, cuda, cuda:1")
    p.add_argument("--dtype", choices=["float32", "float16", "bfloat16"], default="float32",
                   help="pipeline weights dtype")
    p.add_argument("--slot", default="text_encoder",
                   help="which text encoder to replace (SDXL: text_encoder or text_encoder_2)")
    p.add_argument("--tokenizer", choices=["auto", "keep", "replace"], default="auto",
                   help="auto: keep the pipeline's tokenizer if the vocabulary is the same, "
                        "else use the checkpoint's")
    p.add_argument("--no-safety-checker", action="store_true",
                   help="drop the safety checker the pipeline folder ships (none is ever "
                        "downloaded); images it blanks are skipped by the negation score")
    p.add_argument("--save-pipeline", default=None,
                   help="also save the swapped pipeline as a diffusers folder here")
    p.add_argument("--sheet-rows", type=int, default=12, help="prompts (rows) in the contact sheet")
    p.add_argument("--thumb", type=int, default=192, help="thumbnail size in the contact sheet")
    p.add_argument("--judge", choices=["none", "clip", "vqa"], default="none",
                   help="negation score judge: a plain CLIP zero-shot, or a VLM asked yes/no")
    p.add_argument("--judge-model", default=None,
                   help="clip: a CLIP checkpoint (use a plain CLIP, not the model under test); "
                        "vqa: the VLM (hf: a local HF id; openai: the served model name)")
    p.add_argument("--vqa-backend", choices=["hf", "openai"], default="hf",
                   help="VQA judge backend: local transformers model or an OpenAI-compatible server")
    p.add_argument("--vqa-url", default="http://127.0.0.1:8000/v1",
                   help="OpenAI-compatible server URL (vqa judge with --vqa-backend openai)")
    p.add_argument("--judge-device", default=None, help="device of the judge (default: --device)")
    p.set_defaults(func=_cmd_t2i)


def _cmd_t2i(args) -> int:
    from .apps.commands import T2IConfig, run_t2i

    run_t2i(T2IConfig(
        pipeline=args.pipeline, out=args.out, text_encoder=args.text_encoder, prompts=args.prompts,
        compare=args.compare, seeds=args.seeds, steps=args.steps, guidance_scale=args.guidance,
        height=args.height, width=args.width, batch_size=args.batch_size,
        negative_prompt=args.negative_prompt, device=args.device, dtype=args.dtype, slot=args.slot,
        tokenizer=args.tokenizer, safety_checker=not args.no_safety_checker,
        save_pipeline=args.save_pipeline, sheet_rows=args.sheet_rows, thumb=args.thumb,
        judge=args.judge, judge_model=args.judge_model, vqa_backend=args.vqa_backend,
        vqa_url=args.vqa_url, judge_device=args.judge_device))
    return 0


def _add_segment(sub) -> None:
    p = _parser(sub, "segment", "referring segmentation with CLIPSeg (optionally NegationCLIPSeg)",
                "Segment the region of an image that a text refers to with CLIPSeg; with "
                "--text-encoder, CLIPSeg's CLIP ViT-B/16 text encoder (and text projection) is "
                "replaced by a NegationCLIP one, every weight matched by name and shape. Writes an "
                "overlay PNG (one panel per --text, side by side).",
                "example:\n"
                "  negationclip segment --clipseg CIDAS/clipseg-rd64-refined \\\n"
                "      --text-encoder negclip-B16.pth --image dogs.jpg \\\n"
                "      --text 'the dog without a collar' --text 'the dog with a collar' --out seg.png")
    p.add_argument("--clipseg", required=True, help="CLIPSeg folder, or HF id in the local cache")
    p.add_argument("--text-encoder", default=None,
                   help="NegationCLIP ViT-B/16 checkpoint (any format the model layer reads); "
                        "omit for plain CLIPSeg")
    p.add_argument("--image", required=True, help="input image")
    p.add_argument("--text", action="append", default=[], help="referring expression (repeatable)")
    p.add_argument("--out", required=True, help="overlay PNG to write")
    p.add_argument("--mask-out", default=None,
                   help="also write the binary mask PNG(s) here (suffix _N with several texts)")
    p.add_argument("--threshold", type=float, default=0.5, help="probability threshold for the mask")
    p.add_argument("--device", default="cpu", help="torch device")
    p.add_argument("--dtype", choices=["float32", "float16", "bfloat16"], default="float32",
                   help="model dtype")
    p.set_defaults(func=_cmd_segment)


def _cmd_segment(args) -> int:
    from .apps.commands import run_segment

    run_segment(args.clipseg, args.image, args.text, args.out, text_encoder=args.text_encoder,
                threshold=args.threshold, device=args.device, dtype=args.dtype, mask_out=args.mask_out)
    return 0


def _add_segment_eval(sub) -> None:
    p = _parser(sub, "segment-eval", "mIoU / cumulative IoU of (Negation)CLIPSeg on referring data",
                "Evaluate referring segmentation: per-expression IoU, mIoU (mean), cIoU (total "
                "intersection / total union) and P@0.5/0.7/0.9, for negated and affirmative "
                "expressions separately. Formats: refcocog (refs(umd).p or refs.json + COCO "
                "instances; default: negated expressions only), phrasecut (refer_{split}.json; "
                "images/{image_id}.jpg), negref (NegRefCOCOg-format file + COCO instances, e.g. a "
                "NegWorld export, whose masks are exact). Results go to OUT/seg_results.jsonl "
                "(resumable) and OUT/seg_eval.json; run once per model into separate folders.",
                "examples:\n"
                "  negationclip segment-eval --clipseg CIDAS/clipseg-rd64-refined --format refcocog \\\n"
                "      --data refcocog/refs\\(umd\\).p --instances refcocog/instances.json \\\n"
                "      --images coco/train2014 --text-encoder negclip-B16.pth --out runs/seg-neg\n"
                "  negationclip segment-eval --clipseg ./clipseg --format negref \\\n"
                "      --data world/negref.json --instances world/instances_test.json \\\n"
                "      --images world/images --out runs/seg-world")
    p.add_argument("--clipseg", required=True, help="CLIPSeg folder, or HF id in the local cache")
    p.add_argument("--text-encoder", default=None, help="NegationCLIP ViT-B/16 checkpoint; omit for CLIPSeg")
    p.add_argument("--format", required=True, choices=["refcocog", "phrasecut", "negref"],
                   help="annotation format of --data")
    p.add_argument("--data", required=True,
                   help="refcocog: refs(umd).p or refs .json; phrasecut: refer_{split}.json; "
                        "negref: NegRefCOCOg-format .json")
    p.add_argument("--instances", default=None, help="COCO instances JSON (refcocog, negref)")
    p.add_argument("--images", required=True, help="images folder")
    p.add_argument("--out", required=True, help="results folder")
    p.add_argument("--split", default="val", help="refcocog split to use (or 'all')")
    p.add_argument("--filter", choices=["negated", "affirmative", "all"], default=None,
                   help="which expressions (default: negated for refcocog, all otherwise)")
    p.add_argument("--threshold", type=float, default=0.5, help="probability threshold for masks")
    p.add_argument("--batch-size", type=int, default=8, help="expressions per forward pass")
    p.add_argument("--limit", type=int, default=None, help="evaluate only the first N expressions")
    p.add_argument("--device", default="cpu", help="torch device")
    p.add_argument("--dtype", choices=["float32", "float16", "bfloat16"], default="float32",
                   help="model dtype")
    p.set_defaults(func=_cmd_segment_eval)


def _cmd_segment_eval(args) -> int:
    from .apps.commands import SegEvalConfig, run_segment_eval

    run_segment_eval(SegEvalConfig(
        clipseg=args.clipseg, format=args.format, data=args.data, images=args.images, out=args.out,
        instances=args.instances, text_encoder=args.text_encoder, split=args.split,
        filter=args.filter, threshold=args.threshold, batch_size=args.batch_size, limit=args.limit,
        device=args.device, dtype=args.dtype))
    return 0


# --- demo (the whole loop on NegWorld) -------------------------------------------------------

def _add_demo(sub) -> None:
    p = _parser(sub, "demo", "run the whole NegationCLIP loop offline on NegWorld and report",
                "Export NegWorld (COCO, VQAv2, NegRefCOCOg, VALSE formats, balanced negation "
                "pairs), benchmark the shipped tiny base CLIP, generate P1 + P2 negated captions "
                "with the offline rules backends, fine-tune the text encoder, benchmark again, and "
                "write OUT/report.md, OUT/report.json, OUT/metrics.png and OUT/pairs.png. All "
                "figures are measured on held-out test images.",
                "examples:\n"
                "  negationclip demo --out runs/demo\n"
                "  negationclip demo --out runs/demo-quick --quick      # < 90 s smoke run\n"
                "  negationclip demo --out runs/demo-ablation --ablation # + P1/Rand-P1/P2 rows")
    p.add_argument("--out", default="runs/demo", help="output folder (reused parts are kept)")
    p.add_argument("--quick", action="store_true",
                   help="small world of unseen scenes and a short fine-tune (tests, CI)")
    p.add_argument("--ablation", action="store_true",
                   help="also fine-tune on P1, Rand-P1 and P2 alone (same base and budget)")
    p.add_argument("--seed", type=int, default=0, help="seed of generation and fine-tuning")
    p.add_argument("--base", default=None,
                   help="base model folder made by `world pretrain` (default: the shipped one)")
    p.add_argument("--steps", type=int, default=None, help="fine-tuning steps (default: the recipe's)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.set_defaults(func=_cmd_demo)


def _cmd_demo(args) -> int:
    from .demo import DemoConfig, run_demo

    cfg = DemoConfig(out=args.out, quick=args.quick, ablation=args.ablation, seed=args.seed,
                     base=args.base, threads=args.threads)
    if args.steps is not None:
        if args.quick:
            cfg.quick_steps = args.steps
        else:
            cfg.steps = args.steps
    run_demo(cfg)
    return 0


# --- entry point --------------------------------------------------------------------------

_COMMANDS = [_add_demo, _add_convert, _add_encode, _add_world, _add_generate, _add_eval, _add_build_negrefcocog,
             _add_train, _add_t2i, _add_segment, _add_segment_eval]


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
