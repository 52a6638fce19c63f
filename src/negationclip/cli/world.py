"""``negationclip world build``, ``world pretrain`` and ``world records`` (NegWorld)."""

from __future__ import annotations

import sys

from ..utils.errors import NegationClipError
from ..utils.paths import check_output
from ._base import _parser
from ._types import nonneg_float, nonneg_int, positive_float, positive_int, probability

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
                "format), negation_pairs.json (balanced negated retrieval), the field's benchmark "
                "files in their released formats (negbench_mcq.csv, negbench_retrieval.csv, "
                "negbench_negated_retrieval.csv, ccneg.jsonl, sugarcrepe/<subset>.json; "
                "ccneg.pt with --ccneg-pt), scenes.json (ground truth) and manifest.json. Splits "
                "are by image; every benchmark file uses test images only. The folder appears "
                "only when complete.",
                "examples:\n"
                "  negationclip world build --out runs/negworld --images 2000 --seed 0\n"
                "  negationclip world build --out runs/nw128 --images 500 --size 128 --overwrite\n"
                "  negationclip world build --out runs/negworld --ccneg-pt   # + CoN-CLIP's .pt layout")
    p.add_argument("--out", required=True, help="output folder (created; see --overwrite)")
    p.add_argument("--images", type=positive_int, default=1000, help="number of scenes to render")
    p.add_argument("--seed", type=nonneg_int, default=0, help="random seed: same seed, same bytes")
    p.add_argument("--size", type=positive_int, default=64, help="image side in pixels")
    p.add_argument("--min-objects", type=nonneg_int, default=1, help="fewest objects in a scene")
    p.add_argument("--max-objects", type=positive_int, default=4, help="most objects in a scene")
    p.add_argument("--captions-per-image", type=positive_int, default=5, help="positive captions per image")
    p.add_argument("--questions-per-image", type=positive_int, default=6, help="VQA questions per image")
    p.add_argument("--val-fraction", type=probability, default=0.05, help="share of images in val")
    p.add_argument("--test-fraction", type=probability, default=0.2,
                   help="share of images in test (negref, VALSE and negation pairs come from these)")
    p.add_argument("--pairs-per-scene", type=nonneg_int, default=2,
                   help="negation pairs made from each test scene with at least two objects")
    p.add_argument("--heldout-fraction", type=probability, default=0.35,
                   help="share of negation pairs phrased with a held-out cue (\"but not\", \"lacking\", ...)")
    p.add_argument("--ccneg-pt", action="store_true",
                   help="also write ccneg.pt, CC-Neg in CoN-CLIP's torch layout (image_paths + "
                        "annotations; adds torch's import time to the build)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing NegWorld export at --out")
    p.set_defaults(func=_cmd_world_build)


def _cmd_world_build(args) -> int:
    import json

    from ..data.negworld import WorldConfig, build_world

    check_output(args.out, kind="dir")
    if args.val_fraction < 0 or args.test_fraction < 0 or args.val_fraction + args.test_fraction >= 1:
        raise NegationClipError("world build: need val and test fractions >= 0 with a sum below 1")
    cfg = WorldConfig(images=args.images, seed=args.seed, size=args.size,
                      min_objects=args.min_objects, max_objects=args.max_objects,
                      captions_per_image=args.captions_per_image,
                      questions_per_image=args.questions_per_image,
                      split_fractions={"train": 1 - args.val_fraction - args.test_fraction,
                                       "val": args.val_fraction, "test": args.test_fraction},
                      pairs_per_scene=args.pairs_per_scene, heldout_fraction=args.heldout_fraction,
                      ccneg_pt=args.ccneg_pt)
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
    p.add_argument("--steps", type=positive_int, default=400, help="optimizer steps")
    p.add_argument("--batch-size", type=positive_int, default=256, help="images per step (one caption each)")
    p.add_argument("--lr", type=positive_float, default=1e-3, help="peak learning rate (AdamW)")
    p.add_argument("--warmup-steps", type=nonneg_int, default=40, help="linear warm-up, then cosine decay")
    p.add_argument("--weight-decay", type=nonneg_float, default=0.1, help="AdamW weight decay")
    p.add_argument("--width", type=positive_int, default=128, help="transformer width (text and vision)")
    p.add_argument("--layers", type=positive_int, default=4, help="transformer depth (text and vision)")
    p.add_argument("--image-size", type=positive_int, default=64, help="model input side in pixels")
    p.add_argument("--patch-size", type=positive_int, default=8, help="ViT patch side in pixels")
    p.add_argument("--embed-dim", type=positive_int, default=128, help="joint embedding size")
    p.add_argument("--seed", type=nonneg_int, default=0, help="seed of the initial weights and batches")
    p.add_argument("--dtype", choices=["float32", "float16", "bfloat16"], default="float16",
                   help="dtype of the written weights")
    p.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--checkpoint-every", type=positive_int, default=50, help="resume state every N steps")
    p.add_argument("--no-eval", action="store_true", help="skip the test figures at the end")
    p.set_defaults(func=_cmd_world_pretrain)


