"""Zero-shot classification (ImageNet or any ImageFolder tree / list file): top-1 and top-5."""

from ..registry import Benchmark, Input


def _run(bundle, _payload, inputs: dict, ctx) -> dict:
    from ..zeroshot import evaluate_zeroshot

    return evaluate_zeroshot(bundle, inputs.get("zeroshot_root"), list_file=inputs.get("zeroshot_list"),
                             image_root=inputs.get("zeroshot_images"),
                             classnames=inputs.get("zeroshot_classnames"),
                             templates=inputs.get("zeroshot_templates") or "openai",
                             limit=ctx.limit, tie_tol=ctx.tie_tol, **ctx.common())


BENCHMARK = Benchmark(
    name="zeroshot", title="zero-shot classification",
    summary="zero-shot top-1/top-5 (ImageNet folder tree or list file; alias imagenet)",
    official="top-1 of torch.topk over the class logits (CLIP_benchmark)",
    inputs=(Input("zeroshot_root", "ImageFolder tree root/<class>/<image> (ImageNet val with "
                                   "WordNet-id folders gets the shipped names)", type="dir"),
            Input("zeroshot_list", "list file: '<relative image path> <label index>' per line"),
            Input("zeroshot_images", "root the list file's paths are relative to (default: the "
                                     "list file's folder)", type="dir"),
            Input("zeroshot_classnames", "JSON list of class names (or folder -> name object); "
                                         "'imagenet' for the shipped names", must_exist=False),
            Input("zeroshot_templates", "'openai' (80 templates), 'simple' (7) or a JSON list with {c}",
                  type="str", default="openai")),
    requires=(("zeroshot_root", "zeroshot_list"),), run=_run, task="zeroshot_classification",
    aliases=("imagenet",), rank=60)
