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


def world_size() -> int:
    return dist.get_world_size() if _distributed() else 1


def _scale_grad(x: torch.Tensor, factor: float) -> torch.Tensor:
    """``x`` in the forward pass, ``factor * grad`` in the backward pass."""
    return x * factor + (x * (1.0 - factor)).detach()


def contrastive_loss(image_emb: torch.Tensor, text_emb: torch.Tensor,
                     logit_scale: torch.Tensor | float, *,
                     extra_text_emb: torch.Tensor | None = None,
                     extra_image_emb: torch.Tensor | None = None,
                     normalize: bool = True) -> torch.Tensor:
    """Symmetric InfoNCE between row-aligned image and text embeddings.

    ``extra_text_emb`` are additional text negatives (e.g. the un-negated caption as a hard
    negative for its own image): they enter the image->text softmax only.
    ``extra_image_emb`` likewise are additional image negatives for the text->image softmax
    (e.g. the same scene with the negated object present).

    Under torch.distributed the logits span the global batch. Each process computes the
    global loss but holds the graph only for its own rows, so the returned value is
    ``world_size * loss``: DDP-style gradient averaging then gives exactly the single-process
    gradient. The logit scale is shared by all rows, so its gradient is scaled by
    ``1 / world_size`` to stay exact too. Use ``loss_value`` for the true number to log.
    """
    if normalize:
        image_emb = F.normalize(image_emb, dim=-1)
        text_emb = F.normalize(text_emb, dim=-1)
        if extra_text_emb is not None:
            extra_text_emb = F.normalize(extra_text_emb, dim=-1)
        if extra_image_emb is not None:
            extra_image_emb = F.normalize(extra_image_emb, dim=-1)
    world = world_size()
    all_img, _ = gather_with_grad(image_emb)
    all_txt, _ = gather_with_grad(text_emb)
    scale = logit_scale if isinstance(logit_scale, torch.Tensor) else torch.tensor(
        logit_scale, device=all_img.device)
    if world > 1 and scale.requires_grad:
        scale = _scale_grad(scale, 1.0 / world)
    logits_i2t = scale * all_img @ all_txt.t()
    logits_t2i = logits_i2t.t()
    if extra_text_emb is not None:
        all_extra, _ = gather_with_grad(extra_text_emb)
        if all_extra.shape[0]:
            logits_i2t = torch.cat([logits_i2t, scale * all_img @ all_extra.t()], dim=1)
    if extra_image_emb is not None:
        all_extra_img, _ = gather_with_grad(extra_image_emb)
        if all_extra_img.shape[0]:
            logits_t2i = torch.cat([logits_t2i, scale * all_txt @ all_extra_img.t()], dim=1)
    labels = torch.arange(all_img.shape[0], device=all_img.device)
    loss_i2t = F.cross_entropy(logits_i2t, labels)
    loss_t2i = F.cross_entropy(logits_t2i, labels)
    loss = (loss_i2t + loss_t2i) / 2
    if world > 1:
        # DDP averages gradients over processes; every process computed the same global loss,
        # and each holds the graph only for its own rows, so scale to make the sum exact.
        loss = loss * world
    return loss


def sigmoid_loss(image_emb: torch.Tensor, text_emb: torch.Tensor,
                 logit_scale: torch.Tensor | float, logit_bias: torch.Tensor | float, *,
                 extra_text_emb: torch.Tensor | None = None,
                 extra_image_emb: torch.Tensor | None = None,
                 normalize: bool = True) -> torch.Tensor:
    """SigLIP's pairwise sigmoid loss (Zhai et al. 2023): every image-text pair of the global
    batch is a binary problem, +1 on the diagonal, -1 elsewhere, with a learned scale and bias;
    summed and divided by the number of images. ``extra_text_emb`` / ``extra_image_emb`` add
    negative pairs (label -1) for every image / text. Distributed as ``contrastive_loss``
    (returns ``world_size * loss``; the shared scalars' gradients scaled by ``1 / world``)."""
    if normalize:
        image_emb, text_emb = F.normalize(image_emb, dim=-1), F.normalize(text_emb, dim=-1)
    world = world_size()
    all_img, _ = gather_with_grad(image_emb)
    all_txt, _ = gather_with_grad(text_emb)
    dev = all_img.device
    scale = logit_scale if isinstance(logit_scale, torch.Tensor) else torch.tensor(logit_scale, device=dev)
    bias = logit_bias if isinstance(logit_bias, torch.Tensor) else torch.tensor(logit_bias, device=dev)
    if world > 1:
        scale = _scale_grad(scale, 1.0 / world) if scale.requires_grad else scale
        bias = _scale_grad(bias, 1.0 / world) if bias.requires_grad else bias
    logits = scale * all_img @ all_txt.t() + bias
    n = all_img.shape[0]
    labels = 2 * torch.eye(n, device=dev, dtype=logits.dtype) - 1
    loss = -F.logsigmoid(labels * logits).sum()
    if extra_text_emb is not None:
        if normalize:
            extra_text_emb = F.normalize(extra_text_emb, dim=-1)
        all_extra, _ = gather_with_grad(extra_text_emb)
        if all_extra.shape[0]:
            loss = loss - F.logsigmoid(-(scale * all_img @ all_extra.t() + bias)).sum()
    if extra_image_emb is not None:
        if normalize:
            extra_image_emb = F.normalize(extra_image_emb, dim=-1)
        all_extra_img, _ = gather_with_grad(extra_image_emb)
        if all_extra_img.shape[0]:
            loss = loss - F.logsigmoid(-(scale * all_extra_img @ all_txt.t() + bias)).sum()
    loss = loss / n
    return loss * world if world > 1 else loss


