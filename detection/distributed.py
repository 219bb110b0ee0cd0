"""Thin helpers over torch.distributed (torchrun sets RANK, WORLD_SIZE, LOCAL_RANK)."""

import os

import torch
import torch.distributed as dist


def init_from_env(device_type: str) -> tuple[int, int, int]:
    """Initializes the default process group under torchrun; returns (rank, world, local_rank).

    gloo on CPU, NCCL on CUDA. Without torchrun's variables: a single process (0, 1, 0).
    """
    if "WORLD_SIZE" not in os.environ or int(os.environ["WORLD_SIZE"]) == 1:
        return 0, 1, 0
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
    return dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0))


def is_main() -> bool:
    return not dist.is_initialized() or dist.get_rank() == 0


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def all_gather_list(items: list) -> list:
    """Concatenation of every rank's list (detections for evaluation), in rank order."""
    if not dist.is_initialized():
        return items
    gathered = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, items)
    return [x for part in gathered for x in part]


def mean_over_ranks(values: dict) -> dict:
    """Averages a dict of scalar tensors over ranks (for logging only)."""
    if not dist.is_initialized():
        return values
    keys = sorted(values)
    t = torch.stack([values[k].detach().float() for k in keys])
    dist.all_reduce(t)
    t /= dist.get_world_size()
    return dict(zip(keys, t))


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def destroy() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
