"""The channel-selection warm-up (SPEC §4): which channel genes a path may use at each epoch."""

from __future__ import annotations

from ..errors import SposError
from ..space import SCALES, SearchSpace

#: SPEC §4 channel-selection warm-up: (last epoch after the start, lowest allowed channel gene).
#: Gene 8 = scale 1.8, 7 = 1.6, ..., 2 = 0.6. From e = 13 on only the configured minimum applies
#: (as in the MXNet code, which allowed every scale after its last warm-up step).
WARMUP_FLOORS: tuple[tuple[int, int], ...] = ((0, 8), (1, 7), (2, 6), (3, 5), (5, 4), (8, 3), (12, 2))


def usable_channel_genes(space: SearchSpace, min_gene: int | None = None) -> tuple[int, ...]:
    """The space's allowed channel genes at or above ``min_gene`` (default: all of them)."""
    genes = space.channel_genes
    if min_gene is None:
        return genes
    usable = tuple(g for g in genes if g >= min_gene)
    if not 0 <= min_gene < len(SCALES) or not usable:
        allowed = ", ".join(f"{g} ({SCALES[g]})" for g in genes)
        raise SposError(
            f"minimum channel gene {min_gene} leaves no channel choice in the search space "
            f"(allowed genes: {allowed}); use one of those or leave it unset"
        )
    return usable


def allowed_channel_genes(
    space: SearchSpace,
    epoch: int,
    start_epoch: int | None,
    min_gene: int | None = None,
) -> tuple[int, ...]:
    """Channel genes a path may use at ``epoch`` under the SPEC §4 channel-selection warm-up.

    Before ``start_epoch`` only the widest allowed gene (scale 2.0 by default). With
    ``e = epoch - start_epoch``: e = 0 allows scales {1.8, 2.0}; 1 → ≥ 1.6; 2 → ≥ 1.4;
    3 → ≥ 1.2; 4–5 → ≥ 1.0; 6–8 → ≥ 0.8; 9–12 → ≥ 0.6; from 13 on every gene down to the
    minimum. Never below ``min_gene`` (default: the space's smallest allowed gene), and always
    a subset of the space's allowed genes (if the warm-up floor leaves none, the widest).
    ``start_epoch=None`` switches the warm-up off. Epochs count from 0.
    """
    usable = usable_channel_genes(space, min_gene)
    if start_epoch is None:
        return usable
    e = epoch - start_epoch
    if e < 0:
        return usable[-1:]
    for last, floor in WARMUP_FLOORS:
        if e <= last:
            chosen = tuple(g for g in usable if g >= floor)
            return chosen or usable[-1:]
    return usable



def full_range_epoch(space: SearchSpace, start_epoch: int | None, min_gene: int | None = None) -> int:
    """The first epoch from which the warm-up allows every usable channel gene (0 without one).
    A run whose last epoch comes earlier never trains its narrowest widths as such."""
    usable = usable_channel_genes(space, min_gene)
    epoch = 0
    while allowed_channel_genes(space, epoch, start_epoch, min_gene) != usable:
        epoch += 1  # ends: 13 epochs after the start every usable gene is allowed
    return epoch
