"""COCO image-text retrieval (Karpathy 5k test by default): i2t and t2i R@1/5/10."""

from ..registry import Benchmark, Input


def _run(bundle, _payload, inputs: dict, ctx) -> dict:
    from ..retrieval import evaluate_retrieval

    return evaluate_retrieval(bundle, inputs.get("karpathy"), image_root=inputs["retrieval_images"],
                              split=inputs.get("retrieval_split") or "test",
                              captions=inputs.get("coco_captions"),
                              image_list=inputs.get("coco_image_list"),
                              captions_per_image=inputs.get("captions_per_image"), **ctx.common())


BENCHMARK = Benchmark(
    name="coco-retrieval", title="COCO retrieval",
    summary="image->text and text->image R@1/5/10 (alias retrieval)",
    official="rank = number of candidates scoring strictly higher (ties in the model's favour)",
    inputs=(Input("karpathy", "Karpathy split file (dataset_coco.json)"),
            Input("retrieval_split", "Karpathy split to evaluate", type="str", default="test"),
            Input("coco_captions", "COCO captions file (instead of --karpathy)"),
            Input("coco_image_list", "file names or ids of the images to use, one a line"),
            Input("retrieval_images", "image root (Karpathy: holds val2014/ etc.)", type="dir"),
            Input("captions_per_image", "use at most this many captions per image (default: all)",
                  type="int")),
    requires=(("karpathy", "coco_captions"), "retrieval_images"), run=_run,
    task="zeroshot_retrieval", aliases=("retrieval",), rank=70)
