"""The one image-embedding cache, shared by training and every benchmark.

The vision tower is frozen in NegationCLIP fine-tuning, so its output for an image is a
constant: computing it once is exact. Embeddings are stored per fingerprint of (vision
weights, preprocessing, dtype) in a memory-mapped :mod:`.embedding_store` (fixed-size shards,
an index of key hashes), appended as they are computed, so a killed run resumes where it
stopped, a changed model never reads stale vectors, and 10M images cost RAM for a batch.

An entry belongs to the file's bytes, not its path: a key ``path`` (or ``path#x,y,w,h``) is
stored as ``b2:<content hash>:<size>`` (+ ``#x,y,w,h``), so an image overwritten at the same
path, or a NegWorld rebuilt in the same folder, can never be served an old embedding, and
identical files share one. Hashing reads the file but never decodes it; the hash is memoised
per (path, size, mtime_ns, ctime_ns, inode) in ``file_hashes/`` and trusted only when the
file's timestamps are at least 2 s older than the memo (git's "racy clean" rule: a rewrite within
the file system's timestamp granularity is re-hashed, not trusted).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..utils.errors import NegationClipError
from ..utils.io import atomic_write_bytes
from ..utils.progress import progress
from .embedding_store import (DTYPES, EmbeddingStore, StoredRows, StoreWriter, complete_shards,
                              indexed_shards, key_hashes, merge_index)
from .encode import encode_pixels
from .load import ClipBundle


def default_cache_root() -> Path:
    env = os.environ.get("NEGATIONCLIP_CACHE")
    if env:
        return Path(env) / "image_embeddings"
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "negationclip" / "image_embeddings"


def vision_fingerprint(bundle: ClipBundle) -> str:
    """A hash of everything that determines an image embedding."""
    h = hashlib.blake2b(digest_size=12)
    prefixes = bundle.family.vision_prefixes
    for name, t in sorted(bundle.model.state_dict().items()):
        if name.startswith(prefixes):
            h.update(name.encode())
            h.update(str(tuple(t.shape)).encode())
            h.update(t.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    h.update(bundle.transform.fingerprint().encode())
    h.update(str(bundle.dtype).encode())
    return h.hexdigest()


_RACY_NS = 2_000_000_000  # a stat memo is trusted only for files older than this when recorded


def bytes_content_key(data: bytes) -> str:
    """The content key of an image's bytes: the same as a file holding those bytes gets."""
    return f"b2:{hashlib.blake2b(data, digest_size=16).hexdigest()}:{len(data)}"


def _stat_sig(st: os.stat_result) -> list[int]:
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]


def split_key(key: str) -> tuple[str | None, str]:
    """(file path, suffix) of a cache key: ``path`` -> (path, ""), ``path#x,y,w,h`` ->
    (path, "#x,y,w,h"); (None, "") when no existing file backs the key."""
    if os.path.isfile(key):
        return key, ""
    path, sep, rest = key.rpartition("#")
    if sep and path and os.path.isfile(path):
        return path, sep + rest
    return None, ""


@dataclass
class EmbeddingResult:
    #: [N, D] float32, normalised when asked; rows of failed images are NaN. An on-disk cache
    #: gives :class:`~negationclip.models.embedding_store.StoredRows` (rows stay memory-mapped
    #: until indexed, so a batch costs RAM for the batch); ``root=False`` gives a tensor.
    embeddings: torch.Tensor | StoredRows
    failed: dict[str, str] = field(default_factory=dict)  # key -> reason
    ok: torch.Tensor | None = None      # [N] bool
    computed: int = 0                   # how many were encoded now (the rest came from disk)
    #: [N] uint64: each key's row in the store under its content key (0: not stored); with
    #: :meth:`ImageEmbeddingCache.open_store` a caller can read rows later without the keys
    store_hashes: np.ndarray | None = None


def read_batches(keys: Sequence[str], load: Callable[[str], Image.Image], batch_size: int,
                 failed: dict[str, str]) -> Iterator[tuple[int, list[str], list[Image.Image]]]:
    """``(keys read, keys loaded, images)`` per batch of ``keys``; a key ``load`` cannot read
    goes to ``failed`` (key -> why) instead: the one place batches of images are read and
    checked (the embedding pass, the live tower's prefix pass)."""
    for s in range(0, len(keys), batch_size):
        chunk, imgs = [], []
        for k in keys[s: s + batch_size]:
            try:
                imgs.append(load(k))
                chunk.append(k)
            except NegationClipError as e:
                failed[k] = str(e)
        yield len(keys[s: s + batch_size]), chunk, imgs


