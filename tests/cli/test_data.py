"""`spos data pack` on the command line: progress lines, resume, one-line errors."""

import numpy as np
from PIL import Image

from spos.cli import main


def _tree(root):
    rng = np.random.default_rng(0)
    for cls in ("ant", "bee"):
        (root / "train" / cls).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)).save(root / "train" / cls / f"{i}.jpg")
    return root


def test_pack_writes_shards_then_resumes_with_nothing_to_do(tmp_path, capsys):
    src, dest = _tree(tmp_path / "src"), tmp_path / "dest"
    assert main(["data", "pack", str(src), str(dest), "--shard-size", "4", "--short-side", "32"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[:2] == ["train-000000.tar: 4 images", "train-000001.tar: 2 images"]
    assert out[2] == f"packed 6 train images of 2 classes into {dest} (2 shards, 0 already there)"
    assert main(["data", "pack", str(src), str(dest), "--shard-size", "4", "--short-side", "32"]) == 0
    assert capsys.readouterr().out.endswith("(2 shards, 2 already there)\n")


def test_pack_errors_are_one_line_with_a_non_zero_exit(tmp_path, capsys):
    (tmp_path / "a-file").write_text("")
    src = _tree(tmp_path / "src")
    for args, message in (([str(tmp_path / "missing"), str(tmp_path / "d")], "does not exist"),
                          ([str(src), str(tmp_path / "a-file" / "d")], "cannot write to")):  # fmt: skip
        assert main(["data", "pack", *args]) == 2
        err = capsys.readouterr().err
        assert err.startswith("spos: error: ") and message in err and err.count("\n") == 1
        assert "Traceback" not in err
