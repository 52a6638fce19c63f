"""The image-embedding cache never serves an embedding of other bytes than the file has now."""

from __future__ import annotations

import os

import numpy as np
import torch
from PIL import Image

from negationclip.models import ImageEmbeddingCache, encode_images, open_image, tiny_clip_bundle


def _write(path, seed, size=(40, 36)):
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path)


def _counting(fn):
    calls = []

    def load(k):
        calls.append(k)
        return fn(k)
    return load, calls


def test_overwritten_images_get_fresh_embeddings_even_with_same_size_and_mtime(tmp_path):
    b = tiny_clip_bundle(seed=4)
    paths = []
    for i in range(4):
        p = tmp_path / f"im{i}.png"
        _write(p, i)
        paths.append(str(p))
    cache = ImageEmbeddingCache(tmp_path / "cache")
    first = cache.embed(b, paths, open_image).embeddings
    stamps = [os.stat(p) for p in paths]
    for i, p in enumerate(paths):  # new pixels, same byte size, same timestamps
        _write(p, 100 + i)
        assert os.path.getsize(p) == stamps[i].st_size
        os.utime(p, ns=(stamps[i].st_atime_ns, stamps[i].st_mtime_ns))
    for c in (cache, ImageEmbeddingCache(tmp_path / "cache")):  # same object and a new one
        res = c.embed(b, paths, open_image)
        assert torch.allclose(res.embeddings, encode_images(b, paths), atol=1e-6)
        assert not torch.allclose(res.embeddings, first, atol=1e-3)


def test_a_hit_decodes_nothing_and_old_files_are_not_even_read(tmp_path, monkeypatch):
    from negationclip.models import cache as cache_mod

    b = tiny_clip_bundle(seed=4)
    paths = []
    for i in range(3):
        p = tmp_path / f"im{i}.png"
        _write(p, i)
        paths.append(str(p))
    first = ImageEmbeddingCache(tmp_path / "cache")
    first.embed(b, paths, open_image)
    assert first.hashed == 3
    # files changed within 2 s of being hashed are hashed again (a hit, still no decode) ...
    again = ImageEmbeddingCache(tmp_path / "cache")
    load, calls = _counting(open_image)
    assert again.embed(b, paths, load).computed == 0 and calls == [] and again.hashed == 3
    # ... older ones are trusted from the memo and not read at all
    monkeypatch.setattr(cache_mod, "_RACY_NS", 0)
    cache = ImageEmbeddingCache(tmp_path / "cache")
    load, calls = _counting(open_image)
    res = cache.embed(b, paths, load)
    assert calls == [] and res.computed == 0 and cache.hashed == 0 and bool(res.ok.all())


def test_crops_and_identical_files(tmp_path):
    b = tiny_clip_bundle(seed=5)
    a, c = tmp_path / "a.png", tmp_path / "copy.png"
    _write(a, 1, (60, 50))
    c.write_bytes(a.read_bytes())

    def load(k):
        path, _, box = k.rpartition("#")
        x, y, w, h = map(int, box.split(","))
        return open_image(path).crop((x, y, x + w, y + h))

    keys = [f"{a}#0,0,30,30", f"{c}#0,0,30,30", f"{a}#10,10,30,30"]
    cache = ImageEmbeddingCache(tmp_path / "cache")
    load1, calls = _counting(load)
    r = cache.embed(b, keys, load1)
    assert len(calls) == 2 and torch.equal(r.embeddings[0], r.embeddings[1])  # same bytes, same crop
    _write(a, 2, (60, 50))  # a changes, its copy does not
    r2 = ImageEmbeddingCache(tmp_path / "cache").embed(b, keys, load)
    assert torch.equal(r2.embeddings[1], r.embeddings[1])
    assert not torch.allclose(r2.embeddings[0], r.embeddings[0], atol=1e-3)
    assert torch.allclose(r2.embeddings[0], encode_images(b, [load(keys[0])])[0], atol=1e-6)


def test_keys_without_a_file_are_encoded_every_time_and_never_stored(tmp_path):
    b = tiny_clip_bundle(seed=6)
    colour = {"red": (255, 0, 0)}
    load, calls = _counting(lambda k: Image.new("RGB", (32, 32), colour[k]))
    cache = ImageEmbeddingCache(tmp_path / "cache")
    r1 = cache.embed(b, ["red", "red"], load)
    colour["red"] = (0, 0, 255)
    r2 = cache.embed(b, ["red"], load)
    assert calls == ["red", "red"] and bool(r1.ok.all()) and bool(r2.ok.all())
    assert not torch.allclose(r1.embeddings[0], r2.embeddings[0], atol=1e-3)
    assert not list((tmp_path / "cache").rglob("shards/*.npy"))


def test_missing_files_fail_and_share_failures(tmp_path):
    b = tiny_clip_bundle(seed=6)
    ok = tmp_path / "ok.png"
    _write(ok, 0)
    r = ImageEmbeddingCache(tmp_path / "c").embed(b, [str(ok), str(tmp_path / "gone.png")], open_image)
    assert r.ok.tolist() == [True, False] and list(r.failed) == [str(tmp_path / "gone.png")]


def test_rebuilding_negworld_with_another_seed_reuses_no_embedding(tmp_path):
    """The demo keeps ``out/image_cache`` while it rebuilds ``out/world``."""
    from negationclip.data.negworld import WorldConfig, build_world
    from negationclip.evaluate.valse import evaluate_valse

    b = tiny_clip_bundle(seed=7)
    world, cache_dir = tmp_path / "world", tmp_path / "image_cache"
    build_world(world, WorldConfig(images=40, seed=1), show_progress=False)
    piece = next(world.rglob("*existence*.json"))
    cache = ImageEmbeddingCache(cache_dir)
    evaluate_valse(b, piece, world / "images", cache=cache)
    build_world(world, WorldConfig(images=40, seed=2), overwrite=True, show_progress=False)
    piece = next(world.rglob("*existence*.json"))
    files = sorted({str(p) for p in (world / "images").iterdir()})
    expect = encode_images(b, files)
    for c in (cache, ImageEmbeddingCache(cache_dir)):
        got = c.embed(b, files, open_image).embeddings
        stale = int((~torch.isclose(got, expect, atol=1e-5).all(dim=1)).sum())
        assert stale == 0
