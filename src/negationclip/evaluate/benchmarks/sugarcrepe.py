"""SugarCREPE (compositionality; the retention check of negation fine-tuning): 7 subsets,
accuracy per subset and their mean."""

from ..registry import Benchmark, Input


def _units(inputs: dict) -> dict:
    from ...data.sugarcrepe import load_sugarcrepe, sugarcrepe_files

    for p in sugarcrepe_files(inputs["sugarcrepe_dir"]).values():
        load_sugarcrepe(p)
    return {"sugarcrepe": inputs["sugarcrepe_dir"]}


def _run(bundle, folder, inputs: dict, ctx) -> dict:
    from ..sugarcrepe import evaluate_sugarcrepe

    return evaluate_sugarcrepe(bundle, folder, inputs["sugarcrepe_images"], limit=ctx.limit,
                               tie_tol=ctx.tie_tol, **ctx.common())


def _dumps(key: str, result: dict) -> list[tuple[str, dict]]:
    """One CLIP_benchmark dataset per subset (``sugar_crepe/add_att`` ...), as it names them."""
    return [(f"sugar_crepe/{name}", {k: v for k, v in m.items()})
            for name, m in (result.get("subsets") or {}).items()]


BENCHMARK = Benchmark(
    name="sugarcrepe", title="SugarCREPE",
    summary="SugarCREPE's 7 subsets (add/replace/swap): accuracy per subset and mean",
    official="CLIP_benchmark image_caption_selection: argmax over [caption, negative_caption] "
             "(first maximum, a tie is correct)",
    inputs=(Input("sugarcrepe_dir", "folder with the released add_att.json ... swap_obj.json",
                  type="dir"),
            Input("sugarcrepe_images", "folder with the COCO val2017 images they name", type="dir")),
    requires=("sugarcrepe_dir", "sugarcrepe_images"), units=_units, run=_run,
    task="image_caption_selection", dumps=_dumps, rank=55)
