import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spos import zoo
from spos.errors import SposError
from spos.genes import largest, sample, smallest  # fmt: skip
from spos.space import Arch, ArchError, SearchSpace, mid_channels  # fmt: skip

SPACE = SearchSpace()


def test_oneshot_mid_channels_match_spec():
    e = zoo.get("oneshot")
    mids = [SPACE.mid(i, c) for i, c in enumerate(e.arch.channels)]
    assert mids == [44, 38, 25, 38, 48, 112, 64, 80, 96, 192, 256, 192, 160, 224, 256, 160,
                    320, 384, 320, 256]  # fmt: skip
    s = zoo.get("oneshot-s+")
    mids = [SPACE.mid(i, c) for i, c in enumerate(s.arch.channels)]
    assert mids == [57, 51, 44, 57, 96, 128, 64, 80, 96, 160, 96, 128, 160, 192, 224, 224,
                    256, 256, 320, 448]  # fmt: skip


def test_mid_uses_exact_integer_scaling():
    # float gives int(45 * 1.4) == 62; the SPEC's formula means 63
    assert mid_channels(90, 6) == 63


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_arch_string_round_trips(seed):
    arch = sample(SPACE, random.Random(seed))
    assert Arch.parse(str(arch)) == arch
    assert Arch.parse(str(arch).replace("-", "")) == arch


def test_parse_reports_position_and_allowed_values():
    with pytest.raises(ArchError, match="position 3.*allowed 0..3"):
        Arch.parse("0004-0000-00000000-0000:5555-5555-55555555-5555")
    with pytest.raises(ArchError, match="20 block genes"):
        Arch.parse("000:555")
    with pytest.raises(ArchError, match="position 0 is not allowed.*allowed: 2 \\(0.6\\)"):
        Arch.parse("0000-0000-00000000-0000:0555-5555-55555555-5555").validate(SPACE)
    with pytest.raises(ArchError, match="BLOCKS:CHANNELS"):
        Arch.parse("nonsense")
    with pytest.raises(ArchError, match="contain 'x'"):
        Arch.parse("000x-0000-00000000-0000:5555-5555-55555555-5555")
    with pytest.raises(SposError, match="unknown zoo model 'nope'"):
        zoo.get("nope")


def test_space_rejects_bad_geometry_with_a_fix():
    with pytest.raises(SposError, match="too small"):
        SearchSpace(input_size=4)
    with pytest.raises(SposError, match="stride-2 main branch would get 0"):
        SearchSpace.preset("oneshot", width=0.25)
    with pytest.raises(SposError, match="unknown layout"):
        SearchSpace.preset("resnet")


def test_space_dict_round_trip_and_presets():
    s = SearchSpace.preset("shufflenetv2+", use_se=True)
    assert s.stage_channels == (48, 128, 256, 512)
    assert SearchSpace.from_dict(s.to_dict()) == s
    assert SearchSpace.preset("oneshot", width=0.5).stage_channels == (32, 80, 160, 320)
    assert largest(SPACE).blocks == (3,) * 20 and smallest(SPACE).channels == (2,) * 20


def test_from_options_builds_a_layout_or_explicit_channels_with_defaults_underneath():
    dataset = {"num_classes": 10, "input_channels": 1, "input_size": 28}
    s = SearchSpace.from_options({"layout": "oneshot", "width": 0.5, "use_se": True}, defaults=dataset)
    assert s == SearchSpace.preset("oneshot", width=0.5, use_se=True, **dataset)
    assert SearchSpace.from_options({"input_size": 64}, defaults=dataset).input_size == 64
    explicit = SearchSpace.from_options({"stage_channels": [32, 80, 160, 320]}, defaults={"layout": "shufflenetv2+"})
    assert explicit.stage_channels == (32, 80, 160, 320)
    by_layout = SearchSpace.from_options({"width": 2.0}, defaults={"stage_channels": (32, 80, 160, 320)})
    assert by_layout.stage_channels == (128, 320, 640, 1280)
    # A layout alone (no width) also replaces channels that came from the defaults.
    assert SearchSpace.from_options({"layout": "shufflenetv2+"}, defaults={"stage_channels": (32, 80, 160, 320)}) == (
        SearchSpace.preset("shufflenetv2+"))
    assert SearchSpace.from_options({}) == SearchSpace()


