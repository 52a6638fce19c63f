"""The family contract (see ``families/__init__``)."""

from __future__ import annotations

from typing import Any, Mapping

import torch
import torch.nn.functional as F


class Family:
    """Defaults are CLIP's; a family overrides what differs."""

    name: str = ""
    model_types: tuple[str, ...] = ()
    #: parameter-name prefixes of the text tower (trained by default) and the vision tower
    #: (frozen, fingerprinted by the image-embedding cache)
    text_prefixes: tuple[str, ...] = ()
    vision_prefixes: tuple[str, ...] = ()
    #: shared scalars that train with the text tower unless frozen (logit scale, bias)
    scalars: tuple[str, ...] = ("logit_scale",)
    #: the text-tower tokens must be padded to the context length (the model pools a fixed
    #: position, or was trained so): dynamic padding would change the embeddings
    fixed_padding: bool = False
    #: why the Stable Diffusion / CLIPSeg text-encoder swaps cannot take this family (None: they can)
    swap_refusal: str | None = None

    # --- features ---------------------------------------------------------------------
    def text_features(self, model, input_ids: torch.Tensor,
                      attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        raise NotImplementedError

    def image_features(self, model, pixels: torch.Tensor | Mapping[str, torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError

    def embed_dim(self, model) -> int:
        raise NotImplementedError

    # --- a vision tower split for --train-vision last-K (train/vision.py) -------------------
    def vision_tokens(self, model) -> int | None:
        """Tokens per image through the vision encoder; None: the family cannot split its
        tower (the whole tower then runs every step)."""
        return None

    def vision_embed(self, model, pixels) -> torch.Tensor:
        """The vision tower's input to its first encoder layer."""
        raise NotImplementedError

    def vision_head(self, model, hidden: torch.Tensor) -> torch.Tensor:
        """The last encoder layer's states -> projected image features (norm, pool, project)."""
        raise NotImplementedError

    def vision_prefix(self, model, pixels, split: int) -> torch.Tensor:
        """Hidden states after the first ``split`` encoder layers."""
        h = self.vision_embed(model, pixels)
        for layer in model.vision_model.encoder.layers[:split]:
            h = layer(h, None)
        return h

    def vision_suffix(self, model, hidden: torch.Tensor, split: int) -> torch.Tensor:
        """The remaining layers and the head: projected image features from ``vision_prefix``."""
        for layer in model.vision_model.encoder.layers[split:]:
            hidden = layer(hidden, None)
        return self.vision_head(model, hidden)

    def similarity(self, model, image_emb: torch.Tensor, text_emb: torch.Tensor) -> torch.Tensor:
        """The family's own image-text score of normalised embeddings, [I, T]."""
        return model.logit_scale.exp().float() * image_emb @ text_emb.T

    #: how the family turns a row's scores into a loss: ``softmax`` over the row's candidates
    #: (CLIP's InfoNCE) or ``sigmoid``, one binary problem per pair (SigLIP)
    pair_loss_kind: str = "softmax"

    def logit_bias(self, model) -> torch.Tensor | None:
        """The learned score bias (SigLIP), None where the score has none."""
        return None

    def choice_loss(self, scores: torch.Tensor, targets: torch.Tensor, scale: torch.Tensor,
                    bias: torch.Tensor | None = None) -> torch.Tensor:
        """One term of a training method: each row of ``scores`` ([R, C], usually cosines)
        against its candidates; ``targets`` is the positive column [R] or weights over the
        positives [R, C]. CLIP: softmax cross-entropy of ``scale * scores``."""
        return F.cross_entropy(scale * scores, targets)

    def two_way_loss(self, scores: torch.Tensor, row_targets: torch.Tensor,
                     col_targets: torch.Tensor, scale: torch.Tensor,
                     bias: torch.Tensor | None = None) -> torch.Tensor:
        """A symmetric term on one pair matrix (image->text and text->image). CLIP: the mean
        of the row softmax and the column softmax."""
        return (self.choice_loss(scores, row_targets, scale, bias)
                + self.choice_loss(scores.t(), col_targets, scale, bias)) / 2

    def loss(self, model, image_emb: torch.Tensor, text_emb: torch.Tensor, *,
             extra_text_emb: torch.Tensor | None = None,
             extra_image_emb: torch.Tensor | None = None) -> torch.Tensor:
        """The family's training loss (``world * loss`` under torch.distributed, see train/loss)."""
        raise NotImplementedError

    # --- loading / saving -------------------------------------------------------------
    def load(self, source: str, dtype: torch.dtype, local_only: bool, act: str | None) -> Any:
        """A ``ClipBundle`` for a Hugging Face folder or cached id of this family."""
        raise NotImplementedError

    def save(self, bundle, folder) -> None:
        """Write the family's own Hugging Face layout into ``folder`` (an empty temp dir)."""
        raise NotImplementedError

    def describe(self, model) -> str:
        t, v = model.config.text_config, model.config.vision_config
        return (f"{self.name} (vision {v.num_hidden_layers}x{v.hidden_size}, patch {v.patch_size}; "
                f"text {t.num_hidden_layers}x{t.hidden_size}, ctx {t.max_position_embeddings}; "
                f"embed {self.embed_dim(model)})")

