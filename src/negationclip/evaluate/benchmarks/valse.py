"""VALSE (Parcalabescu et al., ACL 2022): caption vs foil for the same image, one result per
piece file (``valse:existence`` first, the negation piece)."""

from pathlib import Path

from ...utils import NegationClipError
from ..registry import Benchmark, Input


def _units(inputs: dict) -> dict:
    from ...data.valse import load_valse
    from ..valse import piece_name, valse_pieces

    paths = list(valse_pieces(inputs["valse_dir"])) if inputs.get("valse_dir") else []
    paths += [Path(f) for f in inputs.get("valse_files") or []]
    out = {}
    for p in paths:
        load_valse(p)
        key = f"valse:{piece_name(p)}"
        if key in out and Path(out[key]) != p:
            raise NegationClipError(f"two VALSE files for piece {key[6:]!r}: {out[key]} and {p}")
        out[key] = str(p)
    return out


def _run(bundle, path, inputs: dict, ctx) -> dict:
    from ..valse import evaluate_valse

    return evaluate_valse(bundle, path, inputs["valse_images"], limit=ctx.limit,
                          mturk_min_votes=inputs.get("valse_min_votes"), tie_tol=ctx.tie_tol,
                          **ctx.common())


BENCHMARK = Benchmark(
    name="valse", title="VALSE",
    summary="every VALSE piece in --valse-dir/--valse-file (valse:existence first; "
            "valse:<piece> for one); valid items by default, all items beside",
    official="VALSE's lxmert_valse_eval.py: items with mturk caption votes >= 2, caption "
             "score > foil score (strict)",
    inputs=(Input("valse_dir", "folder of VALSE piece files (existence.json, ...)", type="dir"),
            Input("valse_files", "a single VALSE piece file (repeat), e.g. a NegWorld "
                                 "valse_existence.json", multiple=True, metavar="FILE", flag="--valse-file"),
            Input("valse_images", "folder with the images named by 'image_file'", type="dir"),
            Input("valse_min_votes", "score only items at least this many VALSE annotators "
                                     "validated (0: every item; 2 is VALSE's valid set)",
                  type="int", default=2)),
    requires=(("valse_dir", "valse_files"), "valse_images"), units=_units, run=_run,
    task="image_caption_selection", rank=20)