def positive_mask(targets: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """Which (row, column) pairs are positive: ``targets`` is each row's positive column [R] or
    weights over its positives [R, C] (a pair is positive where its weight is above 0)."""
    if targets.dim() == 1:
        mask = torch.zeros(shape, dtype=torch.bool, device=targets.device)
        mask[torch.arange(shape[0], device=targets.device), targets] = True
        return mask
    return targets > 0


def sigmoid_pairs_loss(logits: torch.Tensor, positive: torch.Tensor) -> torch.Tensor:
    """SigLIP's binary loss on a block of pairs: ``-log sigmoid(logit)`` for the positives,
    ``-log sigmoid(-logit)`` for the rest, summed and divided by the number of rows (as
    ``sigmoid_loss`` divides by the images). No gathering: the caller holds global rows."""
    sign = positive.to(logits.dtype) * 2 - 1
    return -F.logsigmoid(sign * logits).sum() / logits.shape[0]


def loss_value(loss: torch.Tensor) -> float:
    """The true (global) value of a loss returned by this module, for logging."""
    return float(loss.detach().float().item()) / world_size()


def _global_mean(total: torch.Tensor, n: int) -> torch.Tensor:
    """``total / n`` with ``n`` summed over processes, times the world size (the hinges
    below), so that averaging gradients over processes is exact."""
    count = torch.tensor([float(n)], device=total.device)
    world = world_size()
    if world > 1:
        dist.all_reduce(count, op=dist.ReduceOp.SUM)
    return total / count.clamp_min(1.0)[0] * world


def hard_negative_hinge(image_emb: torch.Tensor, text_emb: torch.Tensor,
                        hard_emb: torch.Tensor, owner: torch.Tensor, margin: float) -> torch.Tensor:
    """Mean of ``relu(margin - (cos(img, text) - cos(img, hard)))`` over hard negatives.

    ``owner[k]`` is the local row whose image/text the hard negative ``k`` belongs to: it asks
    that "X with no Y" beat "X with Y" by a margin for an image without Y, a direct signal the
    softmax alone gives only weakly. Over processes the mean is global (scaled like
    ``contrastive_loss``, so gradient averaging is exact).
    """
    img = F.normalize(image_emb, dim=-1)
    txt = F.normalize(text_emb, dim=-1)
    hard = F.normalize(hard_emb, dim=-1)
    pos = (img[owner] * txt[owner]).sum(-1)
    neg = (img[owner] * hard).sum(-1)
    return _global_mean(F.relu(margin - (pos - neg)).sum(), int(hard.shape[0]))


def prototype_hinge(text_emb: torch.Tensor, image_emb: torch.Tensor, negative_emb: torch.Tensor,
                    groups: list[int], margin: float) -> torch.Tensor:
    """Mean of ``relu(margin - cos(text_k, u_g))`` over rows k with a group g >= 0, where u_g is
    the unit mean of ``img - neg`` (unit embeddings, detached) over the rows of group g in the
    global batch (every process's rows).

    Row k is a negated caption ("X with no Y"), its image and a negative image with Y put in;
    the group is Y. One pair's ``img - neg`` also carries whatever else differs between the two
    images; the mean over the batch's rows negating the same Y keeps what they share (Y's
    direction), so this asks each "no Y" text to point away from Y itself. Groups with one row
    are left out (their mean is the pair itself). Group ids must mean the same on every process.
    """
    txt = F.normalize(text_emb, dim=-1)
    diff = (F.normalize(image_emb, dim=-1) - F.normalize(negative_emb, dim=-1)).detach()
    g = torch.tensor(groups, dtype=torch.long, device=txt.device)
    all_diff, _ = gather_with_grad(diff)
    all_g, _ = gather_with_grad(g)
    total, n = txt.new_zeros(()), 0
    for k in torch.unique(all_g[all_g >= 0]).tolist():
        members = all_g == k
        mine = (g == k).nonzero().flatten()
        if int(members.sum()) < 2 or mine.numel() == 0:
            continue
        u = F.normalize(all_diff[members].mean(0), dim=-1)
        total = total + F.relu(margin - txt[mine] @ u).sum()
        n += int(mine.numel())
    return _global_mean(total, n)


def keep_loss(text_emb: torch.Tensor, anchor_emb: torch.Tensor) -> torch.Tensor:
    """Mean of ``1 - cos(text, anchor)``: keeps texts (the original captions) where the base
    model put them, which is what its image-text retrieval rests on."""
    cos = (F.normalize(text_emb, dim=-1) * F.normalize(anchor_emb, dim=-1)).sum(-1)
    return _global_mean((1.0 - cos).sum(), int(cos.shape[0]))
