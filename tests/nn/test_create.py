import random

import pytest
import torch

import spos
from spos.cost import Costs, count
from spos.errors import SposError
from spos.genes import sample
from spos.nn.io import model_payload
from spos.nn.supernet import SubNet, SuperNet
from spos.runs import save_checkpoint


def test_a_zoo_name_is_one_call_with_its_own_options():
    with torch.device("meta"):
        net = spos.create_model("oneshot-s+")
    assert type(net) is SubNet and isinstance(net, torch.nn.Module) and net.space.use_se
    assert count(net, 224) == Costs(291_475_944, 3_541_829)  # SPEC §2
    with torch.device("meta"):
        ten = spos.create_model("oneshot-s+", num_classes=10)
    assert ten.classifier[-1].out_features == 10


def test_an_arch_string_takes_space_options(tiny_space):
    arch = str(sample(tiny_space, random.Random(1)))
    opts = {k: v for k, v in tiny_space.to_dict().items() if k not in ("channel_genes", "num_classes")}
    net = spos.create_model(arch, num_classes=7, **opts)
    assert str(net.arch) == arch and net(torch.zeros(2, 3, 32, 32)).shape == (2, 7)
    with pytest.raises(SposError, match="lacks the ':'"):
        spos.create_model(arch.replace(":", ""), **opts)


def test_a_subnet_file_gives_its_weights_and_a_new_classifier_for_fine_tuning(tmp_path, tiny_space):
    torch.manual_seed(0)
    trained = SubNet(tiny_space, sample(tiny_space, random.Random(2))).eval()
    save_checkpoint(model_payload(trained, tiny_space, trained.arch), tmp_path / "final.pt")
    x = torch.randn(3, 3, 32, 32)

    same = spos.create_model(checkpoint=tmp_path / "final.pt").eval()
    assert torch.equal(same(x), trained(x))
    assert spos.create_model(str(trained.arch), checkpoint=tmp_path / "final.pt").arch == trained.arch

    five = spos.create_model(checkpoint=tmp_path / "final.pt", num_classes=5).eval()
    assert five(x).shape == (3, 5) and five.space.num_classes == 5
    kept = {k: v for k, v in trained.state_dict().items() if not k.startswith("classifier.")}
    assert all(torch.equal(five.state_dict()[k], v) for k, v in kept.items())
    features = lambda net: net.head(net.features(net.stem(x)))  # noqa: E731
    assert torch.equal(features(five), features(trained))

    other = str(sample(tiny_space, random.Random(3)))
    with pytest.raises(SposError, match="holds arch .*, not "):
        spos.create_model(other, checkpoint=tmp_path / "final.pt")
    with pytest.raises(SposError, match="carries its own search space"):
        spos.create_model(checkpoint=tmp_path / "final.pt", input_size=64)


def test_a_supernet_file_gives_the_path_of_an_arch(tmp_path, tiny_space):
    torch.manual_seed(0)
    supernet = SuperNet(tiny_space).eval()
    save_checkpoint(model_payload(supernet, tiny_space, kind="supernet"), tmp_path / "supernet.pt")
    arch = sample(tiny_space, random.Random(4))
    net = spos.create_model(str(arch), checkpoint=tmp_path / "supernet.pt").eval()
    x = torch.randn(2, 3, 32, 32)
    assert type(net) is SubNet and torch.allclose(net(x), supernet(x, arch), atol=1e-5)
    with pytest.raises(SposError, match="is a supernet: pass the arch"):
        spos.create_model(checkpoint=tmp_path / "supernet.pt")
