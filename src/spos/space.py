"""The search space and its architectures (SPEC §1).

An :class:`Arch` is one block gene and one channel gene per position. Its string form groups
genes by stage, blocks before the colon and channels after it::

    0031-1100-20211020-2132:6535-2634-25754674-4543

Block genes: 0 = SNB-3, 1 = SNB-5, 2 = SNB-7, 3 = SXB-3. Channel genes index :data:`SCALES`
(0 = 0.2 ... 9 = 2.0). ``Arch.parse`` also accepts the digits without dashes or with spaces.

Genetic operators (sampling, mutation, crossover) are pure functions of an explicit
``random.Random`` so that every search and sampler is reproducible and resumable.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace

from .errors import SposError, dataclass_from_dict

#: Channel scales a channel gene indexes (SPEC §1). Stored in tenths for exact integer widths.
SCALES: tuple[float, ...] = (0.2, 0.4, 0.6, 0.8, 1.0, 1.2, 1.4, 1.6, 1.8, 2.0)


_SCALE_TENTHS: tuple[int, ...] = (2, 4, 6, 8, 10, 12, 14, 16, 18, 20)


#: Choice-block names by block gene.
BLOCK_NAMES: tuple[str, ...] = ("SNB-3", "SNB-5", "SNB-7", "SXB-3")


#: Depthwise kernel size by block gene (SXB-3 uses 3x3 everywhere).
BLOCK_KERNELS: tuple[int, ...] = (3, 5, 7, 3)


LAYOUTS: dict[str, tuple[int, ...]] = {
    "oneshot": (64, 160, 320, 640),
    "shufflenetv2+": (48, 128, 256, 512),
}


DEFAULT_DEPTHS: tuple[int, ...] = (4, 4, 8, 4)


class ArchError(SposError, ValueError):
    """An architecture string or gene that does not fit the search space."""


def mid_channels(out_channels: int, channel_gene: int) -> int:
    """Width of a choice block's main branch: ``int((out // 2) * scale)`` (SPEC §1).

    Computed in integer tenths so that e.g. 45 * 1.4 gives 63, not float's 62.
    """
    return (out_channels // 2) * _SCALE_TENTHS[channel_gene] // 10


def conv_out(size: int, stride: int) -> int:
    """Output size of an odd-kernel conv with 'same' padding k // 2: ceil(size / stride)."""
    return (size - 1) // stride + 1


