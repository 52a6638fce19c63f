"""``negationclip t2i``, ``segment`` and ``segment-eval``."""

from __future__ import annotations

from ..utils.paths import check_output
from ._base import _parser, add_act_option
from ._types import device, nonneg_float, nonneg_int, positive_int, probability

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
    p.add_argument("--seeds", type=nonneg_int, nargs="+", default=[0, 1], help="one image per prompt and seed")
    p.add_argument("--steps", type=positive_int, default=30, help="denoising steps")
    p.add_argument("--guidance", type=nonneg_float, default=7.5, help="classifier-free guidance scale")
    p.add_argument("--height", type=positive_int, default=None, help="image height (default: the pipeline's)")
    p.add_argument("--width", type=positive_int, default=None, help="image width (default: the pipeline's)")
    p.add_argument("--batch-size", type=positive_int, default=4, help="images per pipeline call")
    p.add_argument("--negative-prompt", default=None, help="a negative prompt for every image")
    p.add_argument("--device", type=device, default="cpu", help="torch device, e.g. cpu, cuda, cuda:1")
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
    p.add_argument("--sheet-rows", type=positive_int, default=12, help="prompts (rows) in the contact sheet")
    p.add_argument("--thumb", type=positive_int, default=192, help="thumbnail size in the contact sheet")
    p.add_argument("--judge", choices=["none", "clip", "vqa"], default="none",
                   help="negation score judge: a plain CLIP zero-shot, or a VLM asked yes/no")
    p.add_argument("--judge-model", default=None,
                   help="clip: a CLIP checkpoint (use a plain CLIP, not the model under test); "
                        "vqa: the VLM (hf: a local HF id; openai: the served model name)")
    p.add_argument("--vqa-backend", choices=["hf", "openai"], default="hf",
                   help="VQA judge backend: local transformers model or an OpenAI-compatible server")
    p.add_argument("--vqa-url", default="http://127.0.0.1:8000/v1",
                   help="OpenAI-compatible server URL (vqa judge with --vqa-backend openai)")
    p.add_argument("--judge-device", type=device, default=None, help="device of the judge (default: --device)")
    add_act_option(p, what="--text-encoder")
    add_act_option(p, "--judge-act", what="the clip judge's --judge-model")
    p.set_defaults(func=_cmd_t2i)


def _cmd_t2i(args) -> int:
    from ..apps.commands import T2IConfig, run_t2i

    check_output(args.out, kind="dir")
    if args.save_pipeline:
        check_output(args.save_pipeline, kind="dir", option="--save-pipeline")

    run_t2i(T2IConfig(
        pipeline=args.pipeline, out=args.out, text_encoder=args.text_encoder, prompts=args.prompts,
        compare=args.compare, seeds=args.seeds, steps=args.steps, guidance_scale=args.guidance,
        height=args.height, width=args.width, batch_size=args.batch_size,
        negative_prompt=args.negative_prompt, device=args.device, dtype=args.dtype, slot=args.slot,
        tokenizer=args.tokenizer, safety_checker=not args.no_safety_checker,
        save_pipeline=args.save_pipeline, sheet_rows=args.sheet_rows, thumb=args.thumb,
        judge=args.judge, judge_model=args.judge_model, vqa_backend=args.vqa_backend,
        vqa_url=args.vqa_url, judge_device=args.judge_device, act=args.act,
        judge_act=args.judge_act))
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
    p.add_argument("--threshold", type=probability, default=0.5, help="probability threshold for the mask")
    p.add_argument("--device", type=device, default="cpu", help="torch device")
    p.add_argument("--dtype", choices=["float32", "float16", "bfloat16"], default="float32",
                   help="model dtype")
    add_act_option(p, what="--text-encoder")
    p.set_defaults(func=_cmd_segment)


def _cmd_segment(args) -> int:
    from ..apps.commands import run_segment

    check_output(args.out, kind="file")
    if args.mask_out:
        check_output(args.mask_out, kind="file", option="--mask-out")

    run_segment(args.clipseg, args.image, args.text, args.out, text_encoder=args.text_encoder,
                threshold=args.threshold, device=args.device, dtype=args.dtype, mask_out=args.mask_out,
                act=args.act)
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
    p.add_argument("--threshold", type=probability, default=0.5, help="probability threshold for masks")
    p.add_argument("--batch-size", type=positive_int, default=8, help="expressions per forward pass")
    p.add_argument("--limit", type=positive_int, default=None, help="evaluate only the first N expressions")
    p.add_argument("--device", type=device, default="cpu", help="torch device")
    p.add_argument("--dtype", choices=["float32", "float16", "bfloat16"], default="float32",
                   help="model dtype")
    add_act_option(p, what="--text-encoder")
    p.set_defaults(func=_cmd_segment_eval)


def _cmd_segment_eval(args) -> int:
    from ..apps.commands import SegEvalConfig, run_segment_eval

    check_output(args.out, kind="dir")

    run_segment_eval(SegEvalConfig(
        clipseg=args.clipseg, format=args.format, data=args.data, images=args.images, out=args.out,
        instances=args.instances, text_encoder=args.text_encoder, split=args.split,
        filter=args.filter, threshold=args.threshold, batch_size=args.batch_size, limit=args.limit,
        device=args.device, dtype=args.dtype, act=args.act))
    return 0
