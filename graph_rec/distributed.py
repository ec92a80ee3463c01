"""Data-parallel training over ``torch.distributed``: the process group a run belongs to.

graph-rec scales out on PyTorch's own engine: ``torchrun`` starts one process per device (or per
CPU share), each process builds the same model from the same seed, and
:class:`torch.nn.parallel.DistributedDataParallel` averages the gradients after every backward pass
(gloo on CPUs, NCCL on GPUs). :class:`DistContext` is what the trainer and the evaluator need to
know about the group: this process's rank, the world size, the collectives, and which contiguous
shard of a batch or of the evaluated users is this rank's.

``torchrun`` sets ``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``;
:func:`from_env` reads them and joins the group. A process started without them gets the single-
process context (``world_size == 1``), with which every collective is the identity, so the same code
runs unchanged with and without ``torchrun``.
"""

from __future__ import annotations

import datetime
import logging
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as torch_dist
from torch import Tensor

from graph_rec.errors import ConfigError

logger = logging.getLogger(__name__)

__all__ = ["DistContext", "SINGLE", "from_env", "shard_bounds"]


def shard_bounds(n: int, rank: int, world_size: int) -> tuple[int, int]:
    """``[start, stop)`` of ``rank``'s contiguous share of ``n`` items (sizes differ by at most one)."""
    base, extra = divmod(n, world_size)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


@dataclass(frozen=True)
class DistContext:
    """This process's place in a data-parallel group.

    Attributes:
        rank: this process's rank, ``0 .. world_size - 1``.
        world_size: the number of processes (1: not distributed).
        local_rank: the rank on this machine (picks the GPU ``cuda:local_rank``).
        backend: ``"gloo"``, ``"nccl"`` or ``""`` (single process).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str = ""

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes files, logs progress and draws progress bars."""
        return self.rank == 0

    def shard(self, n: int) -> slice:
        """This rank's contiguous share of ``n`` items, as a slice."""
        return slice(*shard_bounds(n, self.rank, self.world_size))

    def barrier(self) -> None:
        if self.enabled:
            torch_dist.barrier()

    def all_reduce_sum(self, t: Tensor) -> Tensor:
        """The element-wise sum of ``t`` over ranks (in place; ``t`` itself when single-process)."""
        if self.enabled:
            torch_dist.all_reduce(t, op=torch_dist.ReduceOp.SUM)
        return t

    def all_gather_object(self, obj: Any) -> list[Any]:
        """Every rank's ``obj``, in rank order (``[obj]`` when single-process). Small objects only."""
        if not self.enabled:
            return [obj]
        out: list[Any] = [None] * self.world_size
        torch_dist.all_gather_object(out, obj)
        return out

    def broadcast_object(self, obj: Any, src: int = 0) -> Any:
        """Rank ``src``'s ``obj`` on every rank (decisions that must agree, e.g. a time limit)."""
        if not self.enabled:
            return obj
        box = [obj]
        torch_dist.broadcast_object_list(box, src=src)
        return box[0]

    def broadcast_parameters(self, module: torch.nn.Module) -> None:
        """Copy rank 0's parameters to every rank (buffers are left alone: they are built from the data)."""
        if not self.enabled:
            return
        with torch.no_grad():
            for p in module.parameters():
                torch_dist.broadcast(p.data, src=0)

    def device(self, setting: str) -> torch.device:
        """The device of this rank for a ``TrainConfig.device`` setting (``cuda`` -> ``cuda:local_rank``)."""
        if setting in ("cuda", "auto") and torch.cuda.is_available() and self.enabled:
            return torch.device(f"cuda:{self.local_rank}")
        if setting == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        try:
            dev = torch.device(setting)
        except (RuntimeError, TypeError) as exc:
            raise ConfigError(f"device {setting!r} is not a device; use cpu, cuda, cuda:N or auto") from exc
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise ConfigError(f"device {setting!r} was asked for but CUDA is not available on this machine")
        return dev

    def close(self) -> None:
        """Leave the process group (after the run)."""
        if self.enabled and torch_dist.is_initialized():
            torch_dist.destroy_process_group()


#: the context of a process that is not part of a group.
SINGLE = DistContext()


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"environment variable {name}={raw!r} is not an integer (set by torchrun)") from None


def from_env(device: str = "cpu", *, backend: str | None = None, timeout_s: float = 1800.0) -> DistContext:
    """Join the process group described by torchrun's environment variables (or return :data:`SINGLE`).

    Args:
        device: the run's ``train.device`` setting: CUDA devices use NCCL, everything else gloo.
        backend: force ``"gloo"`` or ``"nccl"`` (``GRAPH_REC_DIST_BACKEND`` also sets it).
        timeout_s: how long a collective waits for the other ranks before failing.

    Raises:
        ConfigError: inconsistent variables (``RANK`` outside ``0 .. WORLD_SIZE - 1``), an unknown
            backend, or NCCL without CUDA.
    """
    world = _env_int("WORLD_SIZE", 1)
    if world < 1:
        raise ConfigError(f"WORLD_SIZE={world} must be at least 1 (set by torchrun)")
    if world == 1:
        return SINGLE
    if not os.environ.get("RANK"):
        raise ConfigError(f"WORLD_SIZE={world} but RANK is not set; start the job with torchrun")
    rank = _env_int("RANK", -1)
    local = _env_int("LOCAL_RANK", 0)
    if not 0 <= rank < world:
        raise ConfigError(f"RANK={rank} is not in 0..{world - 1} (WORLD_SIZE={world}); start the job with torchrun")
    backend = (
        backend
        or os.environ.get("GRAPH_REC_DIST_BACKEND")
        or ("nccl" if device in ("cuda", "auto") and torch.cuda.is_available() else "gloo")
    )
    if backend not in ("gloo", "nccl"):
        raise ConfigError(f"distributed backend must be 'gloo' or 'nccl', got {backend!r}")
    if backend == "nccl":
        if not torch.cuda.is_available():
            raise ConfigError("the nccl backend needs CUDA; use gloo on CPUs")
        torch.cuda.set_device(local)
    for name in ("MASTER_ADDR", "MASTER_PORT"):
        if not os.environ.get(name):
            raise ConfigError(f"WORLD_SIZE={world} but {name} is not set; start the job with torchrun")
    if not 0 < _env_int("MASTER_PORT", 0) < 65536:
        raise ConfigError(f"MASTER_PORT={os.environ['MASTER_PORT']!r} is not a port (1-65535)")
    if not torch_dist.is_initialized():
        # NCCL reduces CUDA tensors only; the trainer's own sums (losses, flags) are CPU tensors, so
        # CPU tensors go through gloo in the same group
        torch_dist.init_process_group(
            backend="cpu:gloo,cuda:nccl" if backend == "nccl" else backend,
            rank=rank,
            world_size=world,
            timeout=datetime.timedelta(seconds=timeout_s),
        )
    logger.info("rank %d of %d (local rank %d, %s)", rank, world, local, backend)
    return DistContext(rank=rank, world_size=world, local_rank=local, backend=backend)