class ImageEmbeddingCache:
    """``cache.embed(bundle, keys, load)``: embeddings for ``keys``, computing only the misses.

    ``keys`` name images (a path, or ``path#x,y,w,h`` for a crop); ``load(key)`` returns a PIL
    image or raises NegationClipError (a counted failure, retried next time). ``load`` must be a
    function of the file's bytes and the key only (it is: ``open_image`` and crops of it).
    Entries are keyed by file content (see the module doc); a key that no existing file backs
    (e.g. a name a custom ``load`` resolves) is encoded every time and never stored.
    ``root=None`` uses ``$NEGATIONCLIP_CACHE`` or ``~/.cache/negationclip``; ``root=False``
    keeps embeddings in memory only.

    Storage: one :mod:`~negationclip.models.embedding_store` per vision fingerprint
    (``<root>/<fingerprint>/``): rows appended in ``shard_size`` shards (``dtype`` float32, exact;
    float16 halves the disk for a rounding of ~1e-3), found through a sorted index of content
    key hashes, read through memory maps. A killed run leaves complete shards that the next
    call indexes and skips (resumable); under torch.distributed ``embed(..., distributed=True)``
    has every rank encode its share of the misses into its own shards, then rank 0 indexes them
    all (no row is copied). Caches written by earlier versions (``shard-*.safetensors``) are
    imported into the store once.
    """

    def __init__(self, root: str | os.PathLike | None | bool = None, shard_size: int = 4096,
                 dtype: str = "float32"):
        self.root = None if root is False else Path(root) if root else default_cache_root()
        self.shard_size = shard_size
        if dtype not in DTYPES:
            raise NegationClipError(f"image-embedding cache: dtype must be one of {sorted(DTYPES)}, "
                                    f"got {dtype!r}")
        self.dtype = dtype
        self._mem: dict[str, dict[str, torch.Tensor]] = {}  # root=False only
        self._fp_cache: dict[int, tuple[int, str]] = {}
        self._hashes: dict[str, list] | None = None  # path -> [size, mtime, ctime, ino, hash, at]
        self._pending_hashes: list[dict] = []
        self._hashed_now: dict[str, tuple[str, list[int]]] = {}
        self.hashed = 0  # files read to hash by this object (the rest came from the memo)

    # --- content keys -----------------------------------------------------------------------
    def _memo(self) -> dict[str, list]:
        if self._hashes is None:
            self._hashes = {}
            d = self.root / "file_hashes" if self.root is not None else None
            for f in sorted(d.glob("hashes-*.json")) if d is not None and d.is_dir() else ():
                try:
                    recs = json.loads(f.read_text())
                except (OSError, ValueError):  # a damaged memo only costs re-hashing
                    continue
                for r in recs if isinstance(recs, list) else ():
                    if (isinstance(r, dict) and isinstance(r.get("s"), list) and len(r["s"]) == 6
                            and r.get("p") and (r["p"] not in self._hashes
                                                or self._hashes[r["p"]][5] < r["s"][5])):
                        self._hashes[r["p"]] = r["s"]
        return self._hashes

    def file_hash(self, path: str) -> tuple[str, list[int]] | None:
        """``(content hash, stat signature)`` of a file, or None if it cannot be read."""
        try:
            st = os.stat(path)
        except OSError:
            return None
        sig = _stat_sig(st)
        memo = self._memo()
        path = os.path.abspath(path)
        m = memo.get(path)
        if m is not None and m[:4] == sig and sig[2] < m[5] - _RACY_NS:  # ctime: any change
            return m[4], sig
        now = self._hashed_now.get(path)
        if now is not None and now[1] == sig:  # hashed earlier in this call (crops of one file)
            return now
        h = hashlib.blake2b(digest_size=16)
        try:
            with open(path, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
        except OSError:
            return None
        self.hashed += 1
        digest = h.hexdigest()
        self._hashed_now[path] = (digest, sig)
        rec = sig + [digest, time.time_ns()]
        memo[path] = rec  # recorded later than before: trusted once the file is 2 s older
        self._pending_hashes.append({"p": path, "s": rec})
        return digest, sig

    def content_key(self, key: str) -> tuple[str | None, str | None, list[int] | None]:
        """(stored key, file path, stat signature) of a key; stored key None: not cacheable."""
        path, suffix = split_key(key)
        if path is None:
            return None, None, None
        got = self.file_hash(path)
        if got is None:
            return None, path, None
        digest, sig = got
        return f"b2:{digest}:{sig[0]}{suffix}", path, sig

    def _flush_hashes(self) -> None:
        # one new file per flush (written whole, then renamed): concurrent processes never
        # interleave, and a killed run leaves no torn record
        if self.root is not None and self._pending_hashes:
            atomic_write_bytes(self.root / "file_hashes" / f"hashes-{uuid.uuid4().hex[:16]}.json",
                               json.dumps(self._pending_hashes).encode())
        self._pending_hashes = []

    def _fingerprint(self, bundle: ClipBundle) -> str:
        return vision_fingerprint(bundle)

    def fingerprint(self, bundle: ClipBundle) -> str:
        """The vision fingerprint ``bundle``'s embeddings are stored under."""
        return self._fingerprint(bundle)

    def open_store(self, fp: str) -> EmbeddingStore | None:
        """The store of fingerprint ``fp`` as it is now (None: nothing stored, or ``root=False``).
        Complete shards that no index covers yet (a killed run's, another process's) are
        indexed first."""
        if self.root is None:
            return None
        d = self.root / fp
        self._import_legacy(d)
        names = complete_shards(d)
        if not names:
            return None
        if set(names) - set(indexed_shards(d)):
            merge_index(d)
        return EmbeddingStore(d)

    def _import_legacy(self, d: Path) -> None:
        """Shards of the earlier safetensors layout become store shards (once)."""
        old = sorted(d.glob("shard-*.safetensors")) if d.is_dir() else []
        if not old:
            return
        done_f = d / "legacy_imported.json"
        try:
            done = set(json.loads(done_f.read_text()))
        except (OSError, ValueError):
            done = set()
        todo = [p for p in old if p.name not in done]
        if not todo:
            return
        from safetensors import safe_open
        writer = None
        for shard in todo:
            try:
                with safe_open(str(shard), framework="pt") as f:
                    keys = json.loads(f.metadata()["keys"])
                    emb = f.get_tensor("embeddings")
            except Exception:  # a shard from a crash mid-write: its images are encoded again
                continue
            if writer is None:
                writer = StoreWriter(d, emb.shape[1], dtype=self.dtype, shard_size=self.shard_size)
            writer.add(keys, emb)
        if writer is not None:
            writer.close()
        atomic_write_bytes(done_f, json.dumps(sorted(done | {p.name for p in todo})).encode())

    def embed(self, bundle: ClipBundle, keys: Sequence[str], load: Callable[[str], Image.Image], *,
              batch_size: int = 64, desc: str = "image embeddings", normalize: bool = True,
              distributed: bool = False, content_keys: dict[str, str] | None = None
              ) -> EmbeddingResult:
        """Embeddings of ``keys`` (see the class doc). ``distributed``: every process of an
        initialised torch.distributed group calls this with the same keys; each encodes its
        share of the misses, and all return the same result. ``content_keys``: the content key
        of keys no file backs whose bytes the caller holds (:func:`bytes_content_key`: e.g. an
        image inside a webdataset tar), so they are stored and found like files."""
        import torch.distributed as dist

        rank, world = 0, 1
        if distributed and dist.is_available() and dist.is_initialized():
            rank, world = dist.get_rank(), dist.get_world_size()
        fp = self._fingerprint(bundle)
        uniq = list(dict.fromkeys(keys))
        self._hashed_now = {}
        stored: dict[str, str | None] = {}
        sigs: dict[str, tuple[str, list[int]]] = {}
        for k in uniq:
            if content_keys is not None and k in content_keys:
                stored[k] = content_keys[k]  # bytes in the caller's hands: they cannot change
                continue
            ck, path, sig = self.content_key(k)
            stored[k] = ck
            if ck is not None:
                sigs[k] = (path, sig)
        self._flush_hashes()
        table = self._mem.setdefault(fp, {}) if self.root is None else None
        if table is not None:
            have = {ck for ck in stored.values() if ck is not None and ck in table}
        else:
            store = self.open_store(fp)
            cks = [ck for ck in stored.values() if ck is not None]
            found = store.locate(key_hashes(cks))[1] if store is not None and cks else []
            have = {ck for ck, f in zip(cks, found) if f}
        fresh: dict[str, torch.Tensor] = {}  # this call's rows that are not (or may not be) stored
        owner: dict[str, str] = {}  # content key -> the key encoded for it in this call
        todo = []
        for k in uniq:  # identical files (same content key) are encoded once
            ck = stored[k]
            if ck is not None and (ck in have or ck in owner):
                continue
            if ck is not None:
                owner[ck] = k
            todo.append(k)
        mine = todo[rank::world]
        failed: dict[str, str] = {}
        shared: dict[str, torch.Tensor] = {}  # root=False: rows the other ranks need too
        writer = (StoreWriter(self.root / fp, bundle.embed_dim, rank=rank, dtype=self.dtype,
                              shard_size=self.shard_size) if table is None and mine else None)
        bar = progress(total=len(mine), desc=desc, unit="img",
                       disable=None if len(mine) > batch_size and rank == 0 else True)
        for n_read, chunk, imgs in read_batches(mine, load, batch_size, failed):
            if imgs:
                feats = encode_pixels(bundle, bundle.transform(imgs), normalize=False).cpu().float()
                put_k, put_r = [], []
                for k, row in zip(chunk, feats):
                    ck = stored[k]
                    if ck is None or (k in sigs and not self._unchanged(*sigs[k])):
                        fresh[k] = row  # no file behind it, or it changed while we read it
                    elif table is not None:
                        table[ck] = row
                        shared[ck] = row
                    else:
                        put_k.append(ck)
                        put_r.append(row)
                if put_k:
                    writer.add(put_k, torch.stack(put_r))
            bar.update(n_read)
        if writer is not None:
            writer.close()  # the last shard: complete before anyone indexes
        bar.close()
        if world > 1:  # everyone learns the others' failures and unstored rows, then rank 0
            # indexes every rank's shards (keys files only) and all read that index
            parts: list = [None] * world
            dist.all_gather_object(parts, (failed, {k: v.numpy() for k, v in fresh.items()},
                                           {k: v.numpy() for k, v in shared.items()} if world > 1 else {}))
            for f, fr, sh in parts:
                failed.update(f)
                fresh.update({k: torch.from_numpy(v) for k, v in fr.items()})
                if table is not None:
                    table.update({k: torch.from_numpy(v) for k, v in sh.items()})
            dist.barrier()
            if rank == 0 and table is None:
                self.open_store(fp)
            dist.barrier()
        for k in uniq:  # a key that shared its content with a failed one fails alike
            o = owner.get(stored[k]) if stored[k] is not None else None
            if o is not None and o != k and o in failed:
                failed[k] = failed[o]

        def source(k: str) -> torch.Tensor | str | None:
            """The row of ``k`` this call has in hand, its content key (stored), or None."""
            row = fresh.get(k)
            if row is not None:
                return row
            ck = stored.get(k)
            if k in failed or ck is None:
                return None
            o = owner.get(ck)
            if o is not None and o in fresh:  # the file changed while its twin was read
                return fresh[o]
            return ck
        computed = len(todo) - len(failed)
        if table is not None:
            out = torch.full((len(keys), bundle.embed_dim), float("nan"), dtype=torch.float32)
            ok = torch.zeros(len(keys), dtype=torch.bool)
            for i, k in enumerate(keys):
                src = source(k)
                row = table.get(src) if isinstance(src, str) else src
                if row is not None:
                    out[i] = row
                    ok[i] = True
            if normalize:
                out[ok] = F.normalize(out[ok], dim=-1)
            return EmbeddingResult(out, failed, ok, computed=computed)
        store = self.open_store(fp)
        src_u = [source(k) for k in uniq]
        h_u = np.zeros(len(uniq), np.uint64)
        st = [i for i, x in enumerate(src_u) if isinstance(x, str)]
        if st:
            h_u[st] = key_hashes([src_u[i] for i in st])
        if store is not None:
            shard_u, row_u = store.where(h_u)
        else:
            shard_u, row_u = np.full(len(uniq), -1, np.int32), np.zeros(len(uniq), np.int64)
        h_u[shard_u < 0] = 0
        pos = {k: i for i, k in enumerate(uniq)}
        inv = np.fromiter((pos[k] for k in keys), dtype=np.int64, count=len(keys))
        overlay = {}
        for j, x in enumerate(src_u):
            if isinstance(x, torch.Tensor):
                overlay[j] = x
        ok_u = (shard_u >= 0) | np.isin(np.arange(len(uniq)), list(overlay))
        rows_overlay = ({i: overlay[u] for i, u in enumerate(inv.tolist()) if u in overlay}
                        if overlay else {})
        rows = StoredRows(store, shard_u[inv], row_u[inv], bundle.embed_dim, rows_overlay,
                          normalize=normalize)
        return EmbeddingResult(rows, failed, torch.from_numpy(ok_u[inv]), computed=computed,
                               store_hashes=h_u[inv])

    @staticmethod
    def _unchanged(path: str, sig: list[int]) -> bool:
        try:
            return _stat_sig(os.stat(path)) == sig
        except OSError:
            return False