def test_from_options_names_unknown_keys_mixed_forms_and_bad_values():
    with pytest.raises(SposError, match=r"unknown search-space keys \['depth'\].*'layout'"):
        SearchSpace.from_options({"depth": 3})
    with pytest.raises(SposError, match="^space: give either stage_channels or layout/width, not both$"):
        SearchSpace.from_options({"layout": "oneshot", "stage_channels": [64, 160, 320, 640]})
    with pytest.raises(SposError, match="bad search-space value"):
        SearchSpace.from_options({"width": "wide"})
    with pytest.raises(SposError, match="unknown layout"):
        SearchSpace.from_options({"layout": "resnet"})


def test_positions_follow_the_spec_stage_by_stage():
    # SPEC §1 on the 224 oneshot layout: a stride-2 first block per stage, 112 -> 7 after the
    # stride-2 stem; with use_se stage 1 uses ReLU, later stages hard-swish, the last two SE.
    space = SearchSpace.preset("oneshot", use_se=True)
    stages = [0] * 4 + [1] * 4 + [2] * 8 + [3] * 4
    firsts = {0, 4, 8, 16}
    sizes = [112, 56, 56, 56, 56, 28, 28, 28, 28, 14, 14, 14, 14, 14, 14, 14, 14, 7, 7, 7]
    outs = [(64, 160, 320, 640)[s] for s in stages]
    ins = [16] + outs[:-1]
    got = space.positions()
    assert [p.index for p in got] == list(range(20)) and [p.stage for p in got] == stages
    assert [p.stride for p in got] == [2 if i in firsts else 1 for i in range(20)]
    assert [p.input_size for p in got] == sizes and space.final_size == 7
    assert [(p.in_channels, p.out_channels) for p in got] == list(zip(ins, outs))
    assert [p.act for p in got] == ["relu" if s == 0 else "hswish" for s in stages]
    assert [p.use_se for p in got] == [s >= 2 for s in stages]
    plain = SearchSpace().positions()
    assert all(p.act == "relu" and p.use_se is False for p in plain)
    assert [p.input_size for p in plain] == sizes
    assert space.mid(16, 9) == 640 and space.mid(0, 2) == 19  # (640 // 2) * 2.0, (64 // 2) * 0.6


def test_arch_normalises_its_genes_and_checks_each_half():
    import numpy as np

    arch = Arch(list(np.zeros(5, dtype=np.int64)), [9, 0, 2, 9, 4], [1, 1, 2, 1])
    assert arch.blocks == (0,) * 5 and type(arch.blocks[0]) is int
    assert arch.channels == (9, 0, 2, 9, 4) and arch.stage_depths == (1, 1, 2, 1)
    assert arch.to_list() == [[0] * 5, [9, 0, 2, 9, 4]]
    assert Arch((3,) * 5, (9,) * 5, (1, 1, 2, 1)).format() == "3-3-33-3:9-9-99-9"
    with pytest.raises(ArchError, match=r"5 block genes and 5 channel genes .* got 5 and 4"):
        Arch((0,) * 5, (5,) * 4, (1, 1, 2, 1))
    with pytest.raises(ArchError, match=r"^channel gene 10 at position 3 is out of range; allowed 0..9$"):
        Arch((0,) * 5, (5, 5, 5, 10, 5), (1, 1, 2, 1))
    with pytest.raises(ArchError, match=r"^block gene 4 at position 1 is out of range; allowed 0..3$"):
        Arch((0, 4, 0, 0, 0), (5,) * 5, (1, 1, 2, 1))


