"""Image-text retrieval (COCO 5k test by default): image->text and text->image R@1/5/10.

Input is Karpathy's ``dataset_coco.json`` (images of one split, all their captions; the image
is ``<image_root>/<filepath>/<filename>``) or a COCO captions file plus an optional image list
(one file name or image id per line; the image is ``<image_root>/<file_name>``).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import torch

from ..data.coco import load_coco_captions, load_karpathy
from ..models import ClipBundle, ImageEmbeddingCache, encode_text
from ..utils import NegationClipError
from .images import check_missing, embed_keys, load_whole
from .metrics import recall_at_k_i2t, recall_at_k_t2i
from .negrefcocog import _model_name


def _read_image_list(path: str | os.PathLike) -> list[str]:
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise NegationClipError(f"{path}: image list not found") from None
    return [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]


def retrieval_set(*, karpathy: str | os.PathLike | None = None, split: str = "test",
                  captions: str | os.PathLike | None = None,
                  image_list: str | os.PathLike | None = None, image_root: str | os.PathLike,
                  captions_per_image: int | None = None) -> tuple[list[str], list[str], list[int]]:
    """(image paths, texts, image index of each text)."""
    root = Path(image_root)
    images: list[str] = []
    texts: list[str] = []
    owner: list[int] = []
    if (karpathy is None) == (captions is None):
        raise NegationClipError("retrieval: give either a Karpathy split file or a COCO captions file")
    if karpathy is not None:
        entries = [e for e in load_karpathy(karpathy) if e.split == split]
        if not entries:
            raise NegationClipError(f"{karpathy}: no images in split {split!r}")
        for e in entries:
            caps = e.captions[:captions_per_image] if captions_per_image else e.captions
            images.append(str(root / e.filepath / e.filename))
            for c in caps:
                texts.append(c)
                owner.append(len(images) - 1)
        return images, texts, owner
    cc = load_coco_captions(captions)
    if image_list is not None:
        by_name = {im.file_name: im.id for im in cc.images.values()}
        ids = []
        for n, entry in enumerate(_read_image_list(image_list), 1):
            if entry in by_name:
                ids.append(by_name[entry])
            elif entry.isdigit() and int(entry) in cc.images:
                ids.append(int(entry))
            else:
                raise NegationClipError(f"{image_list}:{n}: {entry!r} is not an image (file name "
                                        f"or id) of {captions}")
    else:
        ids = sorted(cc.images)
    pos = {iid: i for i, iid in enumerate(ids)}
    images = [str(root / cc.images[iid].file_name) for iid in ids]
    count = [0] * len(ids)
    for c in cc.captions:
        i = pos.get(c.image_id)
        if i is None or (captions_per_image and count[i] >= captions_per_image):
            continue
        count[i] += 1
        texts.append(c.caption)
        owner.append(i)
    return images, texts, owner


def evaluate_retrieval(bundle: ClipBundle, karpathy: str | os.PathLike | None = None, *,
                       image_root: str | os.PathLike, split: str = "test",
                       captions: str | os.PathLike | None = None,
                       image_list: str | os.PathLike | None = None,
                       captions_per_image: int | None = None,
                       cache: ImageEmbeddingCache | None = None, batch_size: int = 64,
                       max_missing: float = 0.05, missing_out: str | os.PathLike | None = None,
                       model_name: str | None = None, benchmark: str = "coco-retrieval") -> dict:
    """``i2t_r1/5/10`` and ``t2i_r1/5/10`` as fractions, plus ``mean_recall``."""
    t0 = time.perf_counter()
    images, texts, owner = retrieval_set(karpathy=karpathy, split=split, captions=captions,
                                         image_list=image_list, image_root=image_root,
                                         captions_per_image=captions_per_image)
    emb = embed_keys(bundle, images, load_whole, cache, batch_size=batch_size,
                     desc=f"{benchmark} images")
    check_missing(benchmark, emb.failed, len(emb.keys), max_missing, missing_out)
    keep_img = [i for i, p in enumerate(images) if bool(emb.ok[emb.index[p]])]
    new_index = {old: new for new, old in enumerate(keep_img)}
    keep_txt = [j for j, o in enumerate(owner) if o in new_index]
    if not keep_img or not keep_txt:
        raise NegationClipError(f"{benchmark}: nothing to evaluate (no readable images with captions)")
    img = emb.rows([images[i] for i in keep_img])
    txt = encode_text(bundle, [texts[j] for j in keep_txt], show_progress=True)
    text_image = torch.tensor([new_index[owner[j]] for j in keep_txt], dtype=torch.long)
    sim = img @ txt.T  # [I, T]; 5k x 25k floats is 0.5 GB, fine for an evaluation machine
    out = {"benchmark": benchmark, "model": _model_name(bundle, model_name)}
    out |= recall_at_k_i2t(sim, text_image)
    out |= recall_at_k_t2i(sim, text_image)
    recalls = [v for k, v in out.items() if k.startswith(("i2t_r", "t2i_r"))]
    elapsed = time.perf_counter() - t0
    out |= {"mean_recall": sum(recalls) / len(recalls), "headline_metric": "t2i_r5",
            "images": len(keep_img), "texts": len(keep_txt), "total": len(keep_txt),
            "items_per_second": (len(images) + len(texts)) / elapsed if elapsed > 0 else None,
            "missing_images": len(emb.failed), "skipped_texts": len(texts) - len(keep_txt),
            "seconds": elapsed}
    return out
