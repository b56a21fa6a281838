"""torch.distributed helpers. Processes are started by torchrun (or `--num-gpus`, which calls
torchrun's own launcher); a single process without torch.distributed is the default case."""
from __future__ import annotations

import os

import torch
import torch.distributed as dist


def unwrap_model(model: torch.nn.Module) -> torch.nn.Module:
    """The module inside a DistributedDataParallel (or DataParallel) wrapper; ``model`` otherwise."""
    inner = getattr(model, "module", None)
    return inner if isinstance(inner, torch.nn.Module) else model


def is_dist() -> bool:
    return dist.is_available() and dist.is_initialized()


def get_rank() -> int:
    return dist.get_rank() if is_dist() else 0


def get_world_size() -> int:
    return dist.get_world_size() if is_dist() else 1


def is_main_process() -> bool:
    return get_rank() == 0


def synchronize() -> None:
    if is_dist() and get_world_size() > 1:
        dist.barrier()


def init_distributed(device: str) -> str:
    """Join the process group torchrun describes in the environment (no-op otherwise).

    NCCL on GPUs, gloo on CPU. Returns the device this process should use (cuda:LOCAL_RANK).
    """
    if "RANK" not in os.environ or is_dist():
        return device
    backend = "nccl" if device.startswith("cuda") else "gloo"
    dist.init_process_group(backend=backend)
    if device.startswith("cuda"):
        local_rank = int(os.environ.get("LOCAL_RANK", 0))
        torch.cuda.set_device(local_rank)
        return f"cuda:{local_rank}"
    return device


def all_gather_object(obj) -> list:
    if get_world_size() == 1:
        return [obj]
    out = [None] * get_world_size()
    dist.all_gather_object(out, obj)
    return out


def reduce_dict(values: dict[str, float]) -> dict[str, float]:
    """Average scalar values over processes (for logging)."""
    if get_world_size() == 1:
        return values
    keys = sorted(values)
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64)
    if dist.get_backend() == "nccl":
        t = t.cuda()
    dist.all_reduce(t)
    return {k: float(v) / get_world_size() for k, v in zip(keys, t.tolist())}
