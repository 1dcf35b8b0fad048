"""spos.train.batches: the epoch's seeded order and its sharding over ranks and accumulation."""

import pytest
import torch

from spos.data import TensorImages
from spos.errors import SposError
from spos.train.batches import Sharding, epoch_batches, epoch_order


def test_n_ranks_see_exactly_the_micro_batches_of_one_process_accumulating_n():
    order = list(range(100, 164))
    single = Sharding(batch_size=16, accum_steps=4).rank_slice(order, step_in_epoch=2)
    ranks = [Sharding(16, 1, rank=r, world=4).rank_slice(order, 2) for r in range(4)]
    assert [mb for r in ranks for mb in r] == single == [order[32 + 4 * m : 36 + 4 * m] for m in range(4)]


def test_a_batch_that_does_not_split_evenly_is_refused():
    with pytest.raises(SposError, match="divisible by world size x accum_steps = 6"):
        Sharding(batch_size=16, accum_steps=3, rank=0, world=2)


def test_the_epoch_order_is_a_seeded_permutation_of_the_training_indices():
    idx = list(range(0, 40, 2))
    assert sorted(epoch_order(idx, seed=1, epoch=0)) == idx
    assert epoch_order(idx, 1, 0) == epoch_order(idx, 1, 0) != epoch_order(idx, 1, 1)


def test_skipping_the_first_steps_yields_the_rest_of_the_same_epoch():
    ds = TensorImages(torch.zeros(32, 4, 4, dtype=torch.uint8), torch.arange(32), train=True)
    kw = {"seed": 0, "epoch": 1, "steps_per_epoch": 4}
    full = [[y.tolist() for _x, y, _skipped in step] for step in epoch_batches(ds, range(32), Sharding(8, 2), first=0, **kw)]
    rest = [[y.tolist() for _x, y, _skipped in step] for step in epoch_batches(ds, range(32), Sharding(8, 2), first=2, **kw)]
    assert len(full) == 4 and rest == full[2:] and all(len(mb) == 4 for step in full for mb in step)
