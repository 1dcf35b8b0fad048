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
    assert SearchSpace.from_options({}) == SearchSpace()


def test_from_options_names_unknown_keys_mixed_forms_and_bad_values():
    with pytest.raises(SposError, match=r"unknown search-space keys \['depth'\].*'layout'"):
        SearchSpace.from_options({"depth": 3})
    with pytest.raises(SposError, match="either stage_channels or layout/width"):
        SearchSpace.from_options({"layout": "oneshot", "stage_channels": [64, 160, 320, 640]})
    with pytest.raises(SposError, match="bad search-space value"):
        SearchSpace.from_options({"width": "wide"})
    with pytest.raises(SposError, match="unknown layout"):
        SearchSpace.from_options({"layout": "resnet"})
