"""NegBench multiple choice (Alhamoud et al., CVPR 2025) on its released CSVs, one result per
file (``negbench-mcq:<file stem>``)."""

from ...utils import NegationClipError
from ..registry import Benchmark, Input, file_stem_key

IMAGES = Input("negbench_images", "root holding the images of the NegBench CSVs: each path "
                                  "written in a CSV is looked up under it by its trailing "
                                  "components (ROOT/.../val2017/x.jpg, ..., ROOT/x.jpg); "
                                  "default: as written, relative to the CSV's folder", type="dir")


def stem_units(name: str, files: list[str], loader) -> dict:
    """``{<name>:<stem>: (path, items)}`` for the given files, read once."""
    out: dict = {}
    for f in files:
        key = file_stem_key(name, f)
        if key in out:
            raise NegationClipError(f"two {name} files share the stem {key.split(':', 1)[1]!r}: "
                                    f"{out[key][0]} and {f}")
        out[key] = (f, loader(f))
    return out


def _units(inputs: dict) -> dict:
    from ...data.negbench import load_negbench_mcq

    return stem_units("negbench-mcq", inputs["negbench_mcq"], load_negbench_mcq)


def _run(bundle, payload, inputs: dict, ctx) -> dict:
    from ..negbench import evaluate_negbench_mcq

    path, items = payload
    return evaluate_negbench_mcq(bundle, items, inputs.get("negbench_images"), source=path,
                                 limit=ctx.limit, mapping=inputs.get("negbench_mcq_mapping") or "auto",
                                 tie_tol=ctx.tie_tol, **ctx.common())


BENCHMARK = Benchmark(
    name="negbench-mcq", title="NegBench multiple choice",
    summary="NegBench MCQ on its released CSVs (COCO, VOC2007, synthetic; binary MCQ too): "
            "total/positive/negative/hybrid accuracy, wrong-answer breakdown",
    official="mcq.py evaluate_model: torch.argmax over the options (first maximum); the "
             "released files put the answer at index 0",
    inputs=(Input("negbench_mcq", "NegBench MCQ CSV (repeat), e.g. COCO_val_mcq_llama3.1_rephrased.csv",
                  multiple=True, metavar="CSV"),
            IMAGES,
            Input("negbench_mcq_mapping", "wrong-answer type map: 'auto' (synthetic for files named "
                                          "*synthetic*, as NegBench), 'default', 'synthetic'",
                  type="str", default="auto", choices=("auto", "default", "synthetic"))),
    requires=("negbench_mcq",), units=_units, run=_run, task="image_caption_selection", rank=30)
