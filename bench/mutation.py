"""Mutation testing: which realistic one-line bugs the test suite lets through.

mutmut 3 changes one thing at a time in the code (a `<` into `<=`, a constant,
a dropped argument, a `return None`), runs the tests that reach the changed
function, and calls the mutant killed when one of them fails. Each target
below is mutated on its own, in `.mutation/TARGET/` (git-ignored; mutmut copies
the package into `mutants/` there), with only the test files that cover it, so
a run stays feasible on a laptop's two cores; the whole suite takes minutes
per mutant. Prints, per module, killed / total and the survivors.

    nice -n 19 python bench/mutation.py [--only run notify ...] [--jobs 2] [--list-survivors]
    python bench/mutation.py --report-only --list-survivors   # the last run's results, diffs included
    python bench/mutation.py --only listing --rerun-survivors  # after adding tests: try the survivors again

Killed counts mutants whose tests failed or timed out; "no tests" are mutants
in functions that none of the target's tests reach. docs/mutation.md keeps the
table and the survivors judged equivalent, with the reason for each.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / ".mutation"
MUTMUT = [str(Path(sys.executable).parent / "mutmut")]  # its own script: `python -m mutmut` imports it twice


@dataclass(frozen=True)
class Target:
    """Files to mutate, the tests that cover them, and optionally which functions count."""

    files: tuple[str, ...]  # globs relative to the repository root
    tests: tuple[str, ...]  # pytest arguments selecting the covering tests
    functions: tuple[str, ...] = field(default=())  # mutant-name globs; empty: every function in `files`


# the measures' maths; embed() only runs the classifier, which test_quality's slower tests cover
METRIC_FUNCTIONS = ("frechet_distance", "kl_divergence", "class_metrics", "stacked_metrics", "precision_recall",
                    "toy_metrics")  # fmt: skip

# each test of a missing reader starts a whole pytest of its own (5 s), where no mutant reaches
NOT_MISSING_READER = ("-k", "not missing_reader")
KNOWN_ANSWERS = (
    "frechet or class_metrics or precision_and_recall_tell or precision_and_recall_count or covered_from or toy "
    "or stacked_mode or random_digit"
)

# the dashboard's tests of reading a run as it grows (RunReader), without the screen; not those of a long run's
# history helpers: mutmut runs the tests once in its own process, where a helper is a child that mutmut, waiting on
# any child, may take for one of its own workers (it did, and stopped with KeyError in wait_for_result, while the
# viewer left its helpers unreaped)
DASHBOARD_READER = (
    "test_rows_of_several_shapes_become_columns_with_gaps_as_nan",
    "test_reader_waits_for_a_torn_line_and_skips_a_bad_one",
    "test_reader_notices_a_rewound_run",
)

# in order of importance: what a user loses most by when it breaks comes first
TARGETS: dict[str, Target] = {
    "run": Target(
        files=("ganterm/run/*",),
        tests=(
            "tests/test_rundir.py",
            "tests/test_recorder.py",
            "tests/test_control.py",
            "tests/test_checkpoint.py",
            "tests/test_malformed_rows.py",
            "tests/test_open_run.py",
            "tests/test_api.py",  # a user's loop writes through the Recorder
            "tests/test_settings.py",  # a loop's config=, as config.json keeps it and the viewers show it
            "tests/test_text.py",  # texts clipped where they leave, control characters shown
            "tests/test_values.py",  # what a row may hold, each refusal whole
            "tests/test_dashboard.py::test_the_stats_line_leaves_out_what_a_row_lacks",
            # schema's column order and tags, files.replacing: what the exports use them for
            "tests/test_export.py::test_csv_holds_every_row_and_value_of_metrics_jsonl",
            "tests/test_export.py::test_tensorboard_holds_every_value_grid_and_alert",
            "tests/test_export.py::test_a_file_cut_back_during_the_export_leaves_the_old_output",
        ),
    ),
    "notify": Target(files=("ganterm/notify.py",), tests=("tests/test_notify.py",)),
    "health": Target(files=("ganterm/health.py",), tests=("tests/test_health.py", "tests/test_health_families.py")),
    "listing": Target(
        files=("ganterm/listing.py",),
        # `ganterm runs` wherever a test runs it: ganterm's runs, loops' settings, other tools' runs, odd names
        tests=(
            *("tests/test_cli.py", "tests/test_settings.py", "tests/test_control_characters.py"),
            *("tests/test_cli_foreign.py", "tests/test_user_input.py", "tests/test_api_script.py"),
            *("-k", "test_runs_ or ganterm_runs"),
        ),
    ),
    "export": Target(files=("ganterm/export/*",), tests=("tests/test_export.py", *NOT_MISSING_READER)),
    "sources": Target(
        files=("ganterm/sources/*",),
        tests=(
            "tests/test_open_run.py",
            "tests/test_malformed_rows.py",
            "tests/test_export.py",
            # the history helpers' own tests, and those of following a long run, wait until every helper is reaped
            "tests/test_history.py",
            "tests/test_follow.py",
            # runs other tools write, read through the same columns
            "tests/test_foreign.py",
            "tests/test_foreign_formats.py",
            *(f"tests/test_dashboard.py::{test}" for test in DASHBOARD_READER),
            *NOT_MISSING_READER,
        ),
    ),
    "metrics": Target(
        files=("ganterm/training/metrics.py",),
        # the measures on cases with known answers; the rest of test_quality.py reads or trains a classifier
        tests=("tests/test_quality.py", "-k", KNOWN_ANSWERS),
        functions=tuple(f"ganterm.training.metrics.x_{name}__mutmut_*" for name in METRIC_FUNCTIONS),
    ),
}
CAUGHT = {"killed", "timeout", "caught by type check", "segfault"}
UNTRIED = {"not checked", "check was interrupted by user"}  # a run cut short: neither caught nor survived


def toml_list(values: tuple[str, ...] | list[str]) -> str:
    return "[" + ", ".join(json.dumps(v) for v in values) + "]"


def prepare(name: str, target: Target, fresh: bool, debug: bool) -> Path:
    """`.mutation/NAME/`: links to the package and the tests, and the project's pyproject.toml with mutmut's say."""
    work = WORK / name
    if fresh and work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    for linked in ("ganterm", "tests"):  # pointed anew: a folder copied from another checkout tests this one
        (work / linked).unlink(missing_ok=True)
        (work / linked).symlink_to(ROOT / linked)
    settings = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    settings += (
        "\n[tool.mutmut]\n"
        'source_paths = ["ganterm"]\n'
        f"only_mutate = {toml_list(target.files)}\n"
        f"pytest_add_cli_args_test_selection = {toml_list(target.tests)}\n"
        'pytest_add_cli_args = ["-p", "no:cacheprovider"]\n'
        "use_git_change_detection = false\n"
        f"debug = {str(debug).lower()}\n"
    )
    (work / "pyproject.toml").write_text(settings, encoding="utf-8")
    return work


def mutmut(work: Path, *args: str, log: Path, budget: float | None = None) -> int:
    """mutmut in `work`, its output to `log`.

    The tests' own subprocesses (`ganterm train` run as a user would) import this checkout's package, unmutated:
    mutmut learns which tests reach a function only in its own process, so they never kill a mutant, and a
    mutated package in them would try to report to mutmut from the test's folder and fail.
    Past `budget` seconds it is interrupted as Ctrl-C would: the mutants tested so far keep their results.
    """
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    with log.open("w", encoding="utf-8") as out:
        process = subprocess.Popen([*MUTMUT, *args], cwd=work, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            return process.wait(budget)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGINT)
            return process.wait()


def results(work: Path, target: Target) -> dict[str, dict[str, str]]:
    """{source file: {mutant name: status}} from mutmut's .meta files, only the functions that count."""
    from mutmut.stats import status_by_exit_code

    found: dict[str, dict[str, str]] = {}
    for meta in sorted((work / "mutants").rglob("*.py.meta")):
        source = str(meta.relative_to(work / "mutants"))[: -len(".meta")]
        codes = json.loads(meta.read_text(encoding="utf-8"))["exit_code_by_key"]
        statuses = {
            mutant: status_by_exit_code[code]
            for mutant, code in codes.items()
            if not target.functions or any(fnmatch.fnmatch(mutant, f) for f in target.functions)
        }
        if statuses:
            found[source] = statuses
    return found


