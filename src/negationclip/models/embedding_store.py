"""A memory-mapped, sharded store of image embeddings for sets of millions of images.

Layout of one store folder (one per vision fingerprint)::

    shards/r00003-000012.npy       [rows, D] float16 or float32, one row per image
    shards/r00003-000012.keys.npy  [rows] uint64: the key hash of each row
    index/hashes.npy               [N] uint64, sorted: every stored key hash once
    index/shard.npy, index/row.npy [N] int32 / int64: where that key's row lives
    index/shards.json              shard file names, in the order ``index/shard.npy`` counts

Why this shape: at 10M images a ``dict[str, Tensor]`` or one [N, D] tensor is tens of GB of
RAM before the first step. Here the index is three numpy arrays read through memory maps
(20 bytes per image, no Python strings: keys are 64-bit blake2b hashes, looked up with
``searchsorted``), and rows are gathered from memory-mapped shards, so a batch costs RAM for
the batch. Writing is parallel: each rank (process, node) writes its own shards
(``StoreWriter(root, rank=r)``), each shard is complete-then-renamed, and ``merge_index``
builds the index from the small ``.keys.npy`` files without copying an embedding. A killed
build resumes: ``stored_hashes`` says which keys are already in complete shards.

64-bit hashes: the chance that two of 10M distinct keys collide is about 3e-6; a key is
identified by its hash alone (a collision would return the other image's row).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch

from ..utils.errors import NegationClipError

DTYPES = {"float16": np.float16, "float32": np.float32}
_SHARD = re.compile(r"^r(\d{5})-(\d{6})\.npy$")


def key_hash(key: str) -> int:
    """The 64-bit hash that names ``key`` in the store."""
    return int.from_bytes(hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest(), "little")


def key_hashes(keys: Iterable[str]) -> np.ndarray:
    return np.fromiter((key_hash(k) for k in keys), dtype=np.uint64)


def _atomic_save(path: Path, arr: np.ndarray) -> None:
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        np.save(f, arr)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def complete_shards(root: str | os.PathLike) -> list[str]:
    """Names of the shards whose rows and keys are both on disk (sorted: rank, then sequence)."""
    d = Path(root) / "shards"
    if not d.is_dir():
        return []
    return sorted(p.name for p in d.iterdir()
                  if _SHARD.match(p.name) and (d / (p.name[:-4] + ".keys.npy")).exists())


def stored_hashes(root: str | os.PathLike) -> np.ndarray:
    """Every key hash in a complete shard (sorted, unique): what a resumed build may skip."""
    d = Path(root) / "shards"
    parts = [np.load(d / (n[:-4] + ".keys.npy")) for n in complete_shards(root)]
    return np.unique(np.concatenate(parts)) if parts else np.zeros(0, np.uint64)


class StoreWriter:
    """Appends embeddings for one rank into fixed-size shards; ``close`` writes the last one.

    ``rank`` keeps ranks' shard names apart, so several processes or nodes may write into one
    store at once; a shard appears only when complete (the keys file is renamed in last)."""

    def __init__(self, root: str | os.PathLike, dim: int, *, rank: int = 0, dtype: str = "float16",
                 shard_size: int = 65536):
        if dtype not in DTYPES:
            raise NegationClipError(f"embedding store: dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
        self.dir = Path(root) / "shards"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.dim, self.rank, self.dtype, self.shard_size = dim, rank, DTYPES[dtype], shard_size
        taken = [int(m.group(2)) for n in os.listdir(self.dir)
                 if (m := _SHARD.match(n)) and int(m.group(1)) == rank]
        self._seq = max(taken) + 1 if taken else 0
        self._rows: list[np.ndarray] = []
        self._keys: list[np.ndarray] = []
        self._n = 0

    def add(self, keys: Sequence[str] | np.ndarray, emb: torch.Tensor | np.ndarray) -> None:
        """Rows ``emb`` [n, D] for ``keys`` (strings, or their :func:`key_hashes`)."""
        arr = emb.detach().to("cpu", torch.float32).numpy() if isinstance(emb, torch.Tensor) else np.asarray(emb)
        h = keys if isinstance(keys, np.ndarray) and keys.dtype == np.uint64 else key_hashes(keys)
        if arr.ndim != 2 or arr.shape[1] != self.dim or len(h) != arr.shape[0]:
            raise NegationClipError(f"embedding store: expected [{len(h)}, {self.dim}] rows, got "
                                    f"{list(arr.shape)}")
        self._rows.append(arr.astype(self.dtype, copy=False))
        self._keys.append(h)
        self._n += len(h)
        while self._n >= self.shard_size:
            self._flush(self.shard_size)

    def _flush(self, n: int) -> None:
        rows, keys = np.concatenate(self._rows), np.concatenate(self._keys)
        name = f"r{self.rank:05d}-{self._seq:06d}"
        _atomic_save(self.dir / f"{name}.npy", np.ascontiguousarray(rows[:n]))
        _atomic_save(self.dir / f"{name}.keys.npy", keys[:n])  # last: marks the shard complete
        self._seq += 1
        self._rows, self._keys = ([rows[n:]], [keys[n:]]) if n < len(keys) else ([], [])
        self._n = len(keys) - n

    def close(self) -> None:
        if self._n:
            self._flush(self._n)

    def __enter__(self) -> "StoreWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def merge_index(root: str | os.PathLike) -> int:
    """Index every complete shard (all ranks): sorted hashes -> (shard, row). Reads only the
    keys files; embeddings stay where the ranks wrote them. Returns the number of keys.
    A key stored twice (two ranks, or a resumed build) keeps its first row."""
    root = Path(root)
    names = complete_shards(root)
    hs, sh, rw = [], [], []
    for i, n in enumerate(names):
        k = np.load(root / "shards" / (n[:-4] + ".keys.npy"))
        hs.append(k)
        sh.append(np.full(len(k), i, np.int32))
        rw.append(np.arange(len(k), dtype=np.int64))
    h = np.concatenate(hs) if hs else np.zeros(0, np.uint64)
    s = np.concatenate(sh) if sh else np.zeros(0, np.int32)
    r = np.concatenate(rw) if rw else np.zeros(0, np.int64)
    order = np.argsort(h, kind="stable")
    h, s, r = h[order], s[order], r[order]
    first = np.ones(len(h), bool)
    first[1:] = h[1:] != h[:-1]
    d = root / "index"
    d.mkdir(parents=True, exist_ok=True)
    _atomic_save(d / "shard.npy", s[first])
    _atomic_save(d / "row.npy", r[first])
    tmp = d / f"shards.json.tmp{os.getpid()}"
    tmp.write_text(json.dumps(names))
    os.replace(tmp, d / "shards.json")
    _atomic_save(d / "hashes.npy", h[first])  # last: the index is whole once this appears
    return int(first.sum())


class EmbeddingStore:
    """Read side: ``store.get(keys)`` -> [n, D] float32 tensor, gathered through memory maps."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        d = self.root / "index"
        if not (d / "hashes.npy").exists():
            raise NegationClipError(f"{self.root}: no embedding-store index (index/hashes.npy); "
                                    "build it with merge_index")
        self.hashes = np.load(d / "hashes.npy", mmap_mode="r")
        self.shard = np.load(d / "shard.npy", mmap_mode="r")
        self.row = np.load(d / "row.npy", mmap_mode="r")
        self.names: list[str] = json.loads((d / "shards.json").read_text())
        self._maps: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.hashes)

    @property
    def dim(self) -> int:
        return int(self._map(0).shape[1]) if self.names else 0

    def _map(self, i: int) -> np.ndarray:
        m = self._maps.get(i)
        if m is None:
            m = self._maps[i] = np.load(self.root / "shards" / self.names[i], mmap_mode="r")
        return m

    def locate(self, hashes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Positions in the index of ``hashes`` and whether each is stored."""
        pos = np.searchsorted(self.hashes, hashes)
        pos = np.minimum(pos, max(len(self.hashes) - 1, 0))
        found = (self.hashes[pos] == hashes) if len(self.hashes) else np.zeros(len(hashes), bool)
        return pos, found

    def contains(self, keys: Sequence[str]) -> np.ndarray:
        return self.locate(key_hashes(keys))[1]

    def get(self, keys: Sequence[str] | np.ndarray) -> torch.Tensor:
        """Rows for ``keys`` (strings or uint64 hashes) as float32; a missing key is an error."""
        h = keys if isinstance(keys, np.ndarray) and keys.dtype == np.uint64 else key_hashes(keys)
        pos, found = self.locate(h)
        if not found.all():
            i = int(np.flatnonzero(~found)[0])
            which = keys[i] if not isinstance(keys, np.ndarray) else f"hash {int(h[i]):#x}"
            raise NegationClipError(f"{self.root}: {int((~found).sum())} key(s) not in the embedding "
                                    f"store, e.g. {which}")
        shard, row = np.asarray(self.shard[pos]), np.asarray(self.row[pos])
        out = np.empty((len(h), self.dim), np.float32)
        for s in np.unique(shard):
            sel = np.flatnonzero(shard == s)
            out[sel] = self._map(int(s))[row[sel]]
        return torch.from_numpy(out)
