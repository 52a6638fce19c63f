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
