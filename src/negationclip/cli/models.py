"""``negationclip convert`` and ``negationclip encode``."""

from __future__ import annotations

from ..utils.errors import NegationClipError
from ..utils.paths import check_output
from ._base import _parser, add_act_option
from ._types import device, positive_int

# --- convert / encode (models) -------------------------------------------------------------

def _add_convert(sub) -> None:
    p = _parser(sub, "convert", "convert a CLIP checkpoint to a Hugging Face folder (or back)",
                "Read any CLIP checkpoint the model layer understands (Hugging Face id or folder, "
                "OpenAI/open_clip .pt, the released NegationCLIP .pth, .safetensors, an open_clip "
                "name such as ViT-B-32/openai or ViT-B-16-SigLIP/webli (open_clip SigLIP converts to "
                "SiglipModel) from the local Hugging Face cache, a SigLIP / SigLIP 2 "
                "folder) and write it as a Hugging Face folder of its family (CLIPModel, "
                "SiglipModel, Siglip2Model), an OpenAI-style state dict, or a text-encoder folder "
                "for diffusers/CLIPSeg (the last two: CLIP only).",
                "examples:\n"
                "  negationclip convert --input negclip.pth --output negclip-hf\n"
                "  negationclip convert --input negclip-hf --output negclip.pt --to openai\n"
                "  negationclip convert --input negclip.pth --output te --to text-encoder\n"
                "  negationclip convert --input ViT-B-32/openai --output vitb32-hf\n"
                "  negationclip convert --input ViT-B-16-SigLIP/webli --output siglip-b16-hf")
    p.add_argument("--input", required=True, help="checkpoint: HF id or folder, .pt/.pth, .safetensors")
    p.add_argument("--output", required=True, help="output folder (hf, text-encoder) or file (openai)")
    p.add_argument("--to", choices=["hf", "openai", "text-encoder"], default="hf",
                   help="output format: Hugging Face CLIPModel folder, OpenAI state dict (.pt), "
                        "or CLIPTextModel + tokenizer folder")
    p.add_argument("--dtype", choices=["float32", "float16", "bfloat16"], default="float32",
                   help="dtype of the written weights")
    add_act_option(p, what="--input")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --output")
    p.set_defaults(func=_cmd_convert)


def _cmd_convert(args) -> int:
    from ..models import export_openai, export_text_encoder, load_clip, save
    from ..models.load import parse_dtype

    check_output(args.output, kind="file" if args.to == "openai" else "dir",
                 overwrite=args.overwrite, must_not_exist=True, option="--output")
    bundle = load_clip(args.input, dtype=parse_dtype(args.dtype), act=args.act)
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
    p.add_argument("--batch-size", type=positive_int, default=64, help="encoding batch size")
    p.add_argument("--device", type=device, default="cpu", help="torch device, e.g. cpu, cuda, cuda:1")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    add_act_option(p, what="--model")
    p.set_defaults(func=_cmd_encode)


def _cmd_encode(args) -> int:
    import json

    from ..models import encode_images, encode_text, load_clip

    if not args.text and not args.image:
        raise NegationClipError("encode: give at least one --text or --image")
    bundle = load_clip(args.model, device=args.device, act=args.act)
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
