"""NegWorld's balanced negation pairs: one text, two images differing only in the negated
object."""

from ..registry import Benchmark, Input


def _run(bundle, _payload, inputs: dict, ctx) -> dict:
    from ..negation_pairs import evaluate_negation_pairs

    return evaluate_negation_pairs(bundle, inputs["negation_pairs"], inputs.get("negation_pairs_root"),
                                   split=inputs.get("negation_pairs_split"), **ctx.common())


BENCHMARK = Benchmark(
    name="negation-pairs", title="NegWorld negation pairs",
    summary="NegWorld balanced pairs (accuracy, held-out phrasing accuracy)",
    official="negationclip's rule: sim(text, image) > sim(text, foil image), strict",
    inputs=(Input("negation_pairs", "negation_pairs.json of a NegWorld export"),
            Input("negation_pairs_root", "export root (default: the file's folder)", type="dir"),
            Input("negation_pairs_split", "only this split (default: all)", type="str")),
    requires=("negation_pairs",), run=_run, task="caption_image_selection",
    aliases=("pairs",), rank=90)
