"""The one image-embedding cache, shared by training and every benchmark.

The vision tower is frozen in NegationCLIP fine-tuning, so its output for an image is a
constant: computing it once is exact. Embeddings are stored per fingerprint of (vision
weights, preprocessing, dtype) in safetensors shards, appended as they are computed, so a
killed run resumes where it stopped and a changed model never reads stale vectors.

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
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from PIL import Image

from ..utils.errors import NegationClipError
from ..utils.io import atomic_write_bytes
from ..utils.progress import progress
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
    m = bundle.model
    for prefix, module in (("vision_model.", m.vision_model), ("visual_projection.", m.visual_projection)):
        for name, t in sorted(module.state_dict().items()):
            h.update((prefix + name).encode())
            h.update(str(tuple(t.shape)).encode())
            h.update(t.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    h.update(bundle.transform.fingerprint().encode())
    h.update(str(bundle.dtype).encode())
    return h.hexdigest()


_RACY_NS = 2_000_000_000  # a stat memo is trusted only for files older than this when recorded


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
    embeddings: torch.Tensor            # [N, D] float32; rows of failed images are NaN
    failed: dict[str, str] = field(default_factory=dict)  # key -> reason
    ok: torch.Tensor | None = None      # [N] bool
    computed: int = 0                   # how many were encoded now (the rest came from disk)


class ImageEmbeddingCache:
    """``cache.embed(bundle, keys, load)``: embeddings for ``keys``, computing only the misses.

    ``keys`` name images (a path, or ``path#x,y,w,h`` for a crop); ``load(key)`` returns a PIL
    image or raises NegationClipError (a counted failure, retried next time). ``load`` must be a
    function of the file's bytes and the key only (it is: ``open_image`` and crops of it).
    Entries are keyed by file content (see the module doc); a key that no existing file backs
    (e.g. a name a custom ``load`` resolves) is encoded every time and never stored.
    ``root=None`` uses ``$NEGATIONCLIP_CACHE`` or ``~/.cache/negationclip``; ``root=False``
    keeps embeddings in memory only.
    """

    def __init__(self, root: str | os.PathLike | None | bool = None, shard_size: int = 4096):
        self.root = None if root is False else Path(root) if root else default_cache_root()
        self.shard_size = shard_size
        self._mem: dict[str, dict[str, torch.Tensor]] = {}
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

    def _table(self, fp: str) -> dict[str, torch.Tensor]:
        if fp in self._mem:
            return self._mem[fp]
        table: dict[str, torch.Tensor] = {}
        if self.root is not None and (self.root / fp).is_dir():
            from safetensors import safe_open
            for shard in sorted((self.root / fp).glob("shard-*.safetensors")):
                try:
                    with safe_open(str(shard), framework="pt") as f:
                        keys = json.loads(f.metadata()["keys"])
                        emb = f.get_tensor("embeddings")
                except Exception:  # a shard from a crash mid-write is skipped and recomputed
                    continue
                for k, row in zip(keys, emb):
                    table[k] = row
        self._mem[fp] = table
        return table

    def _flush(self, fp: str, keys: list[str], rows: list[torch.Tensor]) -> None:
        if self.root is None or not keys:
            return
        from safetensors.torch import save
        data = save({"embeddings": torch.stack(rows).contiguous()},
                    metadata={"keys": json.dumps(keys)})
        atomic_write_bytes(self.root / fp / f"shard-{uuid.uuid4().hex[:16]}.safetensors", data)

    def embed(self, bundle: ClipBundle, keys: Sequence[str], load: Callable[[str], Image.Image], *,
              batch_size: int = 64, desc: str = "image embeddings", normalize: bool = True
              ) -> EmbeddingResult:
        fp = self._fingerprint(bundle)
        table = self._table(fp)
        uniq = list(dict.fromkeys(keys))
        self._hashed_now = {}
        stored: dict[str, str | None] = {}
        sigs: dict[str, tuple[str, list[int]]] = {}
        for k in uniq:
            ck, path, sig = self.content_key(k)
            stored[k] = ck
            if ck is not None:
                sigs[k] = (path, sig)
        self._flush_hashes()
        fresh: dict[str, torch.Tensor] = {}  # this call's rows that are not (or may not be) stored
        owner: dict[str, str] = {}  # content key -> the key encoded for it in this call
        todo = []
        for k in uniq:  # identical files (same content key) are encoded once
            ck = stored[k]
            if ck is not None and (ck in table or ck in owner):
                continue
            if ck is not None:
                owner[ck] = k
            todo.append(k)
        failed: dict[str, str] = {}
        pending_k: list[str] = []
        pending_r: list[torch.Tensor] = []
        bar = progress(total=len(todo), desc=desc, unit="img",
                       disable=None if len(todo) > batch_size else True)
        for s in range(0, len(todo), batch_size):
            chunk, imgs = [], []
            for k in todo[s: s + batch_size]:
                try:
                    imgs.append(load(k))
                    chunk.append(k)
                except NegationClipError as e:
                    failed[k] = str(e)
            if imgs:
                feats = encode_pixels(bundle, bundle.transform(imgs), normalize=False).cpu()
                for k, row in zip(chunk, feats):
                    ck = stored[k]
                    if ck is None or not self._unchanged(*sigs[k]):
                        fresh[k] = row  # no file behind it, or it changed while we read it
                        continue
                    table[ck] = row
                    pending_k.append(ck)
                    pending_r.append(row)
            if len(pending_k) >= self.shard_size:
                self._flush(fp, pending_k, pending_r)
                pending_k, pending_r = [], []
            bar.update(len(todo[s: s + batch_size]))
        self._flush(fp, pending_k, pending_r)
        bar.close()
        out = torch.full((len(keys), bundle.embed_dim), float("nan"), dtype=torch.float32)
        ok = torch.zeros(len(keys), dtype=torch.bool)
        for k in uniq:  # a key that shared its content with a failed one fails alike
            o = owner.get(stored[k]) if stored[k] is not None else None
            if o is not None and o != k and o in failed:
                failed[k] = failed[o]
        for i, k in enumerate(keys):
            row = fresh.get(k)
            ck = stored.get(k)
            if row is None and k not in failed and ck is not None:
                row = table.get(ck)
                if row is None and ck in owner:
                    row = fresh.get(owner[ck])
            if row is not None:
                out[i] = row
                ok[i] = True
        if normalize:
            out[ok] = F.normalize(out[ok], dim=-1)
        return EmbeddingResult(out, failed, ok, computed=len(todo) - len(failed))

    @staticmethod
    def _unchanged(path: str, sig: list[int]) -> bool:
        try:
            return _stat_sig(os.stat(path)) == sig
        except OSError:
            return False
