"""Tool-made mutants (mutmut 3) of the pure modules, one module at a time, each against its own
fast tests.

``[tool.mutmut.modules.NAME]`` in pyproject.toml gives, per module, the file to mutate
(``mutate``), its fast tests as pytest arguments (``tests``) and, optionally, the mutant-name
globs that count (``names``; default every mutant of the file). For each module this script
keeps a work folder ``mutants/modules/NAME/`` (git-ignored) with copies of ``src/``, ``tests/``
and a ``pyproject.toml`` whose ``[tool.mutmut]`` is the shared settings with that module's file
and tests, runs ``mutmut run --max-children 1`` (``--jobs N``: N) there (mutmut keeps its results in the folder:
unchanged functions are not rerun), then reruns every mutant an earlier run did not kill (the
tests may have changed since), and prints one row per module::

    module     killed/total  score  survived  timeout  no tests  other  minutes

followed by the surviving mutants' names (``mutmut show NAME`` in the work folder shows one).

    python tests/mutants/mutmut_modules.py                # every module, in pyproject order
    python tests/mutants/mutmut_modules.py space genes    # some modules
    python tests/mutants/mutmut_modules.py --fresh table  # forget earlier results first
    python tests/mutants/mutmut_modules.py --tests-from REV space  # the same source, older tests
    python tests/mutants/mutmut_modules.py --before-from REV fair  # the same, from the 'after' run

``--before-from REV`` is the cheap exact form of ``--tests-from REV`` when the module's tests only
gained tests since REV (check with ``git diff REV -- tests``): mutmut runs each mutant against
the tests that reach its function, so a mutant whose function no new test reaches has the same
tests, hence the same result, before. Only the mutants the 'after' run killed in functions that a
new test reaches run again, against REV's tests; the rest keep their 'after' result.

Needs ``pip install mutmut`` (3.x). The exit status is 0 when mutmut ran for every module
(survivors are reported, not failed: some are equivalent mutants).
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[2]
WORK = ROOT / "mutants" / "modules"
IGNORE = shutil.ignore_patterns("__pycache__", ".hypothesis", ".pytest_cache", "*.pyc")
MUTMUT_BIN = Path(sys.executable).parent / "mutmut"
CHILDREN = "1"  # mutants tested at once (--jobs)


def mutmut_section(settings: dict) -> str:
    """A ``[tool.mutmut]`` table of strings and lists of strings (JSON spells those as TOML)."""
    return "[tool.mutmut]\n" + "".join(f"{k} = {json.dumps(v, ensure_ascii=False)}\n" for k, v in settings.items())


def without_mutmut(pyproject: str) -> str:
    """``pyproject`` without its ``[tool.mutmut]`` table and sub-tables."""
    out, skipping = [], False
    for line in pyproject.splitlines(keepends=True):
        if line.startswith("["):
            skipping = line.strip().strip("[]").startswith("tool.mutmut")
        if not skipping:
            out.append(line)
    return "".join(out)


def prepare(name: str, module: dict, shared: dict, fresh: bool, tests_rev: str | None = None) -> Path:
    """The module's work folder with up-to-date copies of src/, tests/ and its pyproject.toml
    (``tests_rev``: tests/ as of that git revision, in a folder of its own, to score the same
    source against older tests).

    ``copytree`` keeps modification times, so mutmut reuses the mutants of unchanged files."""
    work = WORK / name if tests_rev is None else WORK.parent / f"modules-tests-{tests_rev}" / name
    if fresh:
        shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)
    for folder in ("src", "tests"):
        shutil.rmtree(work / folder, ignore_errors=True)
        if folder == "tests" and tests_rev is not None:
            git = ["git", "archive", tests_rev, "tests"]
            archive = subprocess.run(git, cwd=ROOT, capture_output=True, check=True)
            subprocess.run(["tar", "-x", "-C", str(work)], input=archive.stdout, check=True)
        else:
            shutil.copytree(ROOT / folder, work / folder, ignore=IGNORE)
    tests = module["tests"] if tests_rev is None else existing_tests(module["tests"], work)
    settings = {**shared, "only_mutate": [module["mutate"]], "pytest_add_cli_args_test_selection": tests}
    text = without_mutmut((ROOT / "pyproject.toml").read_text()).rstrip() + "\n\n" + mutmut_section(settings)
    if not (work / "pyproject.toml").is_file() or (work / "pyproject.toml").read_text() != text:
        (work / "pyproject.toml").write_text(text)
    return work


def existing_tests(args: list[str], work: Path) -> list[str]:
    """The pytest arguments ``args`` without the test files (and their ``--deselect`` pairs) that
    ``work``'s older tests/ does not have yet: a module's 'before' score runs the tests it had."""
    out: list[str] = []
    for arg in args:
        if arg.startswith("tests/") and not (work / arg.split("::")[0]).is_file():
            if out and out[-1] == "--deselect":
                out.pop()
            continue
        out.append(arg)
    return out


def mutmut(work: Path, *args: str, capture: bool = False) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH="")
    return subprocess.run([str(MUTMUT_BIN), *args], cwd=work, env=env, text=True,
                          stdout=subprocess.PIPE if capture else subprocess.DEVNULL,
                          stderr=subprocess.STDOUT if capture else subprocess.DEVNULL)  # fmt: skip


def results(work: Path, names: list[str] | None) -> dict[str, str]:
    """``{mutant name: status}`` from ``mutmut results --all true``, limited to ``names`` globs."""
    if not (work / "mutants").is_dir():
        return {}
    out = mutmut(work, "results", "--all", "true", capture=True).stdout
    found = {}
    for line in out.splitlines():
        key, sep, status = line.strip().rpartition(": ")
        if sep and "__mutmut_" in key and (names is None or any(fnmatch.fnmatch(key, g) for g in names)):
            found[key] = status
    return found


def run_module(
    name: str, module: dict, shared: dict, fresh: bool, tests_rev: str | None = None
) -> tuple[dict[str, str], float]:
    work = prepare(name, module, shared, fresh, tests_rev)
    names = module.get("names")
    before = results(work, names)
    t = time.monotonic()
    first = mutmut(work, "run", "--max-children", CHILDREN, *(names or []), capture=True)
    if first.returncode != 0:
        raise RuntimeError(f"mutmut run failed for {name}:\n{first.stdout[-3000:]}")
    again = [k for k, s in before.items() if s not in ("killed", "not checked")]  # results that may change
    if again and not names:  # with names every matching mutant ran again already
        rerun = mutmut(work, "run", "--max-children", CHILDREN, *again, capture=True)
        if rerun.returncode != 0:
            raise RuntimeError(f"mutmut rerun of earlier survivors failed for {name}:\n{rerun.stdout[-3000:]}")
    return results(work, names), (time.monotonic() - t) / 60


def collected(work: Path, tests: list[str]) -> set[str]:
    """Test ids pytest collects in ``work`` from the pytest arguments ``tests``."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH="")
    cmd = [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *tests]
    out = subprocess.run(cmd, cwd=work, env=env, text=True, capture_output=True, check=True).stdout
    return {line.strip() for line in out.splitlines() if "::" in line}


