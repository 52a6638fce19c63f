"""NegBench retrieval (plain and negated) on its released CSVs, one result per file
(``negbench-retrieval:<file stem>``)."""

from ..registry import Benchmark, Input
from .negbench_mcq import IMAGES, stem_units


def _units(inputs: dict) -> dict:
    from ...data.negbench import load_negbench_retrieval

    return stem_units("negbench-retrieval", inputs["negbench_retrieval"], load_negbench_retrieval)


def _run(bundle, payload, inputs: dict, ctx) -> dict:
    from ..negbench import evaluate_negbench_retrieval

    path, items = payload
    return evaluate_negbench_retrieval(bundle, items, inputs.get("negbench_images"), source=path,
                                       limit=ctx.limit, **ctx.common())


BENCHMARK = Benchmark(
    name="negbench-retrieval", title="NegBench retrieval",
    summary="NegBench (negated) retrieval CSVs: image_retrieval_recall@1/5, text_retrieval_recall@1/5",
    official="retrieval.py: torch.topk per caption (images) and per image (captions); only the "
             "row's own image is positive",
    inputs=(Input("negbench_retrieval", "NegBench retrieval CSV (repeat), e.g. "
                                        "COCO_val_negated_retrieval_llama3.1_rephrased_affneg_true.csv",
                  multiple=True, metavar="CSV"),
            IMAGES),
    requires=("negbench_retrieval",), units=_units, run=_run, task="zeroshot_retrieval", rank=40)
