"""Data-parallel training through torchrun (DistributedDataParallel): process group set-up and helpers."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def launched_by_torchrun() -> bool:
    """True when torchrun started this process as one of several ranks."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init(device: str | None = None) -> torch.device:
    """Join the process group torchrun describes (nccl on CUDA, gloo on CPU); returns this rank's device."""
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() and device not in ("cpu",)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    if use_cuda:
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def world() -> tuple[int, int]:
    """(rank, world_size); (0, 1) without a process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main() -> bool:
    return world()[0] == 0


def mean_over_ranks(t: torch.Tensor) -> torch.Tensor:
    """All-reduce mean (a no-op on one process)."""
    rank, size = world()
    if size == 1:
        return t
    t = t.clone()
    dist.all_reduce(t)
    return t / size


def barrier() -> None:
    if world()[1] > 1:
        dist.barrier()
