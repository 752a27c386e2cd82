"""Several processes (``torchrun``): process-group set-up, rank-0-only side effects, gradient averaging.

Weights are trained through ``DistributedDataParallel``. α are excluded from DDP and their gradients are averaged
with :func:`all_reduce_mean` instead, because the α step computes gradients with ``torch.autograd.grad`` (and,
in second order, through ``functional_call``), which DDP's backward hooks do not see. Every rank therefore applies
the same averaged α gradient and holds identical α after every step.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ..errors import ConfigError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistEnv:
    """Where this process stands: ``rank`` of ``world_size`` processes, and its device."""

    rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: torch.device) -> DistEnv:
    """Join the process group ``torchrun`` describes (NCCL on CUDA, gloo on CPU); a plain run gets world size 1.

    On CUDA each process takes the GPU of its ``LOCAL_RANK``."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistEnv(device=device)
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        if local >= torch.cuda.device_count():
            raise ConfigError(f"LOCAL_RANK {local} but only {torch.cuda.device_count()} GPUs are visible")
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return DistEnv(rank, world, device)


def all_reduce_mean(tensors: list[torch.Tensor], env: DistEnv) -> list[torch.Tensor]:
    """The element-wise mean of ``tensors`` over all ranks, in one flattened all-reduce; identity for one
    process. Every rank receives the same bits."""
    if not env.enabled:
        return tensors
    flat = torch.cat([t.reshape(-1) for t in tensors])
    dist.all_reduce(flat)
    flat /= env.world_size
    out, offset = [], 0
    for t in tensors:
        out.append(flat[offset : offset + t.numel()].view_as(t))
        offset += t.numel()
    return out


def barrier(env: DistEnv) -> None:
    if env.enabled:
        dist.barrier()


def broadcast_flag(flag: bool, env: DistEnv) -> bool:
    """Rank 0's ``flag`` on every rank (e.g. "rank 0 hit an error, stop too")."""
    if not env.enabled:
        return flag
    t = torch.tensor([int(flag)], device=env.device if env.device.type == "cuda" else "cpu")
    dist.broadcast(t, 0)
    return bool(t.item())


def shutdown(env: DistEnv) -> None:
    if env.enabled and dist.is_initialized():
        dist.destroy_process_group()


def wrap_ddp(model: torch.nn.Module, env: DistEnv, ignore: tuple[str, ...] = (),
             find_unused: bool = False) -> torch.nn.Module:
    """``model`` in DistributedDataParallel (parameters named in ``ignore`` left out), or ``model`` itself.

    ``find_unused``: some parameters get no gradient in a step (GDAS computes one sampled op per edge)."""
    if not env.enabled:
        return model
    from torch.nn.parallel import DistributedDataParallel as DDP

    if ignore:
        DDP._set_params_and_buffers_to_ignore_for_model(model, list(ignore))
    return DDP(model, device_ids=[env.device.index] if env.device.type == "cuda" else None,
               find_unused_parameters=find_unused)
