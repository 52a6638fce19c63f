"""A memory-mapped, sharded store of image embeddings for sets of millions of images.

Layout of one store folder (one per vision fingerprint)::

    shards/r00003-000012-9f3a01c2.npy       [rows, D] float16 or float32, one row per image
    shards/r00003-000012-9f3a01c2.keys.npy  [rows] uint64: the key hash of each row
    index/CURRENT                           the name of the index generation to read
    index/<gen>/hashes.npy                  [N] uint64, sorted: every stored key hash once
    index/<gen>/shard.npy, row.npy          [N] int32 / int64: where that key's row lives
    index/<gen>/shards.json                 shard file names, in the order ``shard.npy`` counts

A shard name is rank, sequence (per rank, in writing order) and a random tag, so two writers
that share a rank number (two independent runs on one cache) never overwrite each other. An
index is written whole into a new generation folder and switched to by replacing ``CURRENT``
(atomic), so a reader never sees half of two merges; generations other than the current one
are removed once a minute old (a reader that opened one keeps its memory maps).

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
import shutil
import time
import uuid
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch

from ..utils.errors import NegationClipError

DTYPES = {"float16": np.float16, "float32": np.float32}
_SHARD = re.compile(r"^r(\d{5})-(\d{6})-([0-9a-f]{8})\.npy$")
_OLD_INDEX_S = 60.0  # an index generation other than CURRENT is removed once this old


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
        self._tag = uuid.uuid4().hex[:8]
        self.written = 0  # rows written to complete shards by this writer
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
        name = f"r{self.rank:05d}-{self._seq:06d}-{self._tag}"
        _atomic_save(self.dir / f"{name}.npy", np.ascontiguousarray(rows[:n]))
        _atomic_save(self.dir / f"{name}.keys.npy", keys[:n])  # last: marks the shard complete
        self._seq += 1
        self.written += n
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
    gen = f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}"
    g = d / gen
    g.mkdir(parents=True)
    _atomic_save(g / "shard.npy", s[first])
    _atomic_save(g / "row.npy", r[first])
    (g / "shards.json").write_text(json.dumps(names))
    _atomic_save(g / "hashes.npy", h[first])
    tmp = d / f"CURRENT.tmp{os.getpid()}-{gen}"
    tmp.write_text(gen)
    os.replace(tmp, d / "CURRENT")  # the switch: readers see the old index or this one, whole
    _remove_old_generations(d)
    return int(first.sum())


def _remove_old_generations(d: Path) -> None:
    try:
        current = (d / "CURRENT").read_text().strip()
    except OSError:
        return
    now = time.time()
    for p in d.iterdir():
        if p.is_dir() and p.name != current:
            try:
                if now - p.stat().st_mtime > _OLD_INDEX_S:
                    shutil.rmtree(p, ignore_errors=True)
            except OSError:
                pass


def indexed_shards(root: str | os.PathLike) -> list[str]:
    """The shard names the current index covers ([] when there is no index)."""
    d = Path(root) / "index"
    try:
        return json.loads((d / (d / "CURRENT").read_text().strip() / "shards.json").read_text())
    except (OSError, ValueError):
        return []


class EmbeddingStore:
    """Read side: ``store.get(keys)`` -> [n, D] float32 tensor, gathered through memory maps."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        d = self.root / "index"
        for attempt in range(5):  # a concurrent merge may remove the generation just named
            try:
                g = d / (d / "CURRENT").read_text().strip()
                self.hashes = np.load(g / "hashes.npy", mmap_mode="r")
                self.shard = np.load(g / "shard.npy", mmap_mode="r")
                self.row = np.load(g / "row.npy", mmap_mode="r")
                self.names: list[str] = json.loads((g / "shards.json").read_text())
                break
            except FileNotFoundError:
                if not (d / "CURRENT").exists():
                    raise NegationClipError(f"{self.root}: no embedding-store index (index/CURRENT); "
                                            "build it with merge_index") from None
                if attempt == 4:
                    raise
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
        return torch.from_numpy(self.gather(shard, row))

    def where(self, hashes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(shard, row)`` of each hash: where its row lives; shard -1 where it is not stored.
        Shard numbers count ``self.names`` (fixed for this object: a later merge makes a new
        index, and the shard files themselves never change)."""
        pos, found = self.locate(np.asarray(hashes, np.uint64))
        if not len(self.hashes):
            return np.full(len(hashes), -1, np.int32), np.zeros(len(hashes), np.int64)
        shard = np.where(found, np.asarray(self.shard[pos]), -1).astype(np.int32)
        row = np.where(found, np.asarray(self.row[pos]), 0).astype(np.int64)
        return shard, row

    def gather(self, shard: np.ndarray, row: np.ndarray, dim: int | None = None) -> np.ndarray:
        """[n, D] float32 rows at ``(shard, row)``, read through the memory maps (shard -1: NaN)."""
        out = np.full((len(shard), self.dim if dim is None else dim), np.nan, np.float32)
        for s in np.unique(shard):
            if s < 0:
                continue
            sel = np.flatnonzero(shard == s)
            out[sel] = self._map(int(s))[row[sel]]
        return out


def _as_positions(idx, n: int) -> tuple[np.ndarray, bool]:
    """A tensor-style index (int, slice, list, bool mask, index tensor/array) over ``n`` rows ->
    (row positions, whether the result keeps the row axis)."""
    if isinstance(idx, torch.Tensor):
        idx = idx.cpu().numpy()
    if isinstance(idx, (int, np.integer)):
        i = int(idx)
        if not -n <= i < n:
            raise IndexError(f"index {i} is out of bounds for {n} rows")
        return np.array([i % n]), False
    if isinstance(idx, slice):
        return np.arange(n)[idx], True
    arr = np.asarray(idx)
    if arr.dtype == bool:
        if arr.shape != (n,):
            raise IndexError(f"a boolean mask over {n} rows has shape {arr.shape}")
        return np.flatnonzero(arr), True
    arr = arr.astype(np.int64).reshape(-1)
    if len(arr) and (arr.max() >= n or arr.min() < -n):
        raise IndexError(f"index out of bounds for {n} rows")
    return arr % max(n, 1), True


class StoredRows:
    """Image embeddings [N, D] that stay on disk: indexing gathers only the rows asked for.

    What ``ImageEmbeddingCache.embed`` returns for an on-disk cache, so training and evaluation
    over millions of images hold their batch, not the set. It reads like the tensor it stands
    for: ``rows[i]``, ``rows[[i, j]]``, ``rows[mask]``, ``rows[a:b]`` give float32 tensors
    (normalised when the cache was asked to normalise; NaN rows for failed images),
    ``len(rows)``, ``rows.shape``, ``rows.to(device)``; any other tensor use (``torch.allclose``,
    ``rows @ x``, ``rows.isnan()``) reads the whole set once (:meth:`materialize`).

    Per row it keeps where the row lives (shard number and row: 12 bytes), plus the few rows
    that are not stored (``overlay``: keys no file backs, or files changed while they were read).
    """

    def __init__(self, store: "EmbeddingStore | None", shard: np.ndarray, row: np.ndarray, dim: int,
                 overlay: dict[int, torch.Tensor] | None = None, normalize: bool = True,
                 device: torch.device | str | None = None, dtype: torch.dtype | None = None):
        self.store, self.shard, self.row, self.dim = store, shard, row, int(dim)
        self.overlay = overlay or {}
        self.normalize, self._device, self._dtype = normalize, device, dtype

    def __len__(self) -> int:
        return len(self.shard)

    @property
    def shape(self) -> torch.Size:
        return torch.Size([len(self), self.dim])

    def size(self, d: int | None = None):
        return self.shape if d is None else self.shape[d]

    @property
    def dtype(self) -> torch.dtype:
        return self._dtype or torch.float32

    @property
    def device(self) -> torch.device:
        return torch.device(self._device or "cpu")

    @property
    def ndim(self) -> int:
        return 2

    def to(self, *args, **kwargs) -> "StoredRows":
        """Rows gathered later come out on this device / in this dtype (nothing is read now)."""
        device, dtype = self._device, self._dtype
        for a in list(args) + list(kwargs.values()):
            if isinstance(a, torch.dtype):
                dtype = a
            elif isinstance(a, (torch.device, str)):
                device = a
        return StoredRows(self.store, self.shard, self.row, self.dim, self.overlay,
                          self.normalize, device, dtype)

    def float(self) -> "StoredRows":
        return self.to(torch.float32)

    def cpu(self) -> "StoredRows":
        return self.to("cpu")

    def gather(self, positions: np.ndarray) -> torch.Tensor:
        """[len(positions), D] rows (float32 unless ``to`` said otherwise)."""
        positions = np.asarray(positions, np.int64)
        if self.store is not None:
            out = self.store.gather(self.shard[positions], self.row[positions], self.dim)
        else:
            out = np.full((len(positions), self.dim), np.nan, np.float32)
        t = torch.from_numpy(out)
        if self.overlay:
            for j, p in enumerate(positions.tolist()):
                r = self.overlay.get(p)
                if r is not None:
                    t[j] = r
        if self.normalize and len(t):
            ok = ~torch.isnan(t).any(dim=1)
            if bool(ok.all()):
                t = torch.nn.functional.normalize(t, dim=-1)
            elif bool(ok.any()):
                t[ok] = torch.nn.functional.normalize(t[ok], dim=-1)
        if self._device is not None or self._dtype is not None:
            t = t.to(device=self._device, dtype=self._dtype)
        return t

    def __getitem__(self, idx) -> torch.Tensor:
        if isinstance(idx, tuple):  # rows first, then the tensor does the rest
            return self[idx[0]][(slice(None),) + idx[1:]] if len(idx) > 1 else self[idx[0]]
        pos, keep = _as_positions(idx, len(self))
        t = self.gather(pos)
        return t if keep else t[0]

    def select(self, positions: Sequence[int] | np.ndarray) -> "StoredRows":
        """The rows at ``positions``, still on disk (a view: nothing is read)."""
        positions = np.asarray(positions, np.int64).reshape(-1)
        overlay = ({j: self.overlay[p] for j, p in enumerate(positions.tolist()) if p in self.overlay}
                   if self.overlay else {})
        return StoredRows(self.store, self.shard[positions], self.row[positions], self.dim,
                          overlay, self.normalize, self._device, self._dtype)

    def materialize(self) -> torch.Tensor:
        """The whole [N, D] tensor (reads every row: for small sets and tests)."""
        return self.gather(np.arange(len(self)))

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    def __array__(self, dtype=None, copy=None):
        a = self.materialize().cpu().numpy()
        return a.astype(dtype) if dtype is not None else a

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        def real(x):
            if isinstance(x, StoredRows):
                return x.materialize()
            if isinstance(x, (list, tuple)):
                return type(x)(real(y) for y in x)
            return x
        return func(*real(args), **{k: real(v) for k, v in (kwargs or {}).items()})

    def __getattr__(self, name):  # any other tensor attribute: on the whole set
        if name.startswith("_") or name in ("store", "shard", "row", "dim", "overlay", "normalize"):
            raise AttributeError(name)
        return getattr(self.materialize(), name)

    def __matmul__(self, other):
        return self.materialize() @ other

    def __rmatmul__(self, other):
        return other @ self.materialize()

    def __repr__(self) -> str:
        return f"StoredRows({len(self)} x {self.dim}, memory-mapped)"
