"""CC-Neg (CoN-CLIP, WACV 2025): true caption vs its negation, on the last 40,000 items."""

from ..registry import Benchmark, Input


def _units(inputs: dict) -> dict:
    from ...data.ccneg import load_ccneg

    size = inputs.get("ccneg_eval_size")
    return {"ccneg": (inputs["ccneg"], load_ccneg(inputs["ccneg"], eval_size=size))}


def _run(bundle, payload, inputs: dict, ctx) -> dict:
    from ..ccneg import evaluate_ccneg

    path, items = payload
    return evaluate_ccneg(bundle, items, inputs.get("ccneg_images"), source=path,
                          eval_size=inputs.get("ccneg_eval_size"), limit=ctx.limit,
                          tie_tol=ctx.tie_tol, **ctx.common())


BENCHMARK = Benchmark(
    name="ccneg", title="CC-Neg",
    summary="CC-Neg: cos(image, caption) vs cos(image, negated caption), last 40,000 items",
    official="CoN-CLIP README loop: argmax([true, negated]) (first maximum, a tie is correct)",
    inputs=(Input("ccneg", "CoN-CLIP's ccneg_preprocessed.pt (read with weights_only=True), or "
                           "a JSON/JSONL of the same fields"),
            Input("ccneg_images", "root of the CC-Neg images; paths in the file are looked up "
                                  "under it by their trailing components", type="dir"),
            Input("ccneg_eval_size", "evaluate the last N items (CoN-CLIP's split; 0: all)",
                  type="int", default=40000)),
    requires=("ccneg",), units=_units, run=_run, task="image_caption_selection", rank=50)
