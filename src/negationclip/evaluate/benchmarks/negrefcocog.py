"""NegRefCOCOg (NegationCLIP, Park et al., ICCV 2025): which box does a negated referring
expression pick?"""

from ..registry import Benchmark, Input


def _units(inputs: dict) -> dict:
    from ...data.negref import load_negref

    load_negref(inputs["negrefcocog"])  # a malformed file fails before any model loads
    return {"negrefcocog": inputs["negrefcocog"]}


def _run(bundle, path, inputs: dict, ctx) -> dict:
    from ..negrefcocog import evaluate_negrefcocog

    return evaluate_negrefcocog(bundle, path, inputs["negrefcocog_images"], limit=ctx.limit,
                                tie_tol=ctx.tie_tol, **ctx.common())


BENCHMARK = Benchmark(
    name="negrefcocog", title="NegRefCOCOg",
    summary="does the negated expression pick its own box (accuracy_official, strict, ties)",
    official="negrefcocog_eval.py: np.argmax over boxes (first maximum), bbox_list[pred] == "
             "ref_bbox; the reference box is listed first, so a tie counts as correct",
    inputs=(Input("negrefcocog", "NegRefCOCOg.json (released format)"),
            Input("negrefcocog_images", "folder with the COCO train2014 images it names", type="dir")),
    requires=("negrefcocog", "negrefcocog_images"), units=_units, run=_run,
    task="region_selection", aliases=("negref",), rank=10)
