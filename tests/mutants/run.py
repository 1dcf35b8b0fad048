"""Hand-made mutants of the numerics: each patch here must make some test fail.

Each ``*.patch`` is a small unified diff against ``src/`` that breaks one claim the way a real
bug would (quantisation that copies the fp32 file, a counter that charges depthwise convs twice,
no weight decay at all, ...). Its header names the mutant and the tests that must kill it::

    # mutant: what is broken
    # tests: tests/path.py::test_a tests/other.py::test_b

For every patch this script copies ``src/``, ``tests/`` and ``pyproject.toml`` into a temporary
folder, applies the patch there (the working tree is never touched), runs the named tests with
``PYTHONPATH`` on the copy's ``src`` and prints KILLED (some test failed), SURVIVED (all passed)
or ERROR (the patch no longer applies, or pytest could not run the tests). The exit status is 0
only when every mutant is killed.

    python tests/mutants/run.py                 # every mutant
    python tests/mutants/run.py bn_recal_ema    # those whose file name contains a word
    python tests/mutants/run.py --baseline      # first check the named tests pass unpatched
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
IGNORE = shutil.ignore_patterns("__pycache__", ".hypothesis", ".pytest_cache", "*.pyc")


def read_header(patch: Path) -> tuple[str, list[str]]:
    """(description, killing tests) from the patch's ``# mutant:`` and ``# tests:`` lines."""
    desc, tests = "", []
    for line in patch.read_text().splitlines():
        if line.startswith("# mutant:"):
            desc = line.split(":", 1)[1].strip()
        elif line.startswith("# tests:"):
            tests += line.split(":", 1)[1].split()
        elif line.startswith("---"):
            break
    return desc, tests


def copy_repo(dst: Path) -> None:
    shutil.copytree(ROOT / "src", dst / "src", ignore=IGNORE)
    shutil.copytree(ROOT / "tests", dst / "tests", ignore=IGNORE)
    shutil.copy2(ROOT / "pyproject.toml", dst / "pyproject.toml")


def run_tests(copy: Path, tests: list[str], timeout: float) -> tuple[int, str]:
    """pytest's exit status on ``tests`` in ``copy`` (the copy's own spos first on the path)."""
    env = dict(os.environ, PYTHONPATH=str(copy / "src"), OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    env.pop("PYTHONSTARTUP", None)
    where = subprocess.run([sys.executable, "-c", "import spos; print(spos.__file__)"], cwd=copy, env=env,
                           capture_output=True, text=True)  # fmt: skip
    if not where.stdout.strip().startswith(str(copy)):
        return 99, f"spos was imported from {where.stdout.strip() or where.stderr.strip()}, not the copy"
    cmd = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "--no-header", *tests]
    try:
        done = subprocess.run(cmd, cwd=copy, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return 98, f"timed out after {timeout:.0f} s"
    return done.returncode, done.stdout + done.stderr


def last_failure(output: str) -> str:
    """The first ``FAILED``/``ERROR`` summary line of a pytest run, shortened."""
    for line in output.splitlines():
        if line.startswith(("FAILED", "ERROR")):
            return line[:160]
    lines = [s for s in output.splitlines() if s.strip()]
    return lines[-1][:160] if lines else ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("select", nargs="*", help="run only patches whose file name contains one of these")
    parser.add_argument("--baseline", action="store_true", help="first run each mutant's tests on the unpatched copy")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per pytest run (default 900)")
    parser.add_argument("-v", "--verbose", action="store_true", help="print pytest's output of every run")
    args = parser.parse_args(argv)
    patches = sorted(HERE.glob("*.patch"))
    if args.select:
        patches = [p for p in patches if any(s in p.name for s in args.select)]
    if not patches:
        print("no mutant patches selected", file=sys.stderr)
        return 2
    results: dict[str, str] = {}
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="spos-mutants-") as tmp:
        if args.baseline:
            base = Path(tmp) / "baseline"
            copy_repo(base)
            tests = sorted({t for p in patches for t in read_header(p)[1]})
            rc, out = run_tests(base, tests, args.timeout)
            print(f"baseline: {len(tests)} tests on the unpatched copy: {'pass' if rc == 0 else 'FAIL'}", flush=True)
            if rc != 0:
                print(out[-3000:])
                return 1
        for patch in patches:
            desc, tests = read_header(patch)
            copy = Path(tmp) / patch.stem
            copy_repo(copy)
            t = time.monotonic()
            if not tests:
                verdict, detail = "ERROR", "the patch names no '# tests:'"
            else:
                applied = subprocess.run(["patch", "-p1", "-s", "--no-backup-if-mismatch", "-i", str(patch)],
                                         cwd=copy, capture_output=True, text=True)  # fmt: skip
                if applied.returncode != 0:
                    verdict, detail = "ERROR", "does not apply: " + (applied.stdout + applied.stderr).strip()[:200]
                else:
                    rc, out = run_tests(copy, tests, args.timeout)
                    if args.verbose:
                        print(out)
                    if rc == 1:
                        verdict, detail = "KILLED", last_failure(out)
                    elif rc == 0:
                        verdict, detail = "SURVIVED", f"{len(tests)} named test(s) all passed"
                    else:
                        verdict, detail = "ERROR", f"pytest exit {rc}: {last_failure(out)}"
            shutil.rmtree(copy, ignore_errors=True)
            results[patch.name] = verdict
            print(f"{verdict:8s} {patch.name}  ({time.monotonic() - t:.0f} s) {desc}\n         {detail}", flush=True)
    killed = sum(v == "KILLED" for v in results.values())
    print(f"\n{killed} of {len(results)} mutants killed in {time.monotonic() - start:.0f} s"
          + ("" if killed == len(results) else f"; not killed: {', '.join(k for k, v in results.items() if v != 'KILLED')}"))  # fmt: skip
    return 0 if killed == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
