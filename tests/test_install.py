"""spos works where users install it: the wheel, installed outside the checkout, runs from an
empty folder with its presets inside (no network: the new venv reads this venv's packages)."""

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
import yaml
from idx_fixtures import tiny_pipeline, write_fashion

REPO = Path(__file__).resolve().parents[1]


def run(cmd, **kw):
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=300, **kw)
    assert r.returncode == 0, f"{cmd}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(bin folder of a fresh venv with the built wheel installed, the wheel)."""
    tmp = tmp_path_factory.mktemp("install")
    # Build from a copy, so the checkout gets no build/ or egg-info from this test.
    src = tmp / "source"
    src.mkdir()
    shutil.copy(REPO / "pyproject.toml", src)
    shutil.copy(REPO / "README.md", src)
    shutil.copytree(REPO / "src", src / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    offline = {**os.environ, "PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    run([sys.executable, "-m", "pip", "wheel", src, "--no-deps", "--no-build-isolation", "-q", "-w", tmp / "wheels"],
        env=offline)  # fmt: skip
    (wheel,) = (tmp / "wheels").glob("spos-*.whl")
    venv = tmp / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", venv])
    # The new venv sees this venv's installed packages (torch, ...) after its own: a plain path
    # line, so the editable install of the checkout (a .pth file there) is not picked up.
    (site,) = (venv / "lib").glob("python*/site-packages")
    (site / "parent-venv.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    run([sys.executable, "-m", "pip", "--python", venv / "bin" / "python", "install", "--no-deps", "-q", wheel],
        env=offline)  # fmt: skip
    return venv / "bin", wheel


def test_the_wheel_ships_the_presets(installed):
    _, wheel = installed
    names = zipfile.ZipFile(wheel).namelist()
    for preset in ("fashion-mnist", "fashion-mnist-supernet", "imagenet", "imagenet-supernet", "imagenet-subnet"):
        assert f"spos/configs/{preset}.yaml" in names


def test_installed_spos_runs_count_and_a_pipeline_from_an_empty_folder(installed, tmp_path):
    bin_dir, _ = installed
    empty = tmp_path / "empty"
    empty.mkdir()
    data = write_fashion(tmp_path / "fashion", n_train=320, n_val=100)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "SPOS_DATA")}
    env.update(SPOS_DATA=str(data), OMP_NUM_THREADS="2", HOME=str(tmp_path / "home"))
    where = run([bin_dir / "python", "-c", "import spos; print(spos.__file__)"], cwd=empty, env=env)
    assert where.startswith(str(bin_dir.parent)), where  # the installed copy, not the checkout

    counted = json.loads(run([bin_dir / "spos", "count", "oneshot", "--json"], cwd=empty, env=env))
    assert (counted["macs"], counted["params"]) == (327_909_096, 3_433_579)
    shown = run([bin_dir / "spos", "configs", "show", "fashion-mnist"], cwd=empty, env=env)
    assert yaml.safe_load(shown)["out"] == "runs/demo"

    config = tiny_pipeline("run")
    config["search"].update(population=4, generations=1)
    config["sampling_plot_samples"] = 20
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(config))
    out = run([bin_dir / "spos", "pipeline", "--config", tmp_path / "tiny.yaml", "--no-progress"], cwd=empty, env=env)
    summary = json.loads((empty / "run" / "summary.json").read_text())
    assert summary["arch"] in out and (empty / "run" / "report.md").is_file()
