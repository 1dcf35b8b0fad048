"""The library calls behind ``spos count | profile | export | quantize`` (the CLI only prints them)."""

import random

import numpy as np
import pytest
import torch

from spos.deploy import (
    count_arch,
    export_checked,
    export_onnx,
    export_source,
    load_for_export,
    load_images,
    profile_arch,
    quantize_and_measure,
)
from spos.errors import SposError
from spos.genes import sample
from spos.nn.io import model_payload
from spos.nn.onnx import INPUT_NAME, ort_session
from spos.nn.supernet import SubNet, SuperNet
from spos.runs import save_checkpoint
from spos.space import SearchSpace


def test_profile_totals_match_the_count_and_the_csv_ends_with_them(tmp_path):
    space = SearchSpace(input_size=64)
    counted = count_arch("oneshot-s+", space)
    prof = profile_arch("oneshot-s+", space, micronet=True)
    t = prof.totals
    assert (t["params"], t["mults"], t["adds"]) == (
        counted["micronet_params"], counted["micronet_mults"], counted["micronet_adds"]
    )  # fmt: skip
    assert prof.micronet_score == pytest.approx(counted["micronet_score"], abs=1e-6)
    assert all(r.quantizable for r in prof.quantizable) and 0 < len(prof.quantizable) < len(prof.rows)
    lines = prof.write_csv(tmp_path / "sub" / "p.csv").read_text().splitlines()
    assert len(lines) == len(prof.rows) + 2 and lines[-1].startswith(f"TOTAL,,,,,,{t['params']},")


def test_profile_without_micronet_builds_on_the_meta_device_and_counts_like_spec_macs():
    prof = profile_arch("oneshot")
    assert prof.totals["macs"] == count_arch("oneshot")["macs"] == 327_909_096


def test_load_for_export_keeps_a_subnet_files_size_unless_overridden_and_refuses_a_supernet(
    tmp_path, tiny_space
):
    arch = sample(tiny_space, random.Random(1))
    save_checkpoint(model_payload(SubNet(tiny_space, arch), tiny_space, arch), tmp_path / "final.pt")
    save_checkpoint(model_payload(SuperNet(tiny_space), tiny_space, None, kind="supernet"), tmp_path / "s.pt")
    assert load_for_export(str(tmp_path / "final.pt"))[1].input_size == 32
    assert load_for_export(str(tmp_path / "final.pt"), input_size=64)[1].input_size == 64
    with pytest.raises(SposError, match="holds a supernet"):
        load_for_export(str(tmp_path / "s.pt"))
    a, _ = load_for_export(str(arch), tiny_space, seed=3)
    b, _ = load_for_export(str(arch), tiny_space, seed=3)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_export_source_writes_a_checked_file_with_the_resolved_shape(tmp_path, tiny_space):
    arch = str(sample(tiny_space, random.Random(2)))
    result = export_source(arch, tmp_path / "dir" / "m.onnx", graph="int8", space=tiny_space, input_size=64)
    assert result.input_shape == (3, 64, 64) and result.path.is_file()
    assert 0 <= result.max_abs_diff <= 1e-4
    out = ort_session(result.path).run(None, {INPUT_NAME: np.zeros((3, 3, 64, 64), np.float32)})[0]
    assert out.shape == (3, 10)


def test_export_checked_refuses_a_file_that_differs_from_pytorch(tmp_path, tiny_space):
    model = SubNet(tiny_space, sample(tiny_space, random.Random(0)))
    with pytest.raises(SposError, match="differs from PyTorch"):
        export_checked(model, tmp_path / "m.onnx", (3, 32, 32), atol=-1.0)


def test_quantize_and_measure_reports_accuracy_only_when_asked(tmp_path, monkeypatch):
    from idx_fixtures import write_fashion

    monkeypatch.setenv("SPOS_DATA", str(write_fashion(tmp_path / "fashion", 64, 64)))
    space = SearchSpace.preset("oneshot", width=0.5, stage_depths=(1, 1, 1, 1), input_size=28,
                               input_channels=1, num_classes=10)  # fmt: skip
    fp32, int8 = tmp_path / "m.onnx", tmp_path / "m8.onnx"
    export_onnx(SubNet(space, sample(space, random.Random(0))), fp32, (1, 28, 28), graph="int8")
    r = quantize_and_measure(fp32, int8, "builtin", calib_images=16, eval_images=0, threads=1)
    assert (r.calib_images, r.eval_images, r.top1_fp32, r.top1_int8) == (16, 0, None, None)
    assert r.strided_slices == 0 and r.input_shape == (1, 28, 28) and int8.is_file()
    assert r.latency_fp32_ms > 0 and r.latency_int8_ms > 0
    images, labels = load_images("builtin", "val", 1000, (1, 28, 28))
    assert images.shape == (64, 1, 28, 28) and len(labels) == 64  # n is capped at the split's size
    with pytest.raises(SposError, match="model expects"):
        load_images("builtin", "val", 4, (3, 28, 28))
