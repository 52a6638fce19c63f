"""CLIP's symmetric contrastive loss, over the global batch when running distributed."""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def gather_with_grad(x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """All-gather ``x`` from every process; gradients flow back to each process's own slice.

    Returns the concatenation and the offset of this process's rows (open_clip's
    ``gather_with_grad`` with ``local_loss=False``).
    """
    if not _distributed():
        return x, 0
    world, rank = dist.get_world_size(), dist.get_rank()
    sizes = [torch.zeros(1, dtype=torch.long, device=x.device) for _ in range(world)]
    dist.all_gather(sizes, torch.tensor([x.shape[0]], device=x.device))
    sizes = [int(s.item()) for s in sizes]
    maxn = max(sizes)
    padded = torch.zeros((maxn, *x.shape[1:]), dtype=x.dtype, device=x.device)
    padded[: x.shape[0]] = x
    gathered = [torch.zeros_like(padded) for _ in range(world)]
    dist.all_gather(gathered, padded.detach())
    parts = [g[:n] for g, n in zip(gathered, sizes)]
    parts[rank] = x  # keep the graph for the local slice
    return torch.cat(parts, dim=0), sum(sizes[:rank])


def contrastive_loss(image_emb: torch.Tensor, text_emb: torch.Tensor,
                     logit_scale: torch.Tensor | float, *,
                     extra_text_emb: torch.Tensor | None = None,
                     normalize: bool = True) -> torch.Tensor:
    """Symmetric InfoNCE between row-aligned image and text embeddings.

    ``extra_text_emb`` are additional text negatives (e.g. the un-negated caption as a hard
    negative for its own image): they enter the image->text softmax only. Under
    torch.distributed the logits span the global batch, and the result equals a
    single-process loss on the concatenated batch (each process's loss is the global mean,
    so DDP's gradient averaging gives the single-process gradient).
    """
    if normalize:
        image_emb = F.normalize(image_emb, dim=-1)
        text_emb = F.normalize(text_emb, dim=-1)
        if extra_text_emb is not None:
            extra_text_emb = F.normalize(extra_text_emb, dim=-1)
    all_img, _ = gather_with_grad(image_emb)
    all_txt, _ = gather_with_grad(text_emb)
    scale = logit_scale if isinstance(logit_scale, torch.Tensor) else torch.tensor(logit_scale)
    logits_i2t = scale * all_img @ all_txt.t()
    if extra_text_emb is not None:
        all_extra, _ = gather_with_grad(extra_text_emb)
        logits_i2t = torch.cat([logits_i2t, scale * all_img @ all_extra.t()], dim=1)
    labels = torch.arange(all_img.shape[0], device=all_img.device)
    loss_i2t = F.cross_entropy(logits_i2t, labels)
    loss_t2i = F.cross_entropy(scale * all_txt @ all_img.t(), labels)
    loss = (loss_i2t + loss_t2i) / 2
    if _distributed():
        # DDP averages gradients over processes; every process computed the same global loss,
        # and each holds the graph only for its own rows, so scale to make the sum exact.
        loss = loss * dist.get_world_size()
    return loss
