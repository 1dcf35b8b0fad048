"""`spos data pack`: shards that hold every image with its label, resume, one-line errors, and
the packed folder as `--data`."""

import io
import os
import tarfile

import numpy as np
import pytest
import torch
from PIL import Image

from spos import data
from spos.errors import SposError

pytestmark = pytest.mark.usefixtures("one_thread")

CLASSES = ("ant", "bee", "cat")


def _tree(root, per_class=4):
    """ROOT/{train,val}/CLASS/*: JPEGs of distinct sizes (some above the packed short side, one
    grey), a PNG, and one small RGB JPEG that must be stored byte for byte. Returns
    ``{(split, label, (w, h)): mean pixel}`` of every image."""
    rng = np.random.default_rng(0)
    images = {}
    for split, n in (("train", per_class), ("val", 2)):
        for label, cls in enumerate(CLASSES):
            (root / split / cls).mkdir(parents=True)
            for i in range(n):
                w, h = 70 + 20 * i + 3 * label + (split == "val"), 50 + 7 * i
                pixels = np.asarray(Image.fromarray(rng.integers(0, 256, (3, 4, 3), dtype=np.uint8)).resize((w, h)))
                img = Image.fromarray(pixels).convert("L" if i == 2 else "RGB")
                img.save(root / split / cls / (f"{i}.png" if i == 3 else f"{i}.jpg"), quality=95)
                images[(split, label, (w, h))] = np.asarray(img.convert("RGB"), dtype=np.float32).mean()
    return images


def _packed_size(w, h, short=56):
    if min(w, h) <= short:
        return w, h
    long = int(short * max(w, h) / min(w, h))
    return (short, long) if w <= h else (long, short)


def _read_shards(dest):
    """{split: [(label, PIL image, jpeg bytes)]} read straight from the tar files."""
    out = {}
    for shard in sorted(dest.glob("*.tar")):
        with tarfile.open(shard) as tar:
            files = {m.name: tar.extractfile(m).read() for m in tar}
        for name in sorted(n for n in files if n.endswith(".jpg")):
            blob = files[name]
            label = int(files[name[:-4] + ".cls"])
            out.setdefault(shard.name.split("-")[0], []).append((label, Image.open(io.BytesIO(blob)), blob))
    return out


def test_pack_round_trip_holds_every_image_with_its_label(tmp_path):
    images = _tree(tmp_path / "src")
    index = data.pack(tmp_path / "src", tmp_path / "dest", shard_size=5, short_side=56, log=lambda m: None)
    assert index["classes"] == list(CLASSES)
    assert index["splits"]["train"]["class_counts"] == dict.fromkeys(CLASSES, 4)
    assert [s["count"] for s in index["splits"]["train"]["shards"]] == [5, 5, 2]
    got = {}
    for split, items in _read_shards(tmp_path / "dest").items():
        for label, img, _ in items:
            assert img.format == "JPEG" and img.mode == "RGB"
            got[(split, label, img.size)] = np.asarray(img, dtype=np.float32).mean()
    expected = {(s, y, _packed_size(*size)): m for (s, y, size), m in images.items()}
    assert got.keys() == expected.keys()
    assert all(abs(got[k] - expected[k]) < 4 for k in got)  # the same picture, resized
    small = (tmp_path / "src/train/ant/0.jpg").read_bytes()  # 70 x 50: stored as it was
    assert any(blob == small for _, _, blob in _read_shards(tmp_path / "dest")["train"])


def test_a_packed_folder_trains_through_the_dataset_entry_in_the_trees_order(tmp_path):
    _tree(tmp_path / "src")
    data.pack(tmp_path / "src", tmp_path / "dest", shard_size=5, short_side=56, log=lambda m: None)
    root = str(tmp_path / "dest")
    assert data.data_info(root) == {"num_classes": 3, "input_channels": 3, "input_size": 224}
    for decoder in data.DECODERS:
        train = data.dataset(root, "train", True, input_size=32, decoder=decoder)
        assert len(train) == 12 and train.num_classes == 3
        x, y = data.to_tensors(train, range(len(train)), batch_size=5)
        assert x.shape == (12, 3, 32, 32) and x.dtype == torch.float32
    # Item i is item i of the tree (the shards are shuffled), so a holdout split by index holds
    # out the same images from both.
    for split in ("train", "val"):
        tree_x, tree_y = data.to_tensors(data.dataset(str(tmp_path / "src"), split, False, 32), range(6))
        packed_x, packed_y = data.to_tensors(data.dataset(root, split, False, 32), range(6))
        assert torch.equal(tree_y, packed_y) and (tree_x - packed_x).abs().mean() < 0.1


def test_pack_resumes_by_skipping_finished_shards(tmp_path):
    _tree(tmp_path / "src")
    src, dest = tmp_path / "src", tmp_path / "dest"
    first = data.pack(src, dest, shard_size=5, short_side=56, log=lambda m: None)
    stamps = {p.name: p.stat().st_mtime_ns for p in dest.glob("*.tar")}
    (dest / "train-000001.tar").unlink()  # as if killed while writing it: only a temporary file
    (dest / ".train-000001.tar.part").write_bytes(b"half a shard")
    logs = []
    again = data.pack(src, dest, shard_size=5, short_side=56, log=logs.append)
    assert logs[:-1] == ["train-000001.tar: 5 images"] and "(5 shards, 4 already there)" in logs[-1]
    assert again == first
    assert all(p.stat().st_mtime_ns == stamps[p.name] for p in dest.glob("*.tar") if p.name != "train-000001.tar")
    with pytest.raises(SposError, match="short_side 56 \\(now 32\\)"):
        data.pack(src, dest, shard_size=5, short_side=32, log=lambda m: None)


def test_unreadable_images_are_left_out_with_a_warning(tmp_path):
    _tree(tmp_path / "src")
    (tmp_path / "src/train/bee/broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    logs = []
    with pytest.warns(UserWarning, match="broken.jpg"):
        index = data.pack(tmp_path / "src", tmp_path / "dest", shard_size=100, log=logs.append)
    assert index["splits"]["train"]["count"] == 12 and "1 unreadable left out" in logs[0]


def test_bad_sources_and_destinations_are_one_line_errors(tmp_path):
    (tmp_path / "empty/train/ant").mkdir(parents=True)
    (tmp_path / "no-classes/val").mkdir(parents=True)
    (tmp_path / "flat/ant").mkdir(parents=True)
    (tmp_path / "a-file").write_text("")
    _tree(tmp_path / "src")
    cases = {
        "does not exist": (tmp_path / "nope", tmp_path / "d1"),
        "has no train/ or val/": (tmp_path / "flat", tmp_path / "d2"),
        "holds no images": (tmp_path / "empty", tmp_path / "d3"),
        "holds no class folders": (tmp_path / "no-classes", tmp_path / "d4"),
        "cannot write to": (tmp_path / "src", tmp_path / "a-file" / "dest"),
    }
    for message, (src, dest) in cases.items():
        with pytest.raises(SposError, match=message) as e:
            data.pack(src, dest, log=lambda m: None)
        assert "\n" not in str(e.value)
    assert not os.path.exists(tmp_path / "d1")
