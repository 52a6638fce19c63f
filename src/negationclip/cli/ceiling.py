"""``negationclip ceiling``: the text-only ceiling on NegWorld's balanced negation pairs."""

from __future__ import annotations

from ..utils.paths import check_output
from ._base import _parser
from ._types import device, nonneg_int

CEILING_EPILOG = """\
examples:
  negationclip world build --out runs/negworld --images 10000 --seed 0
  negationclip ceiling --world runs/negworld --out runs/ceiling.json
  negationclip ceiling --model runs/demo/finetune/best --world runs/negworld

rows: the model's own text encoder; query-features (t = W phi(query), phi = the negated shape,
the shapes/colours/sizes/parts the query names, a constant); negated-object (one vector per
negated shape); mean-direction (mean of I - F per negated shape, no fit); negated-object-oracle
(fitted on the test pairs themselves, for reference). The ceiling is the test accuracy of the
row fitted on train pairs that does best on the val pairs."""


def _add_ceiling(sub) -> None:
    p = _parser(sub, "ceiling", "the text-only ceiling: what a frozen vision tower allows",
                "Fit the best rule 'query -> one text vector' on balanced negation pairs made "
                "from the TRAIN scenes of a NegWorld export (L2 chosen on val-scene pairs), with "
                "the model's image embeddings fixed, and measure it on the export's test pairs "
                "(negation_pairs.json): an estimate of the best balanced accuracy any text-only "
                "fine-tuning of this model can reach.", CEILING_EPILOG)
    p.add_argument("--model", default=None,
                   help="CLIP model (folder, hub id or checkpoint); default: the shipped NegWorld "
                        "base model")
    p.add_argument("--world", required=True, help="a NegWorld export folder (`negationclip world build`)")
    p.add_argument("--out", default=None, help="also write the result as JSON here")
    p.add_argument("--max-train-pairs", type=nonneg_int, default=0,
                   help="cap on train pairs (0: every pair the train scenes give)")
    p.add_argument("--cache-dir", default="none",
                   help="image-embedding cache folder for the test images ('none': memory only)")
    p.add_argument("--device", type=device, default="cpu", help="torch device")
    p.add_argument("--threads", type=nonneg_int, default=0, help="torch threads (0: torch's default)")
    p.set_defaults(func=_cmd_ceiling)


def _cmd_ceiling(args) -> int:
    import json

    from ..evaluate.ceiling import CeilingConfig, format_ceiling, text_only_ceiling
    from ..models import ImageEmbeddingCache, load_clip
    from ..utils import atomic_write_json

    if args.out:
        check_output(args.out, kind="file")
    if args.model is None:
        from ..demo import BASE_MODEL_DIR
        source, name = BASE_MODEL_DIR, "negworld-base"
    else:
        source, name = args.model, None
    if args.threads:
        import torch
        torch.set_num_threads(args.threads)
    bundle = load_clip(source, device=args.device)
    cache = ImageEmbeddingCache(False if args.cache_dir == "none" else args.cache_dir)
    r = text_only_ceiling(bundle, args.world, cache=cache, model_name=name,
                          config=CeilingConfig(max_train_pairs=args.max_train_pairs))
    print(format_ceiling(r))
    if args.out:
        atomic_write_json(args.out, r)
        print(f"wrote {args.out}")
    return 0
