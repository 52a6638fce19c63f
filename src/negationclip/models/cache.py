"""The one image-embedding cache, shared by training and every benchmark.

The vision tower is frozen in NegationCLIP fine-tuning, so its output for an image is a
constant: computing it once is exact. Embeddings are stored per fingerprint of (vision
weights, preprocessing, dtype) in safetensors shards, appended as they are computed, so a
killed run resumes where it stopped and a changed model never reads stale vectors.
"""

from __future__ import annotations

import hashlib
import json
import os
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


@dataclass
class EmbeddingResult:
    embeddings: torch.Tensor            # [N, D] float32; rows of failed images are NaN
    failed: dict[str, str] = field(default_factory=dict)  # key -> reason
    ok: torch.Tensor | None = None      # [N] bool
    computed: int = 0                   # how many were encoded now (the rest came from disk)


class ImageEmbeddingCache:
    """``cache.embed(bundle, keys, load)``: embeddings for ``keys``, computing only the misses.

    ``keys`` name images (a path, or ``path#x,y,w,h`` for a crop); ``load(key)`` returns a PIL
    image or raises NegationClipError (a counted failure, retried next time).
    ``root=None`` uses ``$NEGATIONCLIP_CACHE`` or ``~/.cache/negationclip``; ``root=False``
    keeps embeddings in memory only.
    """

    def __init__(self, root: str | os.PathLike | None | bool = None, shard_size: int = 4096):
        self.root = None if root is False else Path(root) if root else default_cache_root()
        self.shard_size = shard_size
        self._mem: dict[str, dict[str, torch.Tensor]] = {}
        self._fp_cache: dict[int, tuple[int, str]] = {}

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
        todo = list(dict.fromkeys(k for k in keys if k not in table))
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
                    table[k] = row
                    pending_k.append(k)
                    pending_r.append(row)
            if len(pending_k) >= self.shard_size:
                self._flush(fp, pending_k, pending_r)
                pending_k, pending_r = [], []
            bar.update(len(todo[s: s + batch_size]))
        self._flush(fp, pending_k, pending_r)
        bar.close()
        out = torch.full((len(keys), bundle.embed_dim), float("nan"), dtype=torch.float32)
        ok = torch.zeros(len(keys), dtype=torch.bool)
        for i, k in enumerate(keys):
            row = table.get(k)
            if row is not None:
                out[i] = row
                ok[i] = True
        if normalize:
            out[ok] = F.normalize(out[ok], dim=-1)
        return EmbeddingResult(out, failed, ok, computed=len(todo) - len(failed))
