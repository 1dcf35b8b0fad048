import random

import numpy as np
import pytest
import torch
from torch import nn

from spos import zoo
from spos.cli import main
from spos.cost.counting import profile
from spos.deploy.export import GRAPHS, deployable, export_onnx, onnx_accuracy
from spos.deploy.int8 import shuffle_in_weights
from spos.deploy.quantize import quantize_onnx
from spos.errors import SposError
from spos.genes import sample
from spos.nn.fold import fold_bn, shuffle_as_conv
from spos.nn.io import model_payload
from spos.nn.onnx import INPUT_NAME, onnx_predict, ort_session, strided_slices
from spos.nn.supernet import SubNet, SuperNet
from spos.runs import save_checkpoint
from spos.space import Arch, SearchSpace


def _random_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """BN statistics and affine terms far from their init, so folding has something to fold."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(0.2 * torch.randn(n, generator=g))
                m.running_var.copy_(0.5 + 1.5 * torch.rand(n, generator=g))
                m.weight.copy_(0.5 + torch.rand(n, generator=g))
                m.bias.copy_(0.2 * torch.randn(n, generator=g))
    return model.eval()


@pytest.mark.parametrize("name", list(zoo.ZOO))
def test_fold_bn_matches_unfolded_model_in_eval_mode_for_every_zoo_model(name):
    e = zoo.get(name)
    model = _random_bn(SubNet(e.space(input_size=64), e.arch))
    folded = fold_bn(model)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())  # the original is untouched
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref, got = model(x), folded(x)
    assert ref.abs().max() > 1e-2  # a non-degenerate output
    assert (got - ref).abs().max().item() <= 1e-4


def test_shuffle_as_conv_keeps_outputs_and_leaves_the_original_model_alone(tiny_space):
    model = _random_bn(SubNet(tiny_space, sample(tiny_space, random.Random(0))))
    keys = list(model.state_dict())
    swapped = shuffle_as_conv(model)
    assert list(model.state_dict()) == keys and all(b.split is None for b in model.features)
    assert sum(b.split is not None for b in swapped.features) == sum(
        b.stride == 1 for b in model.features
    )
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), swapped(x))


def _deploy_cases():
    """(space, arch) pairs that reach every branch of the int8 graph: stages with 0-7 stride-1
    blocks (group depth), SE and MobileNetV3 head, odd widths, 28x28 grey input."""
    base = SearchSpace(stage_depths=(1, 1, 2, 1), stage_channels=(24, 48, 96, 192), input_size=32,
                       num_classes=10, stem_channels=8, stem_stride=1, last_channels=64)  # fmt: skip
    spaces = [
        base,
        base.replace(use_se=True, last_conv_after_pooling=True),
        base.replace(stage_depths=(2, 8, 1, 3), stage_channels=(40, 56, 72, 88), use_se=True),
        SearchSpace.preset("oneshot", width=0.5, stage_depths=(1, 1, 2, 1), input_size=28,
                           input_channels=1, num_classes=10, stem_stride=2),
    ]  # fmt: skip
    rng = random.Random(7)
    return [(s, sample(s, rng)) for s in spaces for _ in range(3)]


@pytest.mark.parametrize("case", range(12))
def test_int8_graph_has_no_strided_slice_and_keeps_outputs(tmp_path, case):
    space, arch = _deploy_cases()[case]
    model = _random_bn(SubNet(space, arch), seed=case)
    x = torch.randn(2, space.input_channels, space.input_size, space.input_size)
    with torch.no_grad():
        ref = model(x)
        assert (shuffle_in_weights(model)(x) - ref).abs().max().item() <= 1e-4
        assert (deployable(model, "int8")(x) - ref).abs().max().item() <= 1e-4
    plain, int8 = tmp_path / "plain.onnx", tmp_path / "int8.onnx"
    shape = (space.input_channels, space.input_size, space.input_size)
    export_onnx(model, plain, shape)
    export_onnx(model, int8, shape, graph="int8")
    assert strided_slices(plain) == sum(b.stride == 1 for b in model.features) * 2
    assert strided_slices(int8) == 0
    got = ort_session(int8).run(None, {INPUT_NAME: x.numpy()})[0]
    assert np.abs(got - ref.numpy()).max() <= 1e-4


def test_unknown_layout_is_refused(tiny_space):
    with pytest.raises(SposError, match="unknown graph 'nchw'"):
        deployable(SubNet(tiny_space, sample(tiny_space, random.Random(0))), "nchw")


@pytest.mark.parametrize("graph", GRAPHS)
def test_onnx_export_matches_pytorch_in_onnxruntime_with_a_dynamic_batch(
    tmp_path, tiny_space, graph
):
    space = tiny_space.replace(use_se=True, last_conv_after_pooling=True)
    model = _random_bn(SubNet(space, sample(space, random.Random(3))))
    path = tmp_path / "m.onnx"
    export_onnx(model, path, (3, 32, 32), graph=graph)
    session = ort_session(path)
    for batch in (1, 5):
        x = torch.randn(batch, 3, 32, 32)
        with torch.no_grad():
            ref = model(x).numpy()
        got = session.run(None, {INPUT_NAME: x.numpy()})[0]
        assert got.shape == ref.shape and np.abs(got - ref).max() <= 1e-4


def test_zoo_model_exported_by_the_cli_matches_pytorch(tmp_path, capsys):
    out = tmp_path / "s.onnx"
    assert main(["export", "oneshot-s+", "--onnx", str(out), "--input-size", "64"]) == 0
    assert "max abs diff" in capsys.readouterr().out  # the command itself compared with PyTorch
    torch.manual_seed(0)  # the CLI's --seed default: the same random weights
    e = zoo.get("oneshot-s+")
    model = SubNet(e.space(input_size=64), e.arch).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ref = model(x).numpy()
    assert np.abs(ort_session(out).run(None, {INPUT_NAME: x.numpy()})[0] - ref).max() <= 1e-4


def test_export_accepts_a_trained_subnet_file_and_rejects_a_supernet(tmp_path, tiny_space, capsys):
    arch = sample(tiny_space, random.Random(1))
    save_checkpoint(
        model_payload(SubNet(tiny_space, arch), tiny_space, arch), tmp_path / "final.pt"
    )
    save_checkpoint(
        model_payload(SuperNet(tiny_space), tiny_space, None, kind="supernet"),
        tmp_path / "super.pt",
    )
    assert main(["export", str(tmp_path / "final.pt"), "--onnx", str(tmp_path / "f.onnx")]) == 0
    assert ort_session(tmp_path / "f.onnx").get_inputs()[0].shape[1:] == [3, 32, 32]
    assert main(["export", str(tmp_path / "super.pt"), "--onnx", str(tmp_path / "g.onnx")]) == 2
    assert "supernet" in capsys.readouterr().err


def test_quantize_rejects_missing_and_non_onnx_files(tmp_path):
    (tmp_path / "x.onnx").write_text("not a model")
    for bad in (tmp_path / "missing.onnx", tmp_path / "x.onnx"):
        with pytest.raises(SposError):
            quantize_onnx(bad, tmp_path / "q.onnx", torch.zeros(1, 3, 8, 8))


def _blobs(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """10 classes of smooth random 16x16 templates under heavy noise: learnable, not trivial."""
    templates = torch.nn.functional.interpolate(
        torch.randn(10, 1, 4, 4, generator=torch.Generator().manual_seed(0)),
        size=16,
        mode="bilinear",
    )
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 10, (n,), generator=g)
    return templates[labels] + 3.0 * torch.randn(n, 1, 16, 16, generator=g), labels


@pytest.fixture(scope="module")
def trained_subnet() -> SubNet:
    """A small SubNet with stride-1 blocks, SE and hard-swish, trained on the blobs."""
    space = SearchSpace(
        stage_depths=(1, 2, 2, 1),
        stage_channels=(16, 32, 64, 128),
        input_size=16,
        input_channels=1,
        num_classes=10,
        stem_channels=8,
        stem_stride=1,
        last_channels=64,
        use_se=True,
    )
    torch.manual_seed(0)
    model = SubNet(space, Arch((0, 1, 3, 0, 2, 1), (9, 9, 9, 9, 9, 9), (1, 2, 2, 1)))
    x, y = _blobs(4096, seed=1)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True)
    model.train()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a model this small gains nothing from 2 threads
    try:
        for _ in range(200):
            i = torch.randint(0, len(x), (64,))
            loss = nn.functional.cross_entropy(model(x[i]), y[i])
            opt.zero_grad()
            loss.backward()
            opt.step()
    finally:
        torch.set_num_threads(threads)
    return model.eval()


def _int8_graph(path) -> tuple[set[str], int]:
    """The op types of an ONNX file and how many int8 numbers its initializers hold."""
    import onnx

    graph = onnx.load(str(path)).graph
    int8 = sum(int(np.prod(t.dims)) for t in graph.initializer if t.data_type == onnx.TensorProto.INT8)
    return {n.op_type for n in graph.node}, int8


@pytest.mark.parametrize("graph", ["plain", "int8"])
def test_int8_model_of_a_trained_subnet_stays_within_2_points_of_fp32(
    tmp_path, trained_subnet, graph
):
    model = trained_subnet
    x, _ = _blobs(128, seed=1)
    fp32, int8 = tmp_path / "m.onnx", tmp_path / "m8.onnx"
    export_onnx(model, fp32, (1, 16, 16), graph=graph)
    quantize_onnx(fp32, int8, x)
    tx, ty = _blobs(2000, seed=2)
    a32, a8 = onnx_accuracy(fp32, tx, ty), onnx_accuracy(int8, tx, ty)
    assert a32 >= 0.6  # it learned (chance is 0.1), so a broken quantiser would show
    assert abs(a32 - a8) <= 0.02
    # The bound alone also holds for a "quantiser" that copies the fp32 file (gap 0): the int8
    # file must really be quantised, read from the graph itself, and compute something else.
    ops, int8_weights = _int8_graph(int8)
    assert "QuantizeLinear" in ops and ops & {"DequantizeLinear", "QLinearConv", "QLinearMatMul",
                                               "ConvInteger", "MatMulInteger"}  # fmt: skip
    assert "QuantizeLinear" not in _int8_graph(fp32)[0]
    conv_weights = sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Conv2d))
    assert int8_weights >= 0.9 * conv_weights  # the conv weights are stored as int8
    x32 = onnx_predict(ort_session(fp32), tx[:256])
    x8 = onnx_predict(ort_session(int8), tx[:256])
    assert not np.array_equal(x32, x8)
    assert np.abs(x8 - x32).max() > 1e-3 * np.abs(x32).max()  # more than float rounding
    with torch.no_grad():
        assert a32 == pytest.approx((model(tx).argmax(1) == ty).float().mean().item(), abs=1e-3)


def test_profile_cli_writes_rows_and_totals(tmp_path, capsys):
    out = tmp_path / "p.csv"
    assert main(["profile", "oneshot-s+", "--micronet", "--csv", str(out)]) == 0
    text = capsys.readouterr().out
    assert "mults 298,422,720" in text and "MicroNet score" in text
    lines = out.read_text().splitlines()
    assert lines[0].startswith(
        "name,op,input_shape,kernel,cin,cout,params,mults,adds,macs,quantizable"
    )
    assert lines[-1].startswith("TOTAL,") and "3531027" in lines[-1]


def test_micronet_difference_to_the_mxnet_profile_is_what_docs_profiling_md_says():
    """docs/profiling.md: the MXNet profiler (a) dropped BN instead of folding it, so it has no
    folded biases and no bias adds; (b) counted hard-swish as 4 mults (clip = 2) and hard-sigmoid
    as 3; (c) counted the channel shuffle as a sparse 1x1 conv (1 mult per element; C weights +
    a C^2-bit mask at 16 bits = C + C^2/16 params); (d) left out the SE scale multiply."""
    e = zoo.get("oneshot-s+")
    model = SubNet(e.space(), e.arch)
    rows = profile(model, 224, micronet=True)
    plain = {
        name for name, m in model.named_modules() if isinstance(m, nn.Conv2d) and m.bias is None
    }
    folded_outputs = sum(
        r.mults // (r.kernel**2 * (r.cin if r.op == "conv" else 1)) for r in rows if r.name in plain
    )
    folded_biases = sum(r.cout for r in rows if r.name in plain)
    hswish = sum(r.adds for r in rows if r.op == "hardswish")
    hsigmoid = sum(r.adds for r in rows if r.op == "hardsigmoid")
    stride1 = [p for p in e.space().positions() if p.stride == 1]
    shuffle_elems = sum(p.in_channels * p.input_size**2 for p in stride1)
    shuffle_params = sum(p.in_channels + p.in_channels**2 // 16 for p in stride1)
    se_scale = sum(r.mults for r in rows if r.op == "mul")
    params = sum(r.params for r in rows) - folded_biases + shuffle_params
    mults = sum(r.mults for r in rows) + hswish + hsigmoid + shuffle_elems - se_scale
    adds = sum(r.adds for r in rows) - folded_outputs
    assert (round(params / 1e6, 3), round(mults / 1e6, 1), round(adds / 1e6, 1)) == (
        3.652,
        301.4,
        288.3,
    )


@pytest.mark.parametrize("graph", ["plain", "int8"])
def test_quantize_cli_reports_accuracy_and_latency_and_hints_at_the_int8_graph(
    tmp_path, monkeypatch, capsys, graph
):
    from idx_fixtures import write_fashion

    monkeypatch.setenv("SPOS_DATA", str(write_fashion(tmp_path / "fashion", 64, 64)))
    space = SearchSpace.preset("oneshot", width=0.5, stage_depths=(1, 2, 1, 1), input_size=28,
                               input_channels=1, num_classes=10, stem_stride=2)  # fmt: skip
    model = _random_bn(SubNet(space, sample(space, random.Random(0))))
    fp32, int8 = tmp_path / "m.onnx", tmp_path / "m8.onnx"
    export_onnx(model, fp32, (1, 28, 28), graph=graph)
    args = ["quantize", str(fp32), "--calib", "builtin", "--out", str(int8), "--calib-images", "32"]
    assert main([*args, "--eval-images", "64"]) == 0
    out = capsys.readouterr().out
    assert "top-1 on 64 test images: fp32" in out and "latency, batch 1, 2 threads" in out
    assert ("--graph int8" in out) == (graph == "plain")
    assert ort_session(int8).run(None, {INPUT_NAME: np.zeros((2, 1, 28, 28), np.float32)})[0].shape == (2, 10)
