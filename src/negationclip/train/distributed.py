"""Process-group set-up and gradient averaging for `torchrun`, `accelerate launch`, SLURM
(`srun`) and MPI launchers.

torchrun and accelerate set RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR / MASTER_PORT; under
`srun` (one task per GPU) the ranks come from SLURM_PROCID / SLURM_LOCALID / SLURM_NTASKS, read
with the precedence of open_clip's `open_clip_train/distributed.py` (`world_info_from_env`),
and the master address, when the job script does not export MASTER_ADDR, is the first host of
SLURM_JOB_NODELIST. We start a process group ourselves (nccl on CUDA, gloo on CPU). Gradients are averaged with
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


def _first_env(env, names: tuple[str, ...], default: int) -> int:
    for v in names:
        if v in env:
            return int(env[v])
    return default


def world_info_from_env(env=None) -> tuple[int, int, int]:
    """``(local_rank, rank, world_size)`` from torchrun, MPI or SLURM variables, in
    open_clip's order of precedence."""
    env = os.environ if env is None else env
    local = _first_env(env, ("LOCAL_RANK", "MPI_LOCALRANKID", "SLURM_LOCALID",
                             "OMPI_COMM_WORLD_LOCAL_RANK"), 0)
    rank = _first_env(env, ("RANK", "PMI_RANK", "SLURM_PROCID", "OMPI_COMM_WORLD_RANK"), 0)
    world = _first_env(env, ("WORLD_SIZE", "PMI_SIZE", "SLURM_NTASKS",
                             "OMPI_COMM_WORLD_SIZE"), 1)
    return local, rank, world


def first_slurm_host(nodelist: str) -> str:
    """The first host of a SLURM node list: ``gpu[03-05,09],cpu1`` -> ``gpu03``."""
    head = ""
    depth = 0
    for ch in nodelist:  # the first comma outside brackets ends the first group
        if ch == "," and depth == 0:
            break
        depth += ch == "["
        depth -= ch == "]"
        head += ch
    if "[" not in head:
        return head
    prefix, rng = head.split("[", 1)
    first = rng.rstrip("]").split(",")[0].split("-")[0]
    return prefix + first


def launcher_env(env=None) -> dict[str, str]:
    """The torch.distributed variables a SLURM/MPI launch implies but does not set
    (RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT); empty under torchrun."""
    env = os.environ if env is None else env
    if "WORLD_SIZE" in env or not any(
            k in env for k in ("SLURM_NTASKS", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE")):
        return {}
    local, rank, world = world_info_from_env(env)
    out = {"RANK": str(rank), "LOCAL_RANK": str(local), "WORLD_SIZE": str(world)}
    if "MASTER_ADDR" not in env:
        nodes = env.get("SLURM_JOB_NODELIST") or env.get("SLURM_NODELIST")
        out["MASTER_ADDR"] = first_slurm_host(nodes) if nodes else "127.0.0.1"
    if "MASTER_PORT" not in env:
        # one port per job, so two jobs sharing a node do not collide
        job = env.get("SLURM_JOB_ID", "0")
        out["MASTER_PORT"] = str(29500 + int(job) % 2000 if job.isdigit() else 29500)
    return out


def setup(device: str = "auto") -> tuple[DistInfo, torch.device]:
    """Join the process group the launcher describes (if any) and pick this process's device."""
    os.environ.update(launcher_env())
    local, rank, world = world_info_from_env()
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
