"""``negationclip train``."""

from __future__ import annotations

from ._base import _parser
from ._types import device, nonneg_float, nonneg_int, positive_float, positive_int, probability

# --- train (fine-tuning) ------------------------------------------------------------------

def _add_train(sub) -> None:
    from ..train.config import (ADAMW_KERNELS, HARD_NEGATIVES, METHOD_NAMES, MIXES, PRECISIONS,
                                RECIPES, SCHEDULES, SPLITS, VAL_LOSSES, TrainConfig)

    d = TrainConfig()
    mine = TrainConfig.recipe("negationclip")

    def by_recipe(field: str, show=str) -> str:
        return (f"default by --recipe: paper {show(getattr(d, field))}, "
                f"negationclip {show(getattr(mine, field))}")
    p = _parser(sub, "train", "fine-tune a CLIP on negation data with one of the field's methods",
                "Fine-tuning with one of the field's negation methods (--method: negationclip, "
                "conclip, negbench, tng, omni; each as its released code, with its recipe as the "
                "default) on one of two sets of run choices (--recipe paper: the released "
                "clip_finetune.py exactly; --recipe negationclip: this project's). The default, "
                "NegationCLIP: only the text encoder learns (vision tower, visual "
                "projection and final text layer norm frozen, as in the released script), with "
                "CLIP's contrastive loss. Each image is encoded once through the frozen vision "
                "tower into the shared image-embedding cache (exact, and reused by later runs and "
                "benchmarks); each step runs only the text tower on captions padded to the "
                "longest in the batch. Records whose image is missing or unreadable are skipped "
                "and counted before training. The best model by validation loss is written to "
                "OUT/best (Hugging Face folder); OUT/state holds what --resume needs; "
                "OUT/log.jsonl the per-step log; OUT/loss_curve.png the loss curve. Runs "
                "unchanged under torchrun / accelerate launch (loss over the global batch).\n\n"
                "--recipe paper (the default) is the released clip_finetune.py of NegationCLIP "
                "rule for rule: AdamW (torch defaults: betas 0.9/0.999, eps 1e-8, weight decay "
                "0.01), lr 1e-6, batch 512, 15 epochs, fp32, logit scale trained and never "
                "clamped, np.random.seed(42) + np.random.shuffle 80/20 split of the caption "
                "list, validation loss = mean of per-batch means, best epoch by validation loss. "
                "--recipe negationclip is this project's choices: --split-by image, --precision "
                "auto (bf16 on CUDA), --clamp-logit-scale 100, --val-loss row_mean, "
                "--adamw-kernel fused. Any single option overrides its recipe's value.",
                "examples:\n"
                "  negationclip train --model openai/clip-vit-base-patch32 \\\n"
                "      --data p1.jsonl --data p2.jsonl --images coco/train2014 --out runs/negclip\n"
                "  negationclip train --model ViT-B-32.pt --data negationclip_captions_train2014.json \\\n"
                "      --images coco/train2014 --out runs/paper --save-openai\n"
                "  negationclip train --model world/base --data p1.jsonl --images world/images \\\n"
                "      --out runs/hn --hard-negatives affirmed --mine-negative-images \\\n"
                "      --hard-negative-margin 0.1 --lr 1e-5\n"
                "  negationclip train --recipe negationclip --model ViT-B-32.pt \\\n"
                "      --data p1.jsonl --images coco/train2014 --out runs/ours  # this project's choices\n"
                "  negationclip train ... --precision bf16 --split-by image   # paper, two changes\n"
                "  negationclip train ... --out runs/negclip --resume      # continue a killed run\n"
                "  negationclip train --method conclip --model world/base \\\n"
                "      --data p1+scene-negatives.jsonl --images world/images --out runs/conclip\n"
                "  negationclip train --method tng --model world/base --data world/captions_train.json \\\n"
                "      --instances world/instances_train.json --images world/images --out runs/tng\n"
                "  negationclip train --method negbench --train-vision none ...  # text-only NegBench\n"
                "  negationclip train --method tng --method-option image_labels=released ...\n"
                "  torchrun --nproc-per-node 4 -m negationclip.cli train ... # 4 GPUs, global batch\n"
                "streamed caption sets (open_clip's options; memory holds a chunk, not the set):\n"
                "  negationclip train --model ViT-B-32.pt --dataset-type csv \\\n"
                "      --train-data negbench/cc12m_negcap.csv --csv-separator , \\\n"
                "      --csv-img-key filepath --csv-caption-key caption --out runs/negcap\n"
                "      # NegBench's released fine-tuning CSVs (CC12M-NegCap layout)\n"
                "  negationclip train --model ViT-B-32.pt --dataset-type webdataset \\\n"
                "      --train-data 'shards/{00000..00999}.tar' --val-data 'val/{0..3}.tar' --out runs/wds\n"
                "  negationclip train --model world/base --dataset-type jsonl --train-data p1.jsonl \\\n"
                "      --csv-img-key image_file --csv-caption-key negated --images world/images --out runs/j")
    p.add_argument("--recipe", choices=tuple(RECIPES), default="paper",
                   help="paper: the released clip_finetune.py exactly; negationclip: this "
                        "project's choices (split by image, bf16 on CUDA, logit scale capped at "
                        "100, per-caption validation average, fused AdamW)")
    g = p.add_argument_group("inputs and outputs")
    g.add_argument("--model", required=True,
                   help="starting checkpoint: HF id or folder, OpenAI/open_clip .pt/.pth, .safetensors")
    from ._base import add_act_option
    add_act_option(g, what="--model")
    g.add_argument("--data", action="append", default=None, metavar="FILE",
                   help="caption file (repeat for several): generation JSONL (original, negated, "
                        "affirmed, ...), the released negationclip_captions_train2014.json layout "
                        "(COCO + updated_caption), or plain COCO captions (with --mix original); "
                        "read into memory (--dataset-type json). For caption sets too large for "
                        "that, use --train-data with a streamed --dataset-type")
    g.add_argument("--val-data", action="append", default=None, metavar="FILE",
                   help="validation caption file(s) (same layouts), instead of the random "
                        "--val-fraction split of --data; with a streamed --dataset-type: a "
                        "validation stream of that type (streams are never split)")
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
    g = p.add_argument_group(
        "streamed input (open_clip's options; records read in chunks, tokenised per batch)")
    g.add_argument("--train-data", default=None, metavar="SPEC",
                   help="training captions as open_clip takes them: files with brace patterns "
                        "(shards/{00000..00999}.tar, part-{a,b}.csv), several joined with '::'")
    g.add_argument("--dataset-type", default="auto",
                   choices=("auto", "json", "jsonl", "csv", "webdataset"),
                   help="json: caption files read into memory (every --data layout); csv / jsonl: "
                        "one record per row / line, streamed (image path in --csv-img-key, caption "
                        "in --csv-caption-key, paths relative to --images); webdataset: tar shards "
                        "with KEY.txt (caption) + KEY.jpg/.png/.webp (image), streamed; auto: csv "
                        "for .csv/.tsv, webdataset for .tar, else json")
    g.add_argument("--csv-img-key", default="filepath", metavar="COLUMN",
                   help="column (csv) or field (jsonl) holding the image path (open_clip: filepath)")
    g.add_argument("--csv-caption-key", default="title", metavar="COLUMN",
                   help="column (csv) or field (jsonl) holding the caption (open_clip: title; "
                        "NegBench's fine-tuning CSVs: caption)")
    g.add_argument("--csv-separator", default="\t", metavar="SEP",
                   help="CSV field separator (open_clip: tab, the default; NegBench's CSVs: ','); "
                        "write \\t for tab")
    g.add_argument("--stream-chunk", type=positive_int, default=1024, metavar="N",
                   help="records per chunk of a streamed csv/jsonl file: the unit of reading and "
                        "of the epoch shuffle (chunks in a seeded order, rows shuffled inside)")
    g = p.add_argument_group(
        "method (the field's objectives, each as released; see README 'Fine-tuning')")
    g.add_argument("--method", choices=METHOD_NAMES, default="negationclip",
                   help="negationclip: CLIP loss on negated captions, text tower (the paper); "
                        "conclip: CoN-CLIP's three-way loss with affirmed twins and distractor "
                        "images; negbench: CLIP loss + multiple-choice CE, both towers; tng: "
                        "TNG-CLIP, negations written per batch from nearest-image nouns; omni: "
                        "Omni-NegCLIP, front text layers, absence CE + presence hinge. Options "
                        "left unset take the method's released recipe")
    g.add_argument("--method-option", action="append", default=[], metavar="KEY=VALUE",
                   help="a method's own knob (repeat), e.g. mcq_weight=0.05 (negbench), "
                        "image_labels=released (tng), presence_weight=0 (omni)")
    g.add_argument("--train-vision", default=None, metavar="none|last-K|all",
                   help="what of the vision tower learns (default: the method's released setting: "
                        "all for negbench, none otherwise); when it learns, images are encoded "
                        "every step instead of read from the embedding cache")
    g.add_argument("--instances", action="append", default=[], metavar="FILE",
                   help="COCO-format instances of the training images (repeat): the objects each "
                        "image shows (tng: nouns to negate; omni: presence negations)")
    g = p.add_argument_group("optimisation (defaults: the method's released recipe)")
    g.add_argument("--epochs", type=positive_int, default=None,
                   help=f"passes over the training captions (negationclip: {d.epochs})")
    g.add_argument("--max-steps", type=positive_int, default=None, help="stop after this many optimizer steps")
    g.add_argument("--batch-size", type=positive_int, default=None,
                   help="global batch (all processes together); the contrastive negatives "
                        f"(negationclip: {d.batch_size})")
    g.add_argument("--lr", type=positive_float, default=None, help=f"AdamW learning rate (negationclip: {d.lr})")
    g.add_argument("--weight-decay", type=nonneg_float, default=None,
                   help=f"AdamW weight decay (negationclip: {d.weight_decay})")
    g.add_argument("--schedule", choices=SCHEDULES, default=None,
                   help=f"lr after warm-up (negationclip: {d.schedule})")
    g.add_argument("--warmup-steps", type=nonneg_int, default=None,
                   help=f"linear lr warm-up steps (negationclip: {d.warmup_steps})")
    g.add_argument("--grad-accum", type=positive_int, default=d.grad_accum,
                   help="batches per optimizer step (negatives stay within each batch)")
    g.add_argument("--max-grad-norm", type=positive_float, default=None, help="clip gradients to this norm")
    g.add_argument("--clamp-logit-scale", type=_cap, default=None, metavar="MAX|none",
                   help="cap exp(logit_scale) at MAX after each step, as CLIP's pretraining does "
                        "(100); none: never (the released script); "
                        + by_recipe("clamp_logit_scale", lambda v: "none" if v is None else f"{v:g}"))
    g.add_argument("--adamw-kernel", choices=ADAMW_KERNELS, default=None,
                   help="default: torch's own AdamW implementation choice (the released script); "
                        "fused: one kernel, same update up to float rounding, ~10x faster on CPU; "
                        + by_recipe("adamw_kernel"))
    g.add_argument("--freeze-logit-scale", action="store_true",
                   help="keep the temperature fixed (the released script trains it)")
    g.add_argument("--train-final-layer-norm", action="store_true",
                   help="also train the final text layer norm (the released script freezes it)")
    g = p.add_argument_group("data mix and hard negatives")
    g.add_argument("--mix", choices=MIXES, default=d.mix,
                   help="negated: negated captions only (the paper); both: + every original "
                        "caption; ratio: + --original-ratio originals per negated caption; "
                        "original: originals only (plain COCO captions)")
    g.add_argument("--original-ratio", type=nonneg_float, default=d.original_ratio,
                   help="with --mix ratio: original captions added per negated caption")
    g.add_argument("--hard-negatives", choices=HARD_NEGATIVES, default=d.hard_negatives,
                   help="texts added as extra negatives for their own image in the image->text "
                        "softmax: the original caption, the 'affirmed' caption (stating the "
                        "object's presence), or both; none is the paper's setting")
    g.add_argument("--hard-negative-margin", type=nonneg_float, default=None,
                   help="also a hinge per hard negative: cos(image, negated) must beat cos(image, "
                        "hard text), and cos(negated, image) cos(negated, hard image), by this")
    g.add_argument("--hard-negative-weight", type=nonneg_float, default=d.hard_negative_weight,
                   help="weight of the hinge term")
    g.add_argument("--mine-negative-images", action="store_true",
                   help="give each negated caption an extra negative image: a training image "
                        "whose captions mention the negated object (text->image softmax); a "
                        "record's own 'negative_image' field is used when present")
    g.add_argument("--val-fraction", type=probability, default=d.val_fraction,
                   help="held-out share for validation loss and best-checkpoint choice (0: none, "
                        "the last weights are kept)")
    g.add_argument("--split-by", choices=SPLITS, default=None,
                   help="caption: the released split (np.random.seed(SEED), np.random.shuffle of "
                        "the caption list, first --val-fraction validation; captions of one image "
                        "can land on both sides); image: whole images go to one side; "
                        + by_recipe("split_by"))
    g.add_argument("--val-loss", choices=VAL_LOSSES, default=None,
                   help="batch_mean: mean of per-batch means, batches in split order (the released "
                        "script); row_mean: every validation caption weighs the same; "
                        + by_recipe("val_loss"))
    g.add_argument("--dedupe-images", action="store_true",
                   help="avoid two captions of one image in a batch (they would be false negatives)")
    g = p.add_argument_group("runtime")
    g.add_argument("--seed", type=nonneg_int, default=d.seed, help="seed of the split and the batch order")
    g.add_argument("--device", type=device, default=d.device, help="auto, cpu, cuda, cuda:N")
    g.add_argument("--precision", choices=PRECISIONS, default=None,
                   help="fp32 (the released script); auto: bf16 autocast on CUDA when supported, "
                        "fp32 on CPU; bf16/fp16: autocast; " + by_recipe("precision"))
    g.add_argument("--compile", action="store_true", help="torch.compile the text tower")
    g.add_argument("--text-buckets", type=positive_int, default=None, metavar="N",
                   help="run each batch's captions as N groups of similar length, each padded "
                        "to its own longest: the same embeddings (causal mask, end-of-text "
                        "pooling) with less compute spent on padding; 1: one group; ignored for "
                        "families padded to a fixed length (SigLIP); " + by_recipe("text_buckets"))
    g.add_argument("--eval-every", type=positive_int, default=None, metavar="STEPS",
                   help="also validate every N steps (always after each epoch)")
    g.add_argument("--checkpoint-every", type=positive_int, default=d.checkpoint_every_steps, metavar="STEPS",
                   help="write the resume state every N steps (and at the end)")
    g.add_argument("--log-every", type=positive_int, default=d.log_every_steps, metavar="STEPS",
                   help="write a log.jsonl record every N steps")
    g.add_argument("--report-to", default=d.report_to, metavar="WHERE",
                   choices=("auto", "tensorboard", "wandb", "none"),
                   help="also log loss, lr, validation loss, captions/s (and GPU memory on CUDA) "
                        "to tensorboard (OUT/tensorboard), wandb, or none; auto: tensorboard when "
                        "installed (pip install negationclip[report]), else none")
    g.add_argument("--image-batch-size", type=positive_int, default=d.image_batch_size,
                   help="batch size of the one-off image-embedding pass")
    p.set_defaults(func=_cmd_train)


