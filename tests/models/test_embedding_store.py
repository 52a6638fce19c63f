"""The memory-mapped embedding store: parallel per-rank shards, an index of key hashes built
without copying rows, reads through memory maps equal to the rows written, resumable builds."""

import hashlib
import multiprocessing as mp

import numpy as np
import pytest
import torch

from negationclip.models.embedding_store import (EmbeddingStore, StoreWriter, complete_shards,
                                                 merge_index, stored_hashes)
from negationclip.utils import NegationClipError

D = 8


def _rows(keys):
    """A deterministic embedding per key, independent of the store (the in-memory reference)."""
    out = []
    for k in keys:
        seed = int.from_bytes(hashlib.sha256(k.encode()).digest()[:4], "little")
        out.append(np.random.default_rng(seed).standard_normal(D).astype(np.float32))
    return np.stack(out)


def _write_rank(root, rank, keys, dtype, shard_size):
    with StoreWriter(root, D, rank=rank, dtype=dtype, shard_size=shard_size) as w:
        for i in range(0, len(keys), 5):  # batches of 5 as an embedding pass would
            w.add(keys[i: i + 5], torch.from_numpy(_rows(keys[i: i + 5])))


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_two_processes_write_one_store(tmp_path, dtype):
    keys = [f"images/{i:05d}.jpg" for i in range(53)] + ["crop.jpg#1,2,3,4"]
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_write_rank, args=(tmp_path, r, keys[r::2], dtype, 7)) for r in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0]
    names = complete_shards(tmp_path)
    assert {n[:6] for n in names} == {"r00000", "r00001"}
    shard_bytes = {n: (tmp_path / "shards" / n).stat().st_mtime_ns for n in names}
    assert merge_index(tmp_path) == len(keys)
    # merging wrote only the index: the shards are untouched
    assert {n: (tmp_path / "shards" / n).stat().st_mtime_ns for n in names} == shard_bytes
    store = EmbeddingStore(tmp_path)
    assert isinstance(store.hashes, np.memmap) and len(store) == len(keys)
    order = list(reversed(keys))
    got = store.get(order)
    want = torch.from_numpy(_rows(order).astype(dtype).astype(np.float32))
    assert got.dtype == torch.float32 and torch.equal(got, want)
    assert store.contains(["images/00003.jpg", "nope.jpg"]).tolist() == [True, False]
    with pytest.raises(NegationClipError, match="not in the embedding store, e.g. nope.jpg"):
        store.get(["images/00001.jpg", "nope.jpg"])


def test_resume_after_a_killed_build(tmp_path):
    keys = [f"{i}.png" for i in range(30)]
    w = StoreWriter(tmp_path, D, shard_size=8, dtype="float32")
    w.add(keys[:20], _rows(keys[:20]))  # 2 shards of 8 complete, 4 rows buffered...
    del w                                # ...and lost with the process (no close)
    done = stored_hashes(tmp_path)
    assert len(done) == 16
    # the resumed build embeds only what is not in a complete shard (plus a duplicate of 0.png)
    from negationclip.models.embedding_store import key_hashes
    todo = [k for k, h in zip(keys, key_hashes(keys)) if h not in set(done.tolist())]
    assert todo == keys[16:]
    with StoreWriter(tmp_path, D, shard_size=8, dtype="float32") as w:
        w.add(todo + ["0.png"], np.concatenate([_rows(todo), np.zeros((1, D), np.float32)]))
    assert len(complete_shards(tmp_path)) == 4  # new shards continue the sequence
    assert merge_index(tmp_path) == 30
    got = EmbeddingStore(tmp_path).get(keys)
    assert torch.equal(got, torch.from_numpy(_rows(keys)))  # 0.png keeps its first row


def test_bad_use_is_a_clear_error(tmp_path):
    with pytest.raises(NegationClipError, match="no embedding-store index"):
        EmbeddingStore(tmp_path)
    with pytest.raises(NegationClipError, match="dtype"):
        StoreWriter(tmp_path, D, dtype="int8")
    with pytest.raises(NegationClipError, match=r"expected \[2, 8\]"):
        StoreWriter(tmp_path, D).add(["a", "b"], np.zeros((2, 4), np.float32))


def test_cache_rows_stay_on_disk_and_read_like_a_tensor(tmp_path, monkeypatch):
    """The cache's result is memory-mapped rows: indexing reads only the rows asked for, and
    every way callers index a tensor gives what the whole tensor would."""
    from PIL import Image

    from negationclip.models import ImageEmbeddingCache, encode_images, open_image, tiny_clip_bundle
    from negationclip.models.embedding_store import StoredRows

    b = tiny_clip_bundle(seed=1)
    paths = []
    for i in range(6):
        p = tmp_path / f"{i}.png"
        Image.new("RGB", (20 + i, 24), (40 * i, 255 - 30 * i, 90)).save(p)
        paths.append(str(p))
    keys = paths + [str(tmp_path / "gone.png"), paths[2]]
    res = ImageEmbeddingCache(tmp_path / "cache", shard_size=4).embed(b, keys, open_image)
    rows = res.embeddings
    assert isinstance(rows, StoredRows) and rows.shape == (8, b.embed_dim) and len(rows) == 8
    want = torch.nn.functional.normalize(encode_images(b, paths, normalize=False), dim=-1)
    full = torch.cat([want, torch.full((1, b.embed_dim), float("nan")), want[2:3]])
    assert torch.allclose(rows[:6], want, atol=1e-6) and torch.isnan(rows[6]).all()
    for idx in (3, -1, slice(1, 5), [7, 0, 2], torch.tensor([5, 1]), res.ok, np.array([0, 7])):
        assert torch.allclose(rows[idx], full[idx], atol=1e-6, equal_nan=True), idx
    assert torch.allclose(rows.select([2, 4])[1], want[4], atol=1e-6)
    assert torch.allclose(rows[res.ok] @ want.T, want[[0, 1, 2, 3, 4, 5, 2]] @ want.T, atol=1e-5)
    seen = []
    real = EmbeddingStore.gather
    monkeypatch.setattr(EmbeddingStore, "gather", lambda self, s, r, dim=None: seen.append(len(s)) or real(self, s, r, dim))
    rows[[1, 3]]
    assert seen == [2]  # a batch reads its rows, not the set


def test_an_old_safetensors_cache_is_imported_not_recomputed(tmp_path):
    import json as _json

    from PIL import Image
    from safetensors.torch import save_file

    from negationclip.models import ImageEmbeddingCache, tiny_clip_bundle

    b = tiny_clip_bundle(seed=1)
    p = tmp_path / "a.png"
    Image.new("RGB", (20, 20), "red").save(p)
    cache = ImageEmbeddingCache(tmp_path / "cache")
    ck = cache.content_key(str(p))[0]
    row = torch.arange(b.embed_dim, dtype=torch.float32)
    d = tmp_path / "cache" / cache.fingerprint(b)
    d.mkdir(parents=True)
    save_file({"embeddings": row[None]}, str(d / "shard-0123456789abcdef.safetensors"),
              metadata={"keys": _json.dumps([ck])})

    def load(k):
        raise AssertionError("a stored row was decoded again")
    res = ImageEmbeddingCache(tmp_path / "cache").embed(b, [str(p)], load, normalize=False)
    assert res.computed == 0 and torch.equal(res.embeddings[0], row)