def _cmd_world_pretrain(args) -> int:
    import json
    import shlex

    from ..train.pretrain import PretrainConfig, pretrain, update_record

    check_output(args.out, kind="dir")
    if bool(args.world) == bool(args.captions):
        raise NegationClipError("world pretrain: give either --world or --captions (with --images)")
    world = None
    if args.world:
        from ..data.negworld import WorldExport
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
        from ..evaluate.negation_pairs import evaluate_negation_pairs
        from ..evaluate.retrieval import evaluate_retrieval
        from ..models import load_clip

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


def _add_world_records(wsub) -> None:
    p = _parser(wsub, "records", "training records read off NegWorld's scene graphs (parts, absence, presence)",
                "Write fine-tuning records (the generation JSONL layout) that only a scene graph "
                "can make true, from the train scenes of an export: 'parts' negates one property "
                "of one object on its crop (\"the square without a dot\", \"the star that is not "
                "orange\"; image_file is a crop key file.png#x,y,w,h, negative_image the same crop "
                "with the property given to the object, re-rendered); 'absence' writes \"there "
                "are no Ys\" (negative_image: the scene with Y put in); 'presence' writes "
                "presence negation (\"there is an X\" for a shown X, with \"there is no X\" in "
                "negative_texts); 'existence' is both. "
                "Counterfactual images go to <world>/images_sg/. Pass the file to `negationclip "
                "train` with --images <world>/images, beside P1/P2 records. NegWorld only: real "
                "COCO instances have no parts or attributes to negate.",
                "examples:\n"
                "  negationclip world records --world runs/negworld --out runs/sg.jsonl\n"
                "  negationclip world records --world runs/negworld --out runs/parts.jsonl --kinds parts --limit 2000")
    p.add_argument("--world", required=True, help="a NegWorld export folder")
    p.add_argument("--out", required=True, help="output JSONL file")
    p.add_argument("--kinds", default="parts,existence",
                   help="comma-separated: parts, absence, presence; existence = absence,presence")
    p.add_argument("--presence-fraction", type=float, default=1.0,
                   help="presence-negation records for this seeded share of the scenes (0-1)")
    p.add_argument("--part-properties", default="color,part", metavar="PROPS",
                   help="what 'parts' records may negate, comma-separated: color, size, part "
                        "(size is off by default: the crop grows with the object, so a re-sized "
                        "twin crop looks the same once resized)")
    p.add_argument("--limit", type=positive_int, default=None, help="at most this many train scenes (seeded sample)")
    p.add_argument("--seed", type=nonneg_int, default=0, help="random seed of phrasings and twins")
    p.set_defaults(func=_cmd_world_records)


def _cmd_world_records(args) -> int:
    import json

    from ..data.negworld.scene_records import write_scene_records

    check_output(args.out, kind="file")
    from ..data.negworld.scene_records import parse_kinds, parse_part_properties

    counts = write_scene_records(args.world, args.out, kinds=parse_kinds(args.kinds),
                                 seed=args.seed, limit=args.limit,
                                 presence_fraction=args.presence_fraction,
                                 part_properties=parse_part_properties(args.part_properties))
    print(json.dumps(counts, indent=2))
    print(f"wrote {args.out}")
    return 0


_WORLD_COMMANDS = [_add_world_build, _add_world_pretrain, _add_world_records]