def survivors(found: dict[str, dict[str, str]]) -> list[str]:
    """Mutants tried that no test caught (those a run cut short never tried are left for a full run)."""
    return [m for statuses in found.values() for m, status in statuses.items() if status not in CAUGHT | UNTRIED]


def diff(work: Path, source: str, mutant: str) -> str:
    """The mutant as a unified diff of its function (what `mutmut show` prints, without starting mutmut)."""
    from mutmut.mutation.diff_apply import get_diff_for_mutant
    from mutmut.utils.file_utils import change_cwd

    with change_cwd(work):
        return get_diff_for_mutant(mutant, path=source)


def report(name: str, work: Path, found: dict[str, dict[str, str]], diffs: bool) -> None:
    """Per module: caught / tried, the rate, the survivors by kind; then each survivor, with its diff if asked."""
    print(f"\n{name}: {'module':<34} {'killed':>7} / {'tried':<5} {'rate':>5}  survived  no tests  untried")
    for source, statuses in found.items():
        counts = Counter(statuses.values())
        caught = sum(counts[s] for s in CAUGHT)
        untried = sum(counts[s] for s in UNTRIED)
        tried = len(statuses) - untried
        rate = f"{caught / tried:.0%}" if tried else "-"
        print(
            f"{'':<{len(name) + 2}}{source:<34} {caught:>7} / {tried:<5} {rate:>5}"
            f"  {counts['survived']:>8}  {counts['no tests']:>8}  {untried:>7}"
        )
    for source, statuses in found.items():
        for mutant, status in statuses.items():
            if status in CAUGHT or status in UNTRIED:
                continue
            print(f"  {status:>10}  {mutant}")
            if diffs:
                print("\n".join("              " + line for line in diff(work, source, mutant).splitlines()))


