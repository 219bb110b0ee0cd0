"""Thin helpers over torch.distributed (torchrun sets RANK, WORLD_SIZE, LOCAL_RANK)."""

import logging
import os

import torch
import torch.distributed as dist


def env_rank() -> int:
    """This process's rank as the launcher set it (before the process group exists)."""
    return int(os.environ.get("RANK", os.environ.get("SLURM_PROCID", 0)) if _multi_task() else 0)


def _multi_task() -> bool:
    return int(os.environ.get("WORLD_SIZE", os.environ.get("SLURM_NTASKS", 1))) > 1


def init_from_env(device_type: str) -> tuple[int, int, int]:
    """Initializes the default process group; returns (rank, world, local_rank).

    torchrun sets RANK/WORLD_SIZE/LOCAL_RANK/MASTER_*; inside a SLURM job with several tasks
    (Hydra's submitit launcher) submitit's helper exports the same variables. gloo on CPU,
    NCCL on CUDA. Otherwise: a single process (0, 1, 0).
    """
    if not _multi_task():
        return 0, 1, 0
    if "WORLD_SIZE" not in os.environ:  # a SLURM job step: let submitit derive torchrun's variables
        from submitit.helpers import TorchDistributedEnvironment

        TorchDistributedEnvironment().export()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
    return dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0))


def is_main() -> bool:
    return not dist.is_initialized() or dist.get_rank() == 0


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


def broadcast_object(obj):
    """Rank 0's ``obj`` on every rank."""
    if not dist.is_initialized():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def quiet_logging() -> None:
    """Non-zero ranks: warnings only, and no log file (rank 0 writes train.log)."""
    root = logging.getLogger()
    for h in list(root.handlers):
        if isinstance(h, logging.FileHandler):
            root.removeHandler(h)
            h.close()
    root.setLevel(logging.WARNING)


def destroy() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
