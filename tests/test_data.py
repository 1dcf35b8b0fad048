import gzip
import warnings

import numpy as np
import pytest
import torch
from idx_fixtures import fake_images, write_fashion, write_idx
from PIL import Image

from spos import data
from spos.errors import SposError


@pytest.fixture
def fashion(tmp_path, monkeypatch):
    folder = write_fashion(tmp_path / "fm", n_train=300, n_val=100)
    monkeypatch.setenv("SPOS_DATA", str(folder))
    return folder


def test_read_idx_round_trips_shape_and_bytes(tmp_path):
    images, _ = fake_images(7, 3)
    write_idx(tmp_path / "x-idx3-ubyte.gz", images)
    write_idx(tmp_path / "x-idx3-ubyte", images)
    for name in ("x-idx3-ubyte.gz", "x-idx3-ubyte"):
        got = data.read_idx(tmp_path / name)
        assert got.shape == (7, 28, 28) and np.array_equal(got, images)


def test_corrupt_idx_files_are_user_errors(tmp_path):
    (tmp_path / "bad.gz").write_bytes(gzip.compress(b"\x00\x00\x0d\x01" + b"\x00" * 12))
    with pytest.raises(SposError, match="bad magic"):
        data.read_idx(tmp_path / "bad.gz")
    images, _ = fake_images(4, 0)
    write_idx(tmp_path / "short", images)
    (tmp_path / "short").write_bytes((tmp_path / "short").read_bytes()[:-10])
    with pytest.raises(SposError, match="truncated"):
        data.read_idx(tmp_path / "short")


def test_builtin_is_found_via_spos_data_and_normalised(fashion):
    ds = data.dataset("builtin", "train", train=False)
    assert len(ds) == 300 and len(data.dataset("builtin", "val", False)) == 100
    images, labels = fake_images(300, 0)
    x, y = ds[5]
    expected = (torch.from_numpy(images[5]).float() / 255 - 0.2860) / 0.3530
    torch.testing.assert_close(x[0], expected)
    assert x.shape == (1, 28, 28) and y == labels[5]
    assert data.data_info("builtin") == {"num_classes": 10, "input_channels": 1, "input_size": 28}


def test_builtin_train_flips_half_the_images_reproducibly(fashion):
    train = data.dataset("builtin", "train", train=True)
    plain = data.dataset("builtin", "train", train=False)
    idx = list(range(200))
    x1, _ = train.batch(idx, torch.Generator().manual_seed(4))
    x2, _ = train.batch(idx, torch.Generator().manual_seed(4))
    x0, _ = plain.batch(idx)
    assert torch.equal(x1, x2)
    flipped = torch.tensor([torch.equal(a, b.flip(-1)) for a, b in zip(x1, x0)])
    same = torch.tensor([torch.equal(a, b) for a, b in zip(x1, x0)])
    assert bool((flipped | same).all()) and 60 < int(flipped.sum()) < 140


def test_builtin_resizes_to_input_size(fashion):
    x, _ = data.dataset("builtin", "val", False, input_size=16).batch([0, 1])
    assert x.shape == (2, 1, 16, 16)


