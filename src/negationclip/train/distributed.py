"""Process-group set-up and gradient averaging for `torchrun` / `accelerate launch`.

Both launchers set RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR / MASTER_PORT; we read those
and start a process group ourselves (nccl on CUDA, gloo on CPU). Gradients are averaged with
one coalesced all-reduce per optimizer step, which is what DDP computes, without DDP's wrapper
(the model's forward here is ``text_features``, not ``model.forward``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    started_here: bool = False  # we created the process group (and destroy it at the end)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1


def setup(device: str = "auto") -> tuple[DistInfo, torch.device]:
    """Join the process group the launcher describes (if any) and pick this process's device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if dist.is_available() and dist.is_initialized():
        info = DistInfo(dist.get_rank(), dist.get_world_size(), local, False)
    elif world > 1:
        use_cuda = torch.cuda.is_available() and device in ("auto", "cuda") or device.startswith("cuda")
        backend = "nccl" if use_cuda else "gloo"
        if use_cuda:
            torch.cuda.set_device(local)
        dist.init_process_group(backend=backend, rank=rank, world_size=world)
        info = DistInfo(rank, world, local, True)
    else:
        info = DistInfo()
    return info, pick_device(device, info)


def pick_device(device: str, info: DistInfo) -> torch.device:
    if device == "auto":
        return torch.device(f"cuda:{info.local_rank}" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and info.active:
        return torch.device(f"cuda:{info.local_rank}")
    return torch.device(device)


def teardown(info: DistInfo) -> None:
    if info.started_here and dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    if info.active:
        dist.barrier()


def average_gradients(params: list[torch.nn.Parameter], info: DistInfo) -> None:
    """Average ``.grad`` over processes with one flat all-reduce (as DDP would)."""
    if not info.active:
        return
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= info.world
    off = 0
    for g in grads:
        n = g.numel()
        g.copy_(flat[off: off + n].view_as(g))
        off += n


def all_sum(x: float | int, info: DistInfo, device: torch.device) -> float:
    if not info.active:
        return float(x)
    t = torch.tensor([float(x)], dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return float(t.item())


def any_true(flag: bool, info: DistInfo, device: torch.device) -> bool:
    return all_sum(1.0 if flag else 0.0, info, device) > 0
