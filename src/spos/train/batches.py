"""Which images each rank trains on at each step: the epoch's seeded order cut into micro-batches.

``batch_size`` is the global batch. Each step's global batch is cut into
``world * accum_steps`` contiguous micro-batches; rank r takes micro-batches
``r * accum_steps ...``. A single process with ``accum_steps = N`` therefore sees exactly the
micro-batches N ranks see (BN statistics are per micro-batch in both), which is what makes a
DDP run reproducible by one process. The epoch's order is a permutation seeded by
(seed, epoch), so a resumed run can skip the batches it already consumed.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader, Dataset

from .. import data
from ..errors import SposError
from ..runtime import seed_of

#: One micro-batch: images, labels and how many unreadable images were skipped from it.
MicroBatch = tuple[torch.Tensor, torch.Tensor, int]


@dataclass(frozen=True)
class Sharding:
    """How one step's global batch is split over ranks and accumulation steps."""

    batch_size: int  # global, over all ranks and accumulation steps
    accum_steps: int
    rank: int = 0
    world: int = 1

    def __post_init__(self) -> None:
        micro = self.world * self.accum_steps
        if self.batch_size % micro:
            raise SposError(
                f"batch_size {self.batch_size} must be divisible by world size x accum_steps = {micro}"
            )

    @property
    def micro_batch(self) -> int:
        """Images per micro-batch (per forward pass of one rank)."""
        return self.batch_size // (self.world * self.accum_steps)

    def rank_slice(self, order: Sequence[int], step_in_epoch: int) -> list[list[int]]:
        """This rank's ``accum_steps`` micro-batches (dataset indices) of one step."""
        per_rank = self.micro_batch * self.accum_steps
        start = step_in_epoch * self.batch_size + self.rank * per_rank
        chunk = list(order[start : start + per_rank])
        mb = self.micro_batch
        return [chunk[m * mb : (m + 1) * mb] for m in range(self.accum_steps)]


def epoch_order(train_idx: Sequence[int], seed: int, epoch: int) -> list[int]:
    """The training indices in ``epoch``'s seeded order (the same on every rank)."""
    perm = torch.randperm(len(train_idx), generator=torch.Generator().manual_seed(seed_of(seed, epoch)))
    return torch.as_tensor(train_idx)[perm].tolist()


def epoch_batches(
    ds: Dataset,
    train_idx: Sequence[int],
    shard: Sharding,
    *,
    seed: int,
    epoch: int,
    first: int,
    steps_per_epoch: int,
    workers: int = 0,
    pin_memory: bool = False,
) -> Iterator[list[MicroBatch]]:
    """This rank's micro-batches for each step of ``epoch`` from step ``first`` on.

    In-memory data (:class:`spos.data.TensorImages`) draws each micro-batch's flips from a
    generator seeded by (seed, step, the micro-batch's place in the global batch); folder data
    goes through a DataLoader that skips unreadable images.
    """
    order = epoch_order(train_idx, seed, epoch)
    if isinstance(ds, data.TensorImages):
        for b in range(first, steps_per_epoch):
            step = epoch * steps_per_epoch + b
            out = []
            for m, ids in enumerate(shard.rank_slice(order, b)):
                # Seeded by the micro-batch's place in the global batch, not by (rank, m):
                # N ranks and one process accumulating N micro-batches flip the same images.
                g = torch.Generator().manual_seed(seed_of(seed, step, shard.rank * shard.accum_steps + m))
                out.append((*ds.batch(ids, g), 0))
            yield out
        return
    micro_lists = [ids for b in range(first, steps_per_epoch) for ids in shard.rank_slice(order, b)]
    g = torch.Generator().manual_seed(seed_of(seed, epoch, first, shard.rank))
    loader = DataLoader(ds, batch_sampler=micro_lists, num_workers=workers,
                        collate_fn=data.collate_skipping, generator=g, pin_memory=pin_memory)  # fmt: skip
    it = iter(loader)
    for _ in range(first, steps_per_epoch):
        yield [next(it) for _ in range(shard.accum_steps)]
