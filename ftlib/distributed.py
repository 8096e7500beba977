"""Data parallelism for the engine: the process-group helpers ``ftlib.train`` uses under ``torchrun``.

``torchrun --nproc_per_node=N script.py`` starts N copies of a script and gives each one
``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE``. :func:`ftlib.train.fit` then (through
:func:`init_from_env`) joins the process group -- NCCL on GPUs, gloo on the CPU -- and trains
data-parallel with no change to the script:

* every process builds the same **global** batches (same data, same seed) and keeps its
  **shard**, a contiguous block of rows (:func:`shard`), so the global batch and the number of
  optimiser steps are those of the one-process run;
* the model is wrapped in ``DistributedDataParallel``, which all-reduces (averages) the
  gradients during the backward pass; each process weighs its mean loss by its share of the
  global batch's items (:meth:`DataParallel.weigh`), so the averaged gradient is the gradient
  of the global batch's mean loss -- also when the shards hold different numbers of items
  (exact when the task's loss is the mean over the items it reports: ``classification``,
  ``causal_lm``; ``task="model"`` reports rows, so a model whose own loss averages tokens,
  as a translation model's does, is weighted by rows instead);
* the logged losses, the example/token counts and the evaluation sums are all-reduced, so
  every process holds the one-process history; only rank 0 prints, draws and writes
  checkpoints, and a checkpoint holds no trace of the number of processes, so it resumes
  with any other number.

One process (``WORLD_SIZE`` unset or 1) is the ordinary single-process path: nothing here runs.
"""
from __future__ import annotations

import contextlib
import os

import torch

from ftlib.errors import CourseError

__all__ = ["world", "rank", "is_main", "init_from_env", "local_device", "shutdown", "shard", "all_reduce_sum",
           "gather_objects", "barrier", "DataParallel"]


def _dist():
    return torch.distributed if torch.distributed.is_available() else None


def world() -> int:
    """How many processes train together (1 when no process group is initialised)."""
    dist = _dist()
    return dist.get_world_size() if dist is not None and dist.is_initialized() else 1


def rank() -> int:
    """This process's number, 0 .. world() - 1 (0 without a process group)."""
    dist = _dist()
    return dist.get_rank() if dist is not None and dist.is_initialized() else 0


def is_main() -> bool:
    """True in the process that prints and writes files (rank 0, or the only process)."""
    return rank() == 0