def _cmd_train(args) -> int:
    import json

    from ..train import finetune
    from ..train.methods import recipe_config
    from ..utils import NegationClipError
    from ..utils.paths import check_output

    check_output(args.out, kind="dir", resume=args.resume)

    opts = {}
    for kv in args.method_option:
        if "=" not in kv:
            raise NegationClipError(f"--method-option {kv!r}: expected KEY=VALUE")
        k, v = kv.split("=", 1)
        opts[k.strip()] = v.strip()
    # what the user set wins; the rest is the method's released recipe, then the run recipe's
    # (--recipe paper|negationclip), then TrainConfig's
    given = {k: v for k, v in dict(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                                    weight_decay=args.weight_decay, schedule=args.schedule,
                                    warmup_steps=args.warmup_steps, max_steps=args.max_steps,
                                    split_by=args.split_by, precision=args.precision,
                                    val_loss=args.val_loss, adamw_kernel=args.adamw_kernel,
                                    text_buckets=args.text_buckets).items() if v is not None}
    if args.clamp_logit_scale is not None:
        given["clamp_logit_scale"] = None if args.clamp_logit_scale == "none" else args.clamp_logit_scale
    if args.freeze_logit_scale:
        given["train_logit_scale"] = False
    if args.train_final_layer_norm:
        given["freeze_final_layer_norm"] = False
    cfg = recipe_config(
        args.method, recipe=args.recipe, **given, method_options=opts,
        train_vision=args.train_vision, instances=list(args.instances), grad_accum=args.grad_accum,
        max_grad_norm=args.max_grad_norm, mix=args.mix,
        original_ratio=args.original_ratio, hard_negatives=args.hard_negatives,
        hard_negative_margin=args.hard_negative_margin,
        hard_negative_weight=args.hard_negative_weight,
        mine_negative_images=args.mine_negative_images, val_fraction=args.val_fraction,
        dedupe_images_in_batch=args.dedupe_images, seed=args.seed,
        device=args.device, compile=args.compile,
        eval_every_steps=args.eval_every, checkpoint_every_steps=args.checkpoint_every,
        log_every_steps=args.log_every, save_openai=args.save_openai,
        image_batch_size=args.image_batch_size, cache_dir=args.cache_dir,
        report_to=args.report_to)
    model, inplace = args.model, False
    if args.act:  # loaded here with the chosen activation; finetune takes the bundle as it is
        from ..models import load_clip
        model, inplace = load_clip(args.model, act=args.act), True
    records, val = _training_input(args)
    res = finetune(model, records, cfg, args.out, image_root=args.images,
                   resume=args.resume, val_records=val, inplace=inplace)
    if res.rank == 0:  # under torchrun every process returns; one summary is enough
        print(json.dumps(res.summary(), indent=2))
    return 0


