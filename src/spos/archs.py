"""Resolving what users type as an architecture: a zoo name or an arch string."""

from __future__ import annotations

from . import zoo
from .space import Arch, SearchSpace


def resolve(text: str, space: SearchSpace | None = None) -> tuple[Arch, SearchSpace]:
    """A zoo name gives its own arch and space (``space`` is ignored except num_classes, input
    size and input channels); an arch string is parsed against ``space`` (default: oneshot)."""
    space = space or SearchSpace()
    if ":" not in text:
        entry = zoo.get(text)
        return entry.arch, entry.space(
            num_classes=space.num_classes,
            input_size=space.input_size,
            input_channels=space.input_channels,
            stem_stride=space.stem_stride,
        )
    arch = Arch.parse(text, space.stage_depths)
    return arch.validate(space), space