def before_from_after(name: str, module: dict, shared: dict, rev: str) -> tuple[dict[str, str], float, list[str]]:
    """``(results, minutes, new tests)``: the module's 'before' score against REV's tests, from its
    finished 'after' run (see ``--before-from``)."""
    after_work, names = WORK / name, module.get("names")
    after = results(after_work, names)
    if not after or "not checked" in after.values():
        raise RuntimeError(f"{name}: run its 'after' score to the end first (mutmut_modules.py {name})")
    work = prepare(name, module, shared, fresh=False, tests_rev=rev)  # a full --tests-from run's results stay
    new = collected(ROOT, module["tests"]) - collected(work, existing_tests(module["tests"], work))
    stats = json.loads((after_work / "mutants" / "mutmut-stats.json").read_text())["tests_by_mangled_function_name"]
    again = [k for k, s in after.items() if s == "killed" and new & set(stats.get(k.rsplit("__mutmut_", 1)[0], ()))]
    t = time.monotonic()
    if again:
        run = mutmut(work, "run", "--max-children", CHILDREN, *again, capture=True)
        if run.returncode != 0:
            raise RuntimeError(f"mutmut run failed for {name} against {rev}'s tests:\n{run.stdout[-3000:]}")
    rerun = results(work, names)
    return {**after, **{k: rerun[k] for k in again}}, (time.monotonic() - t) / 60, sorted(new)


def row(name: str, found: dict[str, str], minutes: float) -> str:
    counts = {s: sum(v == s for v in found.values()) for s in ("killed", "survived", "timeout", "no tests")}
    other = len(found) - sum(counts.values())
    score = counts["killed"] / len(found) if found else 0.0
    return (f"{name:<10} {counts['killed']:>5}/{len(found):<6} {100 * score:5.1f}%  {counts['survived']:>8}  "
            f"{counts['timeout']:>7}  {counts['no tests']:>8}  {other:>5}  {minutes:7.1f}")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("modules", nargs="*", help="module names of [tool.mutmut.modules] (default: all)")
    parser.add_argument("--fresh", action="store_true", help="delete the modules' earlier results first")
    parser.add_argument("--tests-from", metavar="REV",
                        help="score against tests/ as of this git revision (a 'before' score for new tests)")
    parser.add_argument("--before-from", metavar="REV",
                        help="the same 'before' score, rerunning only what tests added since REV can change")
    parser.add_argument("--jobs", type=int, default=1, help="mutants tested at once (default 1: one core)")
    args = parser.parse_args(argv)
    global CHILDREN
    CHILDREN = str(max(1, args.jobs))
    if not MUTMUT_BIN.is_file():
        print(f"no mutmut beside {sys.executable}: pip install mutmut", file=sys.stderr)
        return 2
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mutmut"]
    modules = config.pop("modules")
    shared = {k: v for k, v in config.items() if k not in ("only_mutate", "pytest_add_cli_args_test_selection")}
    unknown = sorted(set(args.modules) - set(modules))
    if unknown:
        print(f"unknown modules {unknown}; [tool.mutmut.modules] has {list(modules)}", file=sys.stderr)
        return 2
    header = f"{'module':<10} {'killed/total':>12}  score  survived  timeout  no tests  other  minutes"
    rows, survivors = [], []
    print(header, flush=True)
    for name in args.modules or modules:
        if args.before_from:
            found, minutes, new = before_from_after(name, modules[name], shared, args.before_from)
            print(f"{name}: {len(new)} tests added since {args.before_from}: {' '.join(new) or '-'}", flush=True)
        else:
            found, minutes = run_module(name, modules[name], shared, args.fresh, args.tests_from)
        rows.append(row(name, found, minutes))
        survivors += [f"  {k}: {s}" for k, s in sorted(found.items()) if s != "killed"]
        print(rows[-1], flush=True)
    if survivors:
        print(f"\nnot killed ({len(survivors)}; `mutmut show NAME` in {WORK}/MODULE shows one):")
        print("\n".join(survivors))
    return 0


if __name__ == "__main__":
    sys.exit(main())