def _training_input(args):
    """(records, val_records) for ``finetune`` from --data / --train-data / --dataset-type."""
    from ..train.streaming import CsvFormat, StreamInput, expand_urls
    from ..utils import NegationClipError

    if args.data and args.train_data:
        raise NegationClipError("give the training captions once: --data FILE (read into memory) "
                                "or --train-data SPEC (open_clip's name; may stream)")
    if not args.data and not args.train_data:
        raise NegationClipError("no training captions: pass --data FILE or --train-data SPEC")
    spec = args.train_data or "::".join(args.data)
    kind = args.dataset_type
    if kind == "auto":
        first = expand_urls(spec)[0].lower() if expand_urls(spec) else ""
        kind = ("csv" if first.endswith((".csv", ".tsv")) else
                "webdataset" if first.endswith(".tar") else "json")
    if kind == "json":
        files = expand_urls(spec) if args.train_data else list(args.data)
        return files, args.val_data
    sep = args.csv_separator.encode().decode("unicode_escape") if "\\" in args.csv_separator \
        else args.csv_separator
    if len(sep) != 1:
        raise NegationClipError(f"--csv-separator {args.csv_separator!r}: one character expected "
                                "(e.g. ',' or '\\t')")
    fmt = CsvFormat(args.csv_img_key, args.csv_caption_key, sep)
    val = "::".join(args.val_data) if args.val_data else None
    return StreamInput(spec, kind, fmt, val=val, chunk=args.stream_chunk), None


def _cap(text: str):
    """``--clamp-logit-scale``: a number >= 1, or ``none``."""
    import argparse

    if text.strip().lower() == "none":
        return "none"
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number (e.g. 100) or 'none', got {text!r}")
    if not v >= 1:
        raise argparse.ArgumentTypeError(f"the cap is on exp(logit_scale): use a value >= 1, got {v}")
    return v