def test_missing_builtin_says_how_to_fetch_it(tmp_path, monkeypatch):
    monkeypatch.setenv("SPOS_DATA", str(tmp_path / "nothing"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(data.fashion, "SYSTEM_FASHION_DIR", tmp_path / "no-system")
    with pytest.raises(SposError, match="spos data fetch") as e:
        data.dataset("builtin", "train", True)
    assert "\n" not in str(e.value)


def test_builtin_is_found_in_the_per_user_data_folder(tmp_path, monkeypatch):
    monkeypatch.delenv("SPOS_DATA", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(data.fashion, "SYSTEM_FASHION_DIR", tmp_path / "no-system")
    assert data.user_data_dir() == tmp_path / "xdg" / "spos"
    write_fashion(tmp_path / "xdg" / "spos" / "fashion-mnist", n_train=20, n_val=10)
    assert data.fashion_mnist_dir() == tmp_path / "xdg" / "spos" / "fashion-mnist"
    assert len(data.dataset("builtin", "val", False)) == 10


def _fake_debian_tools(tmp_path, monkeypatch):
    """apt-get and dpkg-deb stand-ins on PATH: apt-get refuses `download` until it is given
    private package lists (a fresh machine), then leaves a .deb whose unpacked tree is a
    generated dataset. Returns the file their calls are logged to."""
    tree = tmp_path / "deb-tree"
    write_fashion(tree / "usr/share/datasets/fashion-mnist", n_train=20, n_val=10)
    (tree / "usr/share/doc/dataset-fashion-mnist").mkdir(parents=True)
    (tree / "usr/share/doc/dataset-fashion-mnist/copyright").write_text("MIT, Zalando Research")
    bin_dir, calls = tmp_path / "bin", tmp_path / "calls.log"
    bin_dir.mkdir()
    (bin_dir / "apt-get").write_text(f"""#!/bin/sh
echo "apt-get $*" >> {calls}
case "$*" in
  *Dir::State::Lists*download*) touch dataset-fashion-mnist_1.0_all.deb ;;
  *update*) ;;
  *) echo "E: Unable to locate package dataset-fashion-mnist" >&2; exit 100 ;;
esac
""")
    (bin_dir / "dpkg-deb").write_text(f"""#!/bin/sh
echo "dpkg-deb $*" >> {calls}
mkdir -p "$3" && cp -r {tree}/. "$3"
""")
    for tool in ("apt-get", "dpkg-deb"):
        (bin_dir / tool).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    monkeypatch.setattr(data.fashion, "SYSTEM_FASHION_DIR", tmp_path / "no-system")
    return calls


def test_fetch_unpacks_the_debian_package_without_root(tmp_path, monkeypatch):
    calls = _fake_debian_tools(tmp_path, monkeypatch)
    logs: list[str] = []
    folder = data.fetch_fashion_mnist(tmp_path / "data", log=logs.append)
    assert folder == tmp_path / "data" / "fashion-mnist"
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        ["COPYRIGHT", *[f for files in data.FASHION_FILES.values() for f in files]])
    assert data.read_idx(folder / data.FASHION_FILES["val"][1]).shape == (10,)
    log = calls.read_text()
    assert "update" in log and "dpkg-deb -x" in log and logs == [f"Fashion-MNIST unpacked into {folder}"]
    # A second fetch keeps the files and runs nothing.
    calls.unlink()
    data.fetch_fashion_mnist(tmp_path / "data", log=logs.append)
    assert not calls.exists() and logs[-1] == f"Fashion-MNIST already in {folder}"


def test_fetch_goes_to_spos_data_by_default_and_via_the_cli(tmp_path, monkeypatch, capsys):
    from spos.cli import main

    _fake_debian_tools(tmp_path, monkeypatch)
    monkeypatch.setenv("SPOS_DATA", str(tmp_path / "mine"))
    assert main(["data", "fetch"]) == 0
    assert "unpacked into" in capsys.readouterr().out
    monkeypatch.chdir(tmp_path)
    assert data.fashion_mnist_dir() == tmp_path / "mine" / "fashion-mnist"


def test_fetch_without_apt_get_says_what_to_do_in_one_line(tmp_path, monkeypatch, capsys):
    from spos.cli import main

    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    monkeypatch.setattr(data.fashion, "SYSTEM_FASHION_DIR", tmp_path / "no-system")
    assert main(["data", "fetch", "--dir", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("spos: error: apt-get not found") and "dataset-fashion-mnist" in err
    assert err.count("\n") == 1


def _image_tree(root, corrupt: bool = True):
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for cls in ("cat", "dog"):
            d = root / split / cls
            d.mkdir(parents=True)
            for i in range(3):
                pixels = rng.integers(0, 255, size=(40 + 4 * i, 48, 3), dtype=np.uint8)
                ext = "png" if i % 2 else "jpg"
                Image.fromarray(pixels).save(d / f"{i}.{ext}")
    if corrupt:
        (root / "train" / "dog" / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    return root


def test_image_folder_applies_recipe_transforms(tmp_path):
    root = _image_tree(tmp_path / "imgs", corrupt=False)
    info = data.data_info(str(root))
    assert info == {"num_classes": 2, "input_channels": 3, "input_size": 224}
    train = data.dataset(str(root), "train", True, input_size=32)
    val = data.dataset(str(root), "val", False, input_size=32)
    x, y = train[0]
    assert x.shape == (3, 32, 32) and y == 0
    v1, v2 = val[4][0], val[4][0]
    assert v1.shape == (3, 32, 32) and torch.equal(v1, v2)  # eval transform is deterministic


def test_corrupt_image_is_skipped_with_its_path_or_fails(tmp_path):
    root = _image_tree(tmp_path / "imgs")
    ds = data.dataset(str(root), "train", False, input_size=32)
    assert len(ds) == 7
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        x, y = data.to_tensors(ds, range(len(ds)), batch_size=4)
    assert x.shape == (6, 3, 32, 32) and len(y) == 6
    assert any("broken.jpg" in str(w.message) for w in caught)
    _, _, skipped = data.collate_skipping([ds[i] for i in range(len(ds))])
    assert skipped == 1
    strict = data.dataset(str(root), "train", False, input_size=32, on_error="fail")
    bad = next(i for i, (p, _) in enumerate(strict.folder.samples) if p.endswith("broken.jpg"))
    with pytest.raises(SposError, match="broken.jpg"):
        strict[bad]


def test_missing_or_empty_folders_are_one_line_errors(tmp_path):
    with pytest.raises(SposError, match="does not exist"):
        data.dataset(str(tmp_path / "nope"), "train", True)
    (tmp_path / "empty" / "train").mkdir(parents=True)
    (tmp_path / "empty" / "val").mkdir()
    for call in (lambda: data.data_info(str(tmp_path / "empty")),
                 lambda: data.dataset(str(tmp_path / "empty"), "train", True, input_size=32)):  # fmt: skip
        with pytest.raises(SposError) as e:
            call()
        assert "\n" not in str(e.value)
    (tmp_path / "empty" / "train" / "cls").mkdir()
    with pytest.raises(SposError, match="no images"):
        data.dataset(str(tmp_path / "empty"), "train", True, input_size=32)


def test_holdout_split_is_seeded_and_disjoint():
    train, holdout = data.holdout_split(100, 10, seed=3)
    assert len(holdout) == 10 and len(train) == 90
    assert sorted(train + holdout) == list(range(100))
    assert data.holdout_split(100, 10, seed=3) == (train, holdout)
    assert data.holdout_split(100, 10, seed=4)[1] != holdout
    with pytest.raises(SposError):
        data.holdout_split(10, 10, seed=0)