@dataclass(frozen=True)
class SearchSpace:
    """Everything that fixes the supernet's shape; hashable and serialisable (``to_dict``)."""

    stage_depths: tuple[int, ...] = DEFAULT_DEPTHS
    stage_channels: tuple[int, ...] = LAYOUTS["oneshot"]
    channel_genes: tuple[int, ...] = tuple(range(2, 10))  # allowed channel genes: 0.6..2.0
    use_se: bool = False
    last_conv_after_pooling: bool = False
    num_classes: int = 1000
    input_size: int = 224
    input_channels: int = 3
    stem_channels: int = 16
    stem_stride: int = 2
    last_channels: int = 1024
    dropout: float | None = None  # None: 0.1 without SE, 0.2 with SE (SPEC §1)

    def __post_init__(self) -> None:
        object.__setattr__(self, "stage_depths", tuple(int(d) for d in self.stage_depths))
        object.__setattr__(self, "stage_channels", tuple(int(c) for c in self.stage_channels))
        object.__setattr__(self, "channel_genes", tuple(sorted({int(g) for g in self.channel_genes})))
        self._validate()

    def _validate(self) -> None:
        if len(self.stage_depths) != len(self.stage_channels) or not self.stage_depths:
            raise SposError(
                f"stage_depths {list(self.stage_depths)} and stage_channels "
                f"{list(self.stage_channels)} must be non-empty and of equal length"
            )
        if any(d < 1 for d in self.stage_depths):
            raise SposError(f"every stage needs at least one block, got depths {list(self.stage_depths)}")
        if not self.channel_genes or not all(0 <= g < len(SCALES) for g in self.channel_genes):
            raise SposError(
                f"channel_genes {list(self.channel_genes)} must be a non-empty subset of 0..{len(SCALES) - 1}"
            )
        if self.stem_stride not in (1, 2):
            raise SposError(f"stem_stride must be 1 or 2, got {self.stem_stride}")
        if self.input_size < 8:
            raise SposError(f"input_size {self.input_size} is too small; use 8 or more (224 for ImageNet)")
        if self.input_channels < 1 or self.num_classes < 2:
            raise SposError("input_channels must be >= 1 and num_classes >= 2")
        inp = self.stem_channels
        for s, oup in enumerate(self.stage_channels):
            if oup - inp < 1 or oup % 2:
                raise SposError(
                    f"stage {s + 1} has {oup} output channels for {inp} input channels: the "
                    f"stride-2 main branch would get {oup - inp}; use even channels larger than "
                    f"the stage input (a larger width or a smaller stem)"
                )
            if mid_channels(oup, self.channel_genes[0]) < 1:
                raise SposError(
                    f"stage {s + 1} ({oup} channels) gets 0 mid channels at scale "
                    f"{SCALES[self.channel_genes[0]]}; raise the smallest channel gene or the width"
                )
            inp = oup

    # ---- construction -------------------------------------------------------------------
    @classmethod
    def preset(cls, layout: str = "oneshot", width: float = 1.0, **kwargs) -> SearchSpace:
        """The `oneshot` or `shufflenetv2+` layout, optionally scaled by ``width``."""
        if layout not in LAYOUTS:
            raise SposError(f"unknown layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
        channels = tuple(int(round(c * width / 2)) * 2 for c in LAYOUTS[layout])
        return cls(stage_channels=channels, **kwargs)

    @classmethod
    def from_options(cls, opts: dict, defaults: dict | None = None) -> SearchSpace:
        """The one way to build a space from user input (a config's ``space:`` section, CLI
        flags): SearchSpace fields, with ``layout`` (a :data:`LAYOUTS` name) and ``width`` (a
        multiplier on its channels) as an alternative to ``stage_channels``.

        ``defaults`` (e.g. :func:`spos.data.data_info`'s classes, channels and input size) fill
        the keys ``opts`` does not give; ``opts``' ``stage_channels`` overrides a default
        layout/width and vice versa. Unknown keys, both forms at once and bad values raise
        SposError naming them.
        """
        given = dict(opts)
        allowed = set(cls.__dataclass_fields__) | {"layout", "width"}
        unknown = sorted(set(given) - allowed)
        if unknown:
            raise SposError(f"unknown search-space keys {unknown}; allowed: {sorted(allowed)}")
        base = dict(defaults or {})
        if "stage_channels" in given:
            base.pop("layout", None), base.pop("width", None)
        if given.keys() & {"layout", "width"}:
            base.pop("stage_channels", None)
        merged = {**base, **given}
        layout, width = merged.pop("layout", None), merged.pop("width", None)
        if "stage_channels" in merged and (layout, width) != (None, None):
            raise SposError("space: give either stage_channels or layout/width, not both")
        try:
            if (layout, width) == (None, None):
                return cls.from_dict(merged)
            return cls.preset(layout or "oneshot", width=1.0 if width is None else float(width), **merged)
        except (TypeError, ValueError) as e:  # e.g. a YAML string where a number belongs
            raise SposError(f"bad search-space value: {e}") from None

    @classmethod
    def from_dict(cls, d: dict) -> SearchSpace:
        return dataclass_from_dict(cls, d, "search-space keys")

    def to_dict(self) -> dict:
        d = asdict(self)
        for k, v in d.items():
            if isinstance(v, tuple):
                d[k] = list(v)
        return d

    def replace(self, **kwargs) -> SearchSpace:
        return replace(self, **kwargs)

    # ---- geometry ---------------------------------------------------------------------
    @property
    def num_blocks(self) -> int:
        return sum(self.stage_depths)

    @property
    def drop_rate(self) -> float:
        if self.dropout is not None:
            return self.dropout
        return 0.2 if self.use_se else 0.1

    def positions(self) -> list[Position]:
        """Static facts of every block position: channels, stride, resolution, act, SE."""
        out: list[Position] = []
        inp = self.stem_channels
        size = conv_out(self.input_size, self.stem_stride)
        n_stages = len(self.stage_depths)
        for s, (depth, oup) in enumerate(zip(self.stage_depths, self.stage_channels)):
            for i in range(depth):
                stride = 2 if i == 0 else 1
                # SPEC §1 use_se: stage 1 ReLU; later stages hard-swish; last two stages SE.
                act = "hswish" if (self.use_se and s >= 1) else "relu"
                se = self.use_se and s >= n_stages - 2
                out.append(Position(len(out), s, inp, oup, stride, size, act, se))
                size = conv_out(size, stride)
                inp = oup
        return out

    @property
    def final_size(self) -> int:
        """Spatial size of the last stage's output (7 for 224, 1 for 28 with stem stride 2)."""
        size = conv_out(self.input_size, self.stem_stride)
        for _ in self.stage_depths:
            size = conv_out(size, 2)
        return size

    def mid(self, position: int, channel_gene: int) -> int:
        return mid_channels(self.positions()[position].out_channels, channel_gene)

    @property
    def scales(self) -> tuple[float, ...]:
        return tuple(SCALES[g] for g in self.channel_genes)


@dataclass(frozen=True)
class Position:
    index: int
    stage: int
    in_channels: int
    out_channels: int
    stride: int
    input_size: int  # spatial size of the block's input
    act: str
    use_se: bool


@dataclass(frozen=True)
class Arch:
    """One path through the supernet: a block gene and a channel gene per position."""

    blocks: tuple[int, ...]
    channels: tuple[int, ...]
    stage_depths: tuple[int, ...] = field(default=DEFAULT_DEPTHS, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "blocks", tuple(int(b) for b in self.blocks))
        object.__setattr__(self, "channels", tuple(int(c) for c in self.channels))
        object.__setattr__(self, "stage_depths", tuple(int(d) for d in self.stage_depths))
        n = sum(self.stage_depths)
        if len(self.blocks) != n or len(self.channels) != n:
            raise ArchError(
                f"an arch needs {n} block genes and {n} channel genes (stages "
                f"{list(self.stage_depths)}), got {len(self.blocks)} and {len(self.channels)}"
            )
        for i, b in enumerate(self.blocks):
            if not 0 <= b < len(BLOCK_NAMES):
                raise ArchError(f"block gene {b} at position {i} is out of range; allowed 0..3")
        for i, c in enumerate(self.channels):
            if not 0 <= c < len(SCALES):
                raise ArchError(f"channel gene {c} at position {i} is out of range; allowed 0..9")

    def __str__(self) -> str:
        return self.format()

    def format(self) -> str:
        def grouped(genes: Sequence[int]) -> str:
            parts, i = [], 0
            for d in self.stage_depths:
                parts.append("".join(str(g) for g in genes[i : i + d]))
                i += d
            return "-".join(parts)

        return f"{grouped(self.blocks)}:{grouped(self.channels)}"

    @classmethod
    def parse(cls, text: str, stage_depths: Sequence[int] = DEFAULT_DEPTHS) -> Arch:
        """Parse ``BLOCKS:CHANNELS``; dashes, spaces, commas and underscores are ignored."""
        if not isinstance(text, str) or text.count(":") != 1:
            raise ArchError(
                f"cannot parse arch {text!r}: expected BLOCKS:CHANNELS such as "
                f"'0031-1100-20211020-2132:6535-2634-25754674-4543', or a zoo name"
            )
        halves = []
        for half, what in zip(text.split(":"), ("block", "channel")):
            digits = [ch for ch in half if ch not in "-_ ,"]
            bad = [ch for ch in digits if not ch.isdigit()]
            if bad:
                raise ArchError(f"cannot parse arch {text!r}: {what} genes contain {bad[0]!r}")
            halves.append([int(ch) for ch in digits])
        if "-" in text.split(":")[0]:
            groups = [len(g.replace(" ", "")) for g in text.split(":")[0].split("-")]
            if len(groups) == len(stage_depths) and tuple(groups) != tuple(stage_depths):
                raise ArchError(
                    f"arch {text!r} has stage lengths {groups}; the space has {list(stage_depths)}"
                )
        return cls(tuple(halves[0]), tuple(halves[1]), tuple(stage_depths))

    def validate(self, space: SearchSpace) -> Arch:
        """Raise :class:`ArchError` unless every gene is allowed by ``space``."""
        if tuple(self.stage_depths) != space.stage_depths:
            raise ArchError(
                f"arch has stage depths {list(self.stage_depths)}; the space has "
                f"{list(space.stage_depths)}"
            )
        for i, c in enumerate(self.channels):
            if c not in space.channel_genes:
                allowed = ", ".join(f"{g} ({SCALES[g]})" for g in space.channel_genes)
                raise ArchError(
                    f"channel gene {c} (scale {SCALES[c]}) at position {i} is not allowed by the "
                    f"search space; allowed: {allowed}"
                )
        return self

    def to_list(self) -> list[list[int]]:
        return [list(self.blocks), list(self.channels)]
