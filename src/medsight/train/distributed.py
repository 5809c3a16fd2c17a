"""Training on many processes (torchrun): the process group, the sharded batch order, gathers.

Under ``torchrun`` (RANK / WORLD_SIZE / LOCAL_RANK in the environment) `init_from_env` joins the
process group (NCCL on CUDA, gloo on the CPU) with a timeout, so a dead rank fails the job instead
of hanging it. The configured ``batch_size`` is the *global* batch: every rank draws the same
seeded permutation (`ShardedBatchOrder`) and takes a strided share of each global batch, so the
union of the ranks' batch t is the one-process batch t. Validation is scored on strided shards and
gathered back into the original order (`gather_rows`), so metrics cover the whole set once.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader

from medsight.errors import InvalidConfig
from medsight.train.data import BatchOrder, CachedImages, _seed_worker

TIMEOUT_S = 600
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Group:
    """This process's place in the job: global rank, number of processes, rank on its node."""

    rank: int
    world: int
    local_rank: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def current() -> Group | None:
    """The running job's `Group`, or None in a plain single-process run."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        return None
    return Group(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))


def launched() -> bool:
    """True inside a torchrun worker of a job with more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_from_env(backend: str | None = None, timeout_s: int = TIMEOUT_S) -> Group | None:
    """Join torchrun's process group (NCCL when CUDA is there, else gloo); None when not launched."""
    if not launched():
        return None
    if not dist.is_initialized():
        local = int(os.environ.get("LOCAL_RANK", 0))
        backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
        if backend == "nccl":
            torch.cuda.set_device(local)
        # torchrun's store outlives a restart of the workers, and with it the previous attempt's
        # gloo addresses: a restarted rank would dial a dead peer. Keys are kept per attempt.
        timeout = timedelta(seconds=timeout_s)
        store, rank, world = next(dist.rendezvous("env://", timeout=timeout))
        attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
        store = dist.PrefixStore(f"medsight/attempt_{attempt}", store)
        dist.init_process_group(backend, store=store, rank=rank, world_size=world,
                                timeout=timeout)
    group = current()
    assert group is not None
    return group


def shutdown() -> None:
    """Leave the process group (a no-op when none was joined)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def exit_on_sigterm() -> None:
    """torchrun stops the surviving workers of a failed job with SIGTERM: exit through Python
    (``finally`` blocks run: a rank's private scratch folder is removed) instead of dying at once."""
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))


def rank_logging(group: Group | None, verbose: bool = False) -> None:
    """Prefix log lines with the rank; ranks other than 0 log warnings only unless `verbose`."""
    if group is None:
        return
    fmt = f"[rank {group.rank}/{group.world}] %(levelname)s %(name)s: %(message)s"
    root = logging.getLogger()
    for handler in root.handlers or [logging.StreamHandler()]:
        handler.setFormatter(logging.Formatter(fmt))
        if handler not in root.handlers:
            root.addHandler(handler)
    if not group.is_main and not verbose:
        root.setLevel(logging.WARNING)


class ShardedBatchOrder(BatchOrder):
    """`BatchOrder`'s global batches, of which this rank yields rows ``rank::world``.

    The permutation is a function of the seeded generator only (the same on every rank); a
    global batch smaller than the world is skipped on every rank, so no rank steps alone.
    """

    def __init__(self, n: int, batch_size: int, generator: torch.Generator, group: Group):
        super().__init__(n, batch_size, True, generator)
        self.group = group

    def __iter__(self) -> Iterator[list[int]]:
        for rows in super().__iter__():
            if len(rows) >= self.group.world:
                yield rows[self.group.rank::self.group.world]

    def __len__(self) -> int:
        sizes = [min(self.batch_size, self.n - s) for s in range(0, self.n, self.batch_size)]
        return sum(1 for k in sizes if k >= self.group.world and not (k == 1 and self.n > 1))


def sharded_loader(data: CachedImages, batch_size: int, generator: torch.Generator, group: Group,
                   num_workers: int = 0, pin_memory: bool = False) -> DataLoader:
    """`make_loader`'s twin for one rank: global batches of `batch_size`, this rank's share."""
    if batch_size < group.world:
        raise InvalidConfig(f"batch_size {batch_size} is the global batch; it must be at least "
                            f"the number of processes ({group.world})")
    return DataLoader(
        data, sampler=ShardedBatchOrder(len(data), batch_size, generator, group),
        batch_size=None, num_workers=num_workers, pin_memory=pin_memory, generator=generator,
        worker_init_fn=_seed_worker if num_workers else None, persistent_workers=False,
    )


def global_count(n: int, device: torch.device) -> int:
    """Sum of `n` over the ranks (the global batch size of this step)."""
    t = torch.tensor([n], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return int(t.item())


def sum_over_ranks(*values: float) -> list[float]:
    """Element-wise sums of `values` over the ranks (float64, on the CPU)."""
    t = torch.tensor(values, dtype=torch.float64, device=_comm_device())
    dist.all_reduce(t)
    return t.cpu().tolist()


def gather_rows(part: np.ndarray, n: int, group: Group) -> np.ndarray:
    """Rebuild the (n, ...) array whose rows ``rank::world`` each rank holds as `part`."""
    parts: list[Any] = [None] * group.world
    dist.all_gather_object(parts, part)
    out = np.empty((n, *part.shape[1:]), dtype=part.dtype)
    for rank, piece in enumerate(parts):
        out[rank::group.world] = piece
    return out


def broadcast(obj: Any) -> Any:
    """Rank 0's `obj` on every rank (pickled; for checkpoints and decisions)."""
    box = [obj]
    dist.broadcast_object_list(box, src=0, device=_comm_device())
    return box[0]


def _comm_device() -> torch.device:
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def wrap_model(model: torch.nn.Module, group: Group) -> torch.nn.Module:
    """DistributedDataParallel around `model` (its parameters stay the model's own).

    BatchNorm layers keep per-rank batch statistics (running buffers are broadcast from rank 0 at
    every forward, torch's default); SyncBatchNorm is not used: it needs CUDA, and converting
    would replace the modules the trainer checkpoints.
    """
    from torch.nn.parallel import DistributedDataParallel

    on_cuda = next(model.parameters()).device.type == "cuda"
    ids = [torch.cuda.current_device()] if on_cuda else None
    return DistributedDataParallel(model, device_ids=ids)
