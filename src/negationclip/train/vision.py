"""Image features for a vision tower that trains (``--train-vision last-K|all``).

The embedding cache cannot serve a tower whose weights move, so images are encoded at every
step. With ``last-K`` the first ``L - K`` layers stay frozen: their output for an image is a
constant, so it is computed once (no grad) and kept in memory when all of them fit in the
budget; each step then runs only the last K layers, the post layer norm and the projection.
Otherwise (``all``, or too many images) the transformed pixels are kept (or, past the budget,
decoded again) and the whole tower runs.
"""

from __future__ import annotations

from typing import Sequence

import torch

from .methods.base import n_layers, parse_train_vision

BUDGET = 2 * 2 ** 30  # bytes of prefix states or pixels kept in memory


class _PixelStore:
    def __init__(self, transform, device: torch.device, n_images: int, budget: float = BUDGET):
        self.transform, self.device = transform, device
        side = int(getattr(transform, "image_size", 224))
        self.keep = n_images * 3 * side * side * 4 <= budget
        self.store: dict[str, object] = {}

    def get(self, keys: Sequence[str]):
        """The transform's output for ``keys``: a pixel tensor, or (SigLIP 2 NaFlex) its dict."""
        from ..models.crops import KeyLoader
        missing = [k for k in dict.fromkeys(keys) if k not in self.store]
        fresh = {}
        if missing:
            load = KeyLoader()  # whole images or crop keys, as the cache reads them
            out = self.transform([load(k) for k in missing])
            rows = ([{n: v[i] for n, v in out.items()} for i in range(len(missing))]
                    if isinstance(out, dict) else list(out))
            fresh = dict(zip(missing, rows))
        if self.keep:
            self.store.update(fresh)
            got = self.store
        else:
            got = {**self.store, **fresh}
        items = [got[k] for k in keys]
        if isinstance(items[0], dict):
            return {n: torch.stack([it[n] for it in items]).to(self.device) for n in items[0]}
        return torch.stack(items).to(self.device)


class LiveVision:
    """``encode(keys) -> [N, D]`` projected, unnormalised, differentiable image features. The
    model family splits its tower (``vision_prefix`` / ``vision_suffix``); a family that cannot
    (SigLIP 2's NaFlex) runs the whole tower."""

    def __init__(self, model, transform, device: torch.device, spec: str, n_images: int,
                 budget: float = BUDGET):
        from ..models.families import family_of

        self.model, self.device = model, device
        self.family = family_of(model)
        self.pixels = _PixelStore(transform, device, n_images, budget)
        kind, k = parse_train_vision(spec)
        depth = n_layers(model, "vision")
        self.split = depth - k if kind == "last" else 0
        tokens = self.family.vision_tokens(model)
        width = int(model.config.vision_config.hidden_size)
        self.use_prefix = (self.split > 0 and tokens is not None
                           and n_images * tokens * width * 4 <= budget)
        self.prefix: dict[str, torch.Tensor] = {}
        self.dtype = next(model.vision_model.parameters()).dtype

    @torch.no_grad()
    def warm(self, keys: Sequence[str], batch_size: int = 64, desc: str = "vision prefix states"
             ) -> dict[str, str]:
        """The frozen prefix's states of every key now, in batches: under ``last-K`` this pass
        replaces the frozen tower's embedding pass (whose embeddings the run would never read)
        and checks every image the same way. Returns ``{key: why}`` for unreadable images."""
        from ..models.cache import read_batches
        from ..models.crops import KeyLoader
        from ..models.families.siglip import _to_device
        from ..utils import progress

        failed: dict[str, str] = {}
        todo = [k for k in dict.fromkeys(keys) if k not in self.prefix]
        bar = progress(total=len(todo), desc=desc, unit="img",
                       disable=None if len(todo) > batch_size else True)
        for n_read, chunk, imgs in read_batches(todo, KeyLoader(), batch_size, failed):
            if imgs:
                px = _to_device(self.pixels.transform(imgs), self.device, self.dtype)
                h = self.family.vision_prefix(self.model, px, self.split)
                self.prefix.update(zip(chunk, h.float()))
            bar.update(n_read)
        bar.close()
        return failed

    def _prefix(self, keys: Sequence[str]) -> torch.Tensor:
        failed = self.warm(keys, batch_size=max(1, len(keys)))  # states not computed yet
        if failed:  # checked before training: the file went bad since
            from ..utils import NegationClipError
            raise NegationClipError(next(iter(failed.values())))
        return torch.stack([self.prefix[k] for k in keys]).to(self.device)

    def encode(self, keys: Sequence[str]) -> torch.Tensor:
        from ..models import image_features
        if not self.use_prefix:
            return image_features(self.model, self.pixels.get(keys))
        return self.family.vision_suffix(self.model, self._prefix(keys), self.split)
