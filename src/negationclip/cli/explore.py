"""``negationclip explore``."""

from __future__ import annotations

from ._base import _parser


def _add_explore(sub) -> None:
    p = _parser(sub, "explore", "a local web page comparing models on negated queries",
                "Open a local Gradio page (needs the [app] extra: pip install 'negationclip[app]'). "
                "Type a query: each model's top-k images from the folder appear side by side "
                "with their cosine scores; tick 'also without the negation' to see the same "
                "query with its negation removed ('a star without a dot' -> 'a star with a dot'), "
                "so the difference is visible. The folder is embedded once per model through the "
                "shared image-embedding cache (progress bar); each query is then one text "
                "encoding. A second tab renders a results.json (eval), compare.json or demo "
                "report.json as tables and charts. Unreadable images are skipped and counted; "
                "a model that fails to load is reported (the page opens with the others).",
                "examples:\n"
                "  negationclip explore --model base=openai/clip-vit-base-patch32 \\\n"
                "      --model negclip=runs/negclip/best --images ~/photos\n"
                "  negationclip explore --demo runs/demo        # the demo's base and fine-tuned\n"
                "                                               # models on its NegWorld test images\n"
                "  negationclip explore --model a=DIR --images IMGS --results runs/eval/results.json \\\n"
                "      --port 7861 --top-k 12")
    p.add_argument("--model", action="append", default=[], metavar="NAME=SOURCE",
                   help="a model to compare (repeatable): NAME=folder, hub id or checkpoint file")
    p.add_argument("--images", default=None, help="folder of images to search (recursively)")
    p.add_argument("--demo", default=None, metavar="RUN",
                   help="a `negationclip demo --out RUN` folder: its base and fine-tuned models, "
                        "its NegWorld test images and its report.json")
    p.add_argument("--results", default=None,
                   help="a results.json / compare.json to show in the results tab")
    p.add_argument("--top-k", type=int, default=8, help="images per model")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default: loopback only; 0.0.0.0 exposes the page)")
    p.add_argument("--port", type=int, default=7860, help="port")
    p.add_argument("--cache-dir", default=None,
                   help="image-embedding cache folder ('none': memory only); default RUN/image_cache "
                        "with --demo, else $NEGATIONCLIP_CACHE or ~/.cache/negationclip")
    p.add_argument("--device", default="cpu", help="torch device")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: torch's; 1 keeps queries fast on a busy machine)")
    p.add_argument("--open", action="store_true", help="open the page in the default browser")
    p.set_defaults(func=_cmd_explore)


def _cmd_explore(args) -> int:
    from pathlib import Path

    from ..apps.explore import Explorer, demo_sources
    from ..evaluate.runner import parse_model_spec
    from ..models import ImageEmbeddingCache
    from ..utils import NegationClipError

    try:
        import gradio  # noqa: F401  (checked first: embedding a folder only to fail here is a waste)
    except ImportError as e:
        raise NegationClipError("the explore page needs Gradio: pip install 'negationclip[app]' "
                                f"({e})") from None
    models: dict[str, str] = {}
    images = args.images
    results = args.results
    cache_dir = args.cache_dir
    if args.demo:
        if args.images:
            raise NegationClipError("explore: give --demo or --images, not both")
        models, images, rep = demo_sources(args.demo)
        results = results or str(rep)
        cache_dir = cache_dir or str(Path(args.demo) / "image_cache")
    for spec in args.model:
        name, src = parse_model_spec(spec)
        if name in models:
            raise NegationClipError(f"explore: two models named {name!r}; use NAME=SOURCE")
        models[name] = src
    if not models:
        raise NegationClipError("explore: give --model NAME=SOURCE (repeatable) or --demo RUN")
    if images is None:
        raise NegationClipError("explore: give --images FOLDER (or --demo RUN)")
    if args.top_k < 1:
        raise NegationClipError(f"--top-k must be at least 1, got {args.top_k}")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    cache = ImageEmbeddingCache(False if cache_dir == "none" else cache_dir)
    explorer = Explorer.open(models, images, cache=cache, device=args.device)
    from ..apps.explore.page import ExplorePage, serve

    page = ExplorePage(explorer, top_k=args.top_k, results_path=results)
    print(f"explore: {len(explorer.paths) - len(explorer.skipped)} images, models "
          f"{', '.join(explorer.model_names)}; open http://{args.host}:{args.port} (Ctrl+C stops)",
          flush=True)
    serve(page, host=args.host, port=args.port, open_browser=args.open)
    return 0
