"""Named architectures from SPEC §2 (usable wherever an arch is accepted)."""

from __future__ import annotations

from dataclasses import dataclass

from .errors import SposError
from .space import BLOCK_NAMES, SCALES, Arch, ArchError, SearchSpace

_ONESHOT = Arch.parse("0031-1100-20211020-2132:6535-2634-25754674-4543")


_ONESHOT_S_PLUS = Arch.parse("0001-0010-32012212-0020:8768-5734-24234566-3346")


@dataclass(frozen=True)
class ZooEntry:
    name: str
    arch: Arch
    use_se: bool
    last_conv_after_pooling: bool
    description: str

    def space(self, **kwargs) -> SearchSpace:
        """The oneshot search space with this model's options (overridable, e.g. num_classes)."""
        opts = {"use_se": self.use_se, "last_conv_after_pooling": self.last_conv_after_pooling}
        opts.update(kwargs)
        # The zoo's channel genes need not lie in the default searchable range.
        opts.setdefault("channel_genes", tuple(range(10)))
        return SearchSpace(**opts)


ZOO: dict[str, ZooEntry] = {
    e.name: e
    for e in (
        ZooEntry("oneshot", _ONESHOT, False, False, "SPOS paper, 327.9M MACs, 74.0% top-1"),
        ZooEntry("oneshot+", _ONESHOT, True, True, "OneShot with SE and MobileNetV3 head, 75.2%"),
        ZooEntry("oneshot-s+", _ONESHOT_S_PLUS, True, True, "searched with SE, 291.5M MACs, 75.8%"),
    )
}


def get(name: str) -> ZooEntry:
    key = name.lower()
    if key not in ZOO:
        raise SposError(f"unknown zoo model {name!r}; known: {', '.join(ZOO)}; or pass an arch string "
                        f"BLOCKS:CHANNELS")  # fmt: skip
    return ZOO[key]


def grammar(space: SearchSpace) -> str:
    """What an arch string of ``space`` is, in one clause (for error messages)."""
    n, genes = space.num_blocks, space.channel_genes
    example = Arch((0,) * n, (genes[len(genes) // 2],) * n, space.stage_depths)
    blocks = ", ".join(f"{i} {name}" for i, name in enumerate(BLOCK_NAMES))
    return (f"an arch of this space is BLOCKS:CHANNELS, {n} block genes ({blocks}) and {n} channel genes "
            f"({genes[0]}..{genes[-1]} = scales {SCALES[genes[0]]}..{SCALES[genes[-1]]}), grouped by stage "
            f"{'-'.join(map(str, space.stage_depths))}, e.g. '{example}'")  # fmt: skip


def _no_colon(text: str, space: SearchSpace) -> ArchError:
    """The error for gene digits without the ':' between block and channel genes."""
    digits = "".join(ch for ch in text if ch.isdigit())
    n = space.num_blocks
    if len(digits) != 2 * n:
        return ArchError(f"{text!r} is not a zoo name; as an arch it lacks the ':' and has {len(digits)} of the "
                         f"{2 * n} genes; {grammar(space)}")  # fmt: skip
    try:
        guess = Arch.parse(f"{digits[:n]}:{digits[n:]}", space.stage_depths)
    except ArchError as e:
        return ArchError(f"{text!r} lacks the ':' between the {n} block and {n} channel genes, and read so: {e}")
    return ArchError(f"{text!r} lacks the ':' between the {n} block and {n} channel genes; did you mean '{guess}'?")


def resolve(text: str, space: SearchSpace | None = None) -> tuple[Arch, SearchSpace]:
    """A zoo name gives its own arch and space (``space`` is ignored except num_classes, input
    size and input channels); an arch string is parsed against ``space`` (default: oneshot)."""
    space = space or SearchSpace()
    if ":" not in text:
        if text.lower() not in ZOO and text.strip() and all(ch.isdigit() or ch in "-_ ," for ch in text):
            raise _no_colon(text, space)
        entry = get(text)
        return entry.arch, entry.space(
            num_classes=space.num_classes,
            input_size=space.input_size,
            input_channels=space.input_channels,
            stem_stride=space.stem_stride,
        )
    try:
        arch = Arch.parse(text, space.stage_depths)
    except ArchError as e:
        raise ArchError(f"{e}; {grammar(space)}") from None
    return arch.validate(space), space
