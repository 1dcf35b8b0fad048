import json
import subprocess
import sys

import pytest

from spos.cli import main


def run_cli(capsys, *args):
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize(
    "name,macs,params,sigma",
    [("oneshot", 327_909_096, 3_433_579, 2.0096), ("oneshot+", 297_058_024, 3_742_955, 2.0065),
     ("oneshot-s+", 291_475_944, 3_541_829, 1.9304)],
)  # fmt: skip
def test_count_json(capsys, name, macs, params, sigma):
    code, out, _ = run_cli(capsys, "count", name, "--json")
    assert code == 0
    d = json.loads(out)
    assert d["macs"] == macs and d["params"] == params
    assert abs(d["sigma_score"] - sigma) <= 5e-4
    assert isinstance(d["micronet_score"], float) and d["micronet_score"] > 0


def test_count_arch_string_with_options(capsys):
    code, out, _ = run_cli(capsys, "count", "0031-1100-20211020-2132:6535-2634-25754674-4543",
                           "--use-se", "--last-conv-after-pooling", "--json")  # fmt: skip
    assert code == 0 and json.loads(out)["macs"] == 297_058_024


def test_bad_input_is_one_line_error_without_traceback():
    for args in (["count", "nope"], ["count", "0031:12"], ["count", "oneshot", "--input-size", "2"]):
        r = subprocess.run([sys.executable, "-m", "spos", *args], capture_output=True, text=True)
        assert r.returncode == 2
        assert "Traceback" not in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1 and r.stderr.startswith("spos: error:")