def init_from_env(device=None) -> int:
    """Join the process group ``torchrun`` describes (``WORLD_SIZE`` > 1 in the environment) if no one has
    yet: NCCL for a CUDA ``device``, gloo otherwise. Returns :func:`world`. Does nothing for one process."""
    dist = _dist()
    size = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if size <= 1 or (dist is not None and dist.is_initialized()):
        return world()
    if dist is None:
        raise CourseError(f"WORLD_SIZE={size} asks for {size} processes, but this PyTorch build has no "
                          "torch.distributed. Run one process, or install a build with distributed support.")
    missing = [k for k in ("RANK", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
    if missing:
        raise CourseError(f"WORLD_SIZE={size} is set but {missing} are not: start the script with "
                          "`torchrun --nproc_per_node=N script.py` (it sets them), or unset WORLD_SIZE.")
    cuda = device is not None and torch.device(device).type == "cuda"
    dist.init_process_group(backend="nccl" if cuda else "gloo")
    return world()


def local_device(device) -> torch.device:
    """``device`` for this process: an unnumbered ``cuda`` becomes ``cuda:LOCAL_RANK`` (one GPU per process),
    made the current CUDA device; other devices are returned as they are."""
    device = torch.device(device)
    if device.type == "cuda":
        if device.index is None:
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0") or 0))
        torch.cuda.set_device(device)
    return device


def shutdown():
    """Leave the process group (call once at the end of a distributed script); no-op without one."""
    dist = _dist()
    if dist is not None and dist.is_initialized():
        dist.destroy_process_group()


def shard(batch: dict, index: int, parts: int) -> dict:
    """Rows ``index`` of ``parts`` contiguous blocks of every tensor in ``batch`` (the first
    ``rows % parts`` blocks get one row more, as ``torch.tensor_split``)."""
    return {k: v.tensor_split(parts)[index] for k, v in batch.items()}


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` summed over every process (in place, and returned); unchanged for one process."""
    if world() > 1:
        torch.distributed.all_reduce(tensor)
    return tensor


def gather_objects(obj) -> list:
    """``[obj of rank 0, obj of rank 1, ...]`` on every process (pickled); ``[obj]`` for one process."""
    if world() == 1:
        return [obj]
    out = [None] * world()
    torch.distributed.all_gather_object(out, obj)
    return out


def barrier():
    """Wait until every process gets here (no-op for one process)."""
    if world() > 1:
        torch.distributed.barrier()


class _LossOf(torch.nn.Module):
    """``batch -> loss_of(model, batch)`` as a module, so that DistributedDataParallel runs the whole
    task (the model's forward and its loss, chunked LM losses too) as its forward pass."""

    def __init__(self, model, loss_of):
        super().__init__()
        self.model, self.loss_of = model, loss_of

    def forward(self, batch):
        return self.loss_of(self.model, batch)


class DataParallel:
    """What :func:`ftlib.train.fit` does differently on :func:`world` > 1 processes (see the module docstring)."""

    def __init__(self, model, loss_of, device):
        from torch.nn.parallel import DistributedDataParallel

        self.rank, self.world, self.device = rank(), world(), local_device(device)
        ids = [self.device.index] if self.device.type == "cuda" else None     # one GPU per process
        # broadcasts rank 0's weights and buffers: every process starts from the same model
        self.module = DistributedDataParallel(_LossOf(model, loss_of), device_ids=ids)

    def compute(self, batch):
        """The task's ``(loss, items, correct)`` on this process's shard, through DDP's forward."""
        return self.module(batch)

    def shard(self, batch: dict) -> dict:
        rows = next(iter(batch.values())).shape[0]
        if rows < self.world:
            raise CourseError(f"A batch of {rows} row(s) cannot be split over {self.world} processes: every process "
                              "needs at least one row. Use batches of at least as many rows as processes "
                              "(static=True DeviceBatches, or drop_last=True) or fewer processes.")
        return shard(batch, self.rank, self.world)

    def no_sync(self, last_micro_batch: bool):
        """Skip the gradient all-reduce for every micro-batch of an accumulation group but the last."""
        return contextlib.nullcontext() if last_micro_batch else self.module.no_sync()

    def weigh(self, loss, items):
        """``loss`` (this shard's mean) times ``world * items / global items``: DDP's gradient average is
        then the gradient of the mean over the global batch."""
        items = torch.as_tensor(items, device=loss.device).to(torch.float32)
        total = all_reduce_sum(items.detach().clone())
        return loss * (items * self.world / total.clamp(min=1))

    def mean(self, values: torch.Tensor) -> torch.Tensor:
        """Weighted per-process losses (:meth:`weigh`) back to the global batch's mean loss."""
        return all_reduce_sum(values) / self.world

    def any(self, flag: bool) -> bool:
        """True on every process when ``flag`` is True on any one (e.g. a callback asks to stop)."""
        t = torch.tensor(int(bool(flag)), device=self.device)
        torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
        return bool(t)

    def check_same(self, what: str, value: int):
        """Raise :class:`CourseError` unless every process holds the same ``value`` (e.g. the number of
        batches, a checksum of the first batch): the processes must see the same global batches."""
        values = gather_objects(int(value))
        if len(set(values)) > 1:
            raise CourseError(f"The {self.world} processes see different {what} ({values}): every process must "
                              "build the same global batches (the same data, the same seed -- do not seed by "
                              "rank); fit gives each process its shard.")