def test_parse_takes_any_separator_and_checks_stage_lengths_of_the_block_half():
    arch = Arch.parse("0031-1100-20211020-2132:6535-2634-25754674-4543")
    for text in ("0031 1100 20211020 2132:6535,2634,25754674,4543", "0031_1100_20211020_2132:65352634257546744543"):
        assert Arch.parse(text) == arch
    assert Arch.parse("0-1-23-3:2-3-45-6", (1, 1, 2, 1)).stage_depths == (1, 1, 2, 1)
    # Groups are checked when there is one per stage; other dash counts are mere separators.
    assert Arch.parse("00311100-20211020-2132:6535-2634-25754674-4543") == arch
    for channels in ("65352634257546744543", "6535-2634-25754674-4543"):
        with pytest.raises(ArchError, match=r"stage lengths \[4, 4, 7, 5\]; the space has \[4, 4, 8, 4\]$"):
            Arch.parse(f"0031-1100-2021102-02132:{channels}")
    with pytest.raises(ArchError, match="channel genes contain 'X'"):
        Arch.parse("0031-1100-20211020-2132:6535-2634-25754674-454X")
    with pytest.raises(ArchError, match="block genes contain '.'"):
        Arch.parse("0031.1100-20211020-2132:6535-2634-25754674-4543")


def test_validate_names_the_stage_depths_and_every_allowed_channel_gene():
    tiny = SearchSpace(stage_depths=(1, 1, 2, 1), channel_genes=(2, 9))
    with pytest.raises(ArchError, match=r"^arch has stage depths \[4, 4, 8, 4\]; the space has \[1, 1, 2, 1\]$"):
        Arch.parse("0031-1100-20211020-2132:9999-9999-99999999-9999").validate(tiny)
    with pytest.raises(ArchError, match=r"scale 1.0\) at position 2 .*; allowed: 2 \(0.6\), 9 \(2.0\)$"):
        Arch.parse("0-0-00-0:9-9-49-9", (1, 1, 2, 1)).validate(tiny)


def test_space_geometry_limits_are_inclusive_where_the_spec_allows():
    for ok in ({"input_size": 8}, {"num_classes": 2}, {"channel_genes": (0, 9)}, {"stem_channels": 63},
               {"stem_channels": 8, "stage_channels": (10, 20, 40, 80), "channel_genes": (0,)}):  # fmt: skip
        SearchSpace(**ok)  # 64 - 63 = 1 main-branch channel; 10 channels at 0.2 give mid 1
    bad = {
        (("input_size", 7),): "input_size 7 is too small",
        (("num_classes", 1),): "^input_channels must be >= 1 and num_classes >= 2$",
        (("input_channels", 0),): "input_channels must be >= 1",
        (("channel_genes", (9, 10)),): r"channel_genes \[9, 10\] must be a non-empty subset of 0..9$",
        (("channel_genes", ()),): r"channel_genes \[\] must be a non-empty subset",
        (("stem_stride", 3),): "stem_stride must be 1 or 2, got 3",
        (("stage_depths", (4, 4, 8)),): r"stage_depths \[4, 4, 8\] and stage_channels \[64, 160, 320, 640\] must",
        (("stage_depths", ()), ("stage_channels", ())): "must be non-empty",
        (("stage_depths", (4, 0, 8, 4)),): r"every stage needs at least one block, got depths \[4, 0, 8, 4\]",
        (("stem_channels", 64),): "stage 1 has 64 output channels for 64 input channels",
        (("stage_channels", (64, 160, 321, 640)),): "stage 3 has 321 output channels",
        (("stem_channels", 6), ("stage_channels", (8, 16, 32, 64)), ("channel_genes", (0, 9))):
            r"^stage 1 \(8 channels\) gets 0 mid channels at scale 0.2; raise",
    }  # fmt: skip
    for kwargs, message in bad.items():
        with pytest.raises(SposError, match=message):
            SearchSpace(**dict(kwargs))


def test_presets_and_options_keep_what_they_are_not_told_to_replace():
    assert SearchSpace.preset() == SearchSpace() and SearchSpace.preset(use_se=True).use_se
    with pytest.raises(SposError, match="choose one of oneshot, shufflenetv2"):
        SearchSpace.preset("resnet")
    with pytest.raises(SposError, match=r"unknown search-space keys \['bogus'\]"):
        SearchSpace.from_dict({"bogus": 1})
    assert SearchSpace.from_options({"layout": "shufflenetv2+"}).stage_channels == (48, 128, 256, 512)
    narrow = (32, 80, 160, 320)
    assert SearchSpace.from_options({"input_size": 64}, defaults={"stage_channels": narrow}).stage_channels == narrow
    given = SearchSpace.from_options({"stage_channels": narrow}, defaults={"layout": "oneshot", "width": 2.0})
    assert given.stage_channels == narrow
