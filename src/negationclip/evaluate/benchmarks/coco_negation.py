"""negationclip's own negation tests built from COCO-format instances (MCQ + negated
retrieval). Not NegBench: see negbench-mcq / negbench-retrieval for NegBench's files."""

from ..registry import Benchmark, Input


def _run(bundle, _payload, inputs: dict, ctx) -> dict:
    from ..coco_negation import evaluate_coco_negation

    return evaluate_coco_negation(bundle, inputs["coco_negation_instances"],
                                  inputs["coco_negation_images"],
                                  max_images=inputs.get("coco_negation_max_images") or ctx.limit,
                                  seed=inputs.get("seed") or 0, tie_tol=ctx.tie_tol, **ctx.common())


BENCHMARK = Benchmark(
    name="coco-negation", title="COCO negation tests (negationclip's own, not NegBench)",
    summary="negationclip's own MCQ + negated retrieval built from COCO-format instances "
            "(formerly 'negbench'; not comparable with NegBench)",
    official="negationclip's rule: first maximum within the tie tolerance (options shuffled)",
    inputs=(Input("coco_negation_instances", "COCO-format instances file (COCO or NegWorld)"),
            Input("coco_negation_images", "folder the instances' file_name values are relative to",
                  type="dir"),
            Input("coco_negation_max_images", "sample at most this many images (seeded)", type="int"),
            Input("seed", "seed for the coco-negation construction", type="int", default=0)),
    requires=("coco_negation_instances", "coco_negation_images"), run=_run,
    task="negation_tests", rank=80)