def selected(choice: str) -> tuple[str, Target]:
    """A target by name, or one module of it by path ("run/jsonl"): its own folder, the target's tests."""
    name, _, module = choice.partition("/")
    if name not in TARGETS:
        raise SystemExit(f"--only {choice}: no such target; pick from {', '.join(TARGETS)}, or TARGET/MODULE")
    target = TARGETS[name]
    if not module:
        return name, target
    path = f"ganterm/{choice}.py"
    if not Path(ROOT / path).is_file() or not any(fnmatch.fnmatch(path, f) for f in target.files):
        raise SystemExit(f"--only {choice}: {path} is not one of {name}'s modules ({', '.join(target.files)})")
    return choice.replace("/", "-"), Target(files=(path,), tests=target.tests, functions=target.functions)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--only",
        nargs="+",
        metavar="TARGET",
        help=f"targets ({', '.join(TARGETS)}; default: all, in this order) "
        "or single modules of them, such as run/jsonl",
    )
    parser.add_argument("--jobs", type=int, default=1, help="mutants tested at once (default 1)")
    parser.add_argument("--budget", type=float, help="seconds per target, after which it stops where it got to")
    parser.add_argument("--list-survivors", action="store_true", help="print each survivor's diff")
    parser.add_argument("--report-only", action="store_true", help="report the last run's results; run nothing")
    parser.add_argument("--rerun-survivors", action="store_true", help="test only the last run's survivors again")
    parser.add_argument("--debug", action="store_true", help="mutmut's debug output (each pytest command) in the log")
    parser.add_argument("--json", type=Path, help="also write {target: {module: {mutant: status}}} here")
    options = parser.parse_args()

    everything: dict[str, dict[str, dict[str, str]]] = {}
    for name, target in (selected(choice) for choice in options.only or TARGETS):
        work = WORK / name
        if not options.report_only:
            keep = options.rerun_survivors and (work / "mutants").exists()
            names = survivors(results(work, target)) if keep else list(target.functions)
            if keep and not names:
                print(f"{name}: no survivors to rerun")
            else:
                work = prepare(name, target, fresh=not keep, debug=options.debug)
                started = time.monotonic()
                log = work / "mutmut.log"
                code = mutmut(work, "run", "--max-children", str(options.jobs), *names, log=log, budget=options.budget)
                print(f"{name}: mutmut ran {time.monotonic() - started:.0f} s (exit {code}; log {log})")
                if code != 0:
                    print(log.read_text(encoding="utf-8")[-3000:])
        if not (work / "mutants").exists():
            print(f"{name}: no results yet; run without --report-only")
            continue
        everything[name] = results(work, target)
        report(name, work, everything[name], options.list_survivors)
    if options.json:
        options.json.write_text(json.dumps(everything, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
