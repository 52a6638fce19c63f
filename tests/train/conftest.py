"""A tiny captioned image set and a tiny CLIP, shared by the training tests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

COLOURS = ["red", "green", "blue", "yellow", "purple", "orange"]
RGB = {"red": (220, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 220),
       "yellow": (230, 230, 20), "purple": (140, 30, 160), "orange": (250, 140, 0)}
OBJECTS = ["hat", "dog", "tree", "car"]


def make_dataset(root: Path, n: int = 12) -> list[dict]:
    """``n`` small images and generation-layout records (one per image, all with 'affirmed')."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    recs = []
    for i in range(n):
        c = COLOURS[i % len(COLOURS)]
        o = OBJECTS[i % len(OBJECTS)]
        img = Image.new("RGB", (40, 36), RGB[c])
        for x in range(0, 40, 4 + i % 5):  # a per-image stripe pattern so images differ
            for y in range(36):
                img.putpixel((x, y), (i * 20 % 255, 255 - i * 13 % 255, 90))
        img.save(root / "images" / f"{i:03d}.png")
        # odd images also show another object (what hard-negative image mining looks for)
        cap = f"a {c} picture number {i}" + (f" and a {OBJECTS[(i + 1) % 4]}" if i % 2 else "")
        recs.append({"id": f"r{i}", "caption_id": i, "image_id": i, "image": f"{i:03d}.png",
                     "original": cap, "negated": f"{cap} with no {o}",
                     "affirmed": f"{cap} with a {o}", "object": o, "pipeline": "P1"})
    return recs


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models gain nothing from threads; on a shared 2-core machine they lose a lot."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture()
def dataset(tmp_path) -> tuple[Path, list[dict]]:
    recs = make_dataset(tmp_path / "data")
    path = tmp_path / "data" / "p1.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    return tmp_path / "data", recs


@pytest.fixture()
def tiny():
    from negationclip.models import tiny_clip_bundle
    return tiny_clip_bundle(seed=0, text_width=32, text_layers=1, vision_width=32,
                            vision_layers=1, embed_dim=16)
