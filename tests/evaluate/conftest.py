import math
import zlib

import numpy as np
import pytest
from PIL import Image


def fabricate_image(path, width: int, height: int, seed_text: str) -> None:
    """A small blocky-noise image (different per name), big enough for the boxes it serves."""
    rng = np.random.default_rng(zlib.crc32(seed_text.encode()))
    blocks = rng.integers(0, 256, size=(6, 8, 3), dtype=np.uint8)
    im = Image.fromarray(blocks).resize((max(1, width), max(1, height)), Image.Resampling.NEAREST)
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path, quality=90)


def fabricate_for_boxes(root, records) -> dict:
    """One image per file name, sized to the furthest box corner of its records."""
    need: dict[str, tuple[int, int]] = {}
    for r in records:
        w, h = need.get(r["image"], (1, 1))
        for x, y, bw, bh in r["bbox_list"]:
            w, h = max(w, math.ceil(x + bw)), max(h, math.ceil(y + bh))
        need[r["image"]] = (w, h)
    for name, (w, h) in need.items():
        fabricate_image(root / name, w, h, name)
    return need


@pytest.fixture(scope="module")
def tiny_bundle():
    import torch

    from negationclip.models import tiny_clip_bundle

    torch.set_num_threads(1)
    return tiny_clip_bundle(seed=0)
