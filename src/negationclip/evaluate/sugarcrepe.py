"""SugarCREPE: is the true caption closer to the image than its hard negative?

As CLIP_benchmark's ``metrics/image_caption_selection.py`` with one image and two captions
``[caption, negative_caption]`` per instance: ``text_acc`` is ``argmax`` over the two captions
(first maximum, so a tie counts as correct), ``image_acc`` is trivially 1 (one image), ``acc``
= both = ``text_acc``. Per subset (``add_att`` ... ``swap_obj``) and the mean of the subsets'
``acc``. Beside, per subset and mean: ``accuracy_strict`` (caption above by more than
``tie_tol``) and ``ties``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from ..data.sugarcrepe import SUBSETS, load_sugarcrepe, sugarcrepe_files
from ..models import ClipBundle, ImageEmbeddingCache
from .images import check_missing, embed_keys, load_whole
from .metrics import TIE_TOL, pairwise_accuracy
from .negbench import _text_index
from .negrefcocog import _model_name


def evaluate_sugarcrepe(bundle: ClipBundle, folder: str | os.PathLike,
                        image_root: str | os.PathLike, *, cache: ImageEmbeddingCache | None = None,
                        batch_size: int = 64, max_missing: float = 0.05,
                        missing_out: str | os.PathLike | None = None, limit: int | None = None,
                        model_name: str | None = None, tie_tol: float = TIE_TOL) -> dict:
    """Accuracy per SugarCREPE subset found in ``folder`` and their mean; images are
    ``<image_root>/<filename>`` (COCO val2017)."""
    t0 = time.perf_counter()
    files = sugarcrepe_files(folder)
    subsets = {name: load_sugarcrepe(p)[:limit] if limit else load_sugarcrepe(p)
               for name, p in files.items()}
    root = Path(image_root)
    all_paths = [str(root / it.filename) for items in subsets.values() for it in items]
    emb = embed_keys(bundle, all_paths, load_whole, cache, batch_size=batch_size,
                     desc="SugarCREPE images")
    check_missing("sugarcrepe", emb.failed, len(emb.keys), max_missing, missing_out)
    per: dict[str, dict] = {}
    n_items = skipped = 0
    for name, items in subsets.items():
        paths = [str(root / it.filename) for it in items]
        keep = [i for i, p in enumerate(paths) if bool(emb.ok[emb.index[p]])]
        n_items += len(items)
        skipped += len(items) - len(keep)
        temb, tix = _text_index(bundle, [t for i in keep for t in (items[i].caption,
                                                                   items[i].negative_caption)])
        img = emb.rows([paths[i] for i in keep])
        pos = (img * temb[[tix[items[i].caption] for i in keep]]).sum(-1)
        neg = (img * temb[[tix[items[i].negative_caption] for i in keep]]).sum(-1)
        r = pairwise_accuracy(pos, neg, tol=tie_tol, official="first")
        per[name] = {"acc": r["accuracy_official"], "text_acc": r["accuracy_official"],
                     "image_acc": 1.0 if keep else None, "accuracy_strict": r["accuracy_strict"],
                     "ties": r["ties"], "total": r["total"]}

    def mean(key: str) -> float | None:
        vals = [v[key] for v in per.values() if v[key] is not None]
        return sum(vals) / len(vals) if vals else None

    elapsed = time.perf_counter() - t0
    return {"benchmark": "sugarcrepe", "model": _model_name(bundle, model_name),
            "accuracy": mean("acc"), "accuracy_official": mean("acc"),
            "accuracy_strict": mean("accuracy_strict"),
            "ties": sum(v["ties"] for v in per.values()),
            "total": sum(v["total"] for v in per.values()), "subsets": per,
            **{f"{name}_acc": per[name]["acc"] for name in per},
            "subsets_missing": [s for s in SUBSETS if s not in per], "tie_tol": tie_tol,
            "missing_images": len(emb.failed), "skipped": skipped,
            "items_per_second": n_items / elapsed if elapsed > 0 else None, "seconds": elapsed}
