"""Mutation testing of the modules that guard data and quota, with cosmic-ray's operators, run by hand.

    python -m pip install '.[dev,mutation]'
    python -m benchmarks.studies.mutation [--only walk,fetch,...] [--per-module 30] [--seed 0] [--json PATH]

A whole-module run would take days, so each module gets a sample of its mutation *sites* (a few dozen, the same
ones for the same code and ``--seed``), one operator drawn per site, plus the hand-made mutants in
``benchmarks/studies/mutants/*.diff`` (the plausible bugs that once survived the suite). Each mutant runs against the
test files that cover its module only, in a copy of the tree that is first on ``PYTHONPATH`` (so tests that
start ``snapcrawl`` subprocesses run the mutant too), with bytecode caching off. A mutant is killed when those
tests fail, or run over budget: four times the unmutated run's CPU seconds plus 15 (a busy loop), or ten times
its wall time plus 60 s (a deadlock); generous, since the machine is shared and a slow run is no kill.

A survivor is either killed by a new test, or listed with the reason it cannot change behaviour in
``benchmarks/studies/mutation_equivalents.toml`` (matched by module and by the changed line, before and after). The kill
rate per module is killed / (mutants - equivalent); the run exits 1 below ``--target`` (95%).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import difflib
import json
import math
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
EQUIVALENTS = Path(__file__).resolve().parent / "mutation_equivalents.toml"
CURATED = Path(__file__).resolve().parent / "mutants"
#: What the copy of the tree needs for the tests to run (pyproject.toml: pytest's settings).
TREE = ("snapcrawl", "tests", "benchmarks", "pyproject.toml", "README.md", "docs")


@dataclasses.dataclass(frozen=True)
class Target:
    """Modules that guard data or quota, and the test files that cover them (no slow end-to-end suites)."""

    name: str
    modules: tuple[str, ...]
    tests: tuple[str, ...]
    #: Per module, a pytest ``-k`` expression narrowing its tests (the SQLite sink needs no PostgreSQL server).
    select: tuple[tuple[str, str], ...] = ()

    def args(self, module: str) -> tuple[str, ...]:
        """The pytest arguments for mutants of ``module``."""
        expression = dict(self.select).get(module)
        return (*self.tests, "-k", expression) if expression else self.tests


TARGETS = (
    Target(
        "walk",
        ("snapcrawl/_walk.py",),
        ("tests/test_walk.py", "tests/test_consistency.py", "tests/test_walk_recovery.py"),
    ),
    Target(
        "account",
        ("snapcrawl/_account.py",),
        ("tests/test_consistency.py", "tests/test_account_listing.py"),
    ),
    Target(
        "signing",
        ("snapcrawl/_signing.py",),
        ("tests/test_signing.py", "tests/test_signing_timestamps.py", "tests/test_fetch.py"),
    ),
    Target(
        "fetch",
        ("snapcrawl/_fetch.py", "snapcrawl/_errors.py"),
        (
            "tests/test_fetch.py",
            "tests/test_fetch_retry_after.py",
            "tests/test_fetch_accounting.py",
            "tests/test_error_mapping.py",
        ),
    ),
    Target("policy", ("snapcrawl/limits/_policy.py",), ("tests/limits",)),
    Target(
        "sinks",
        ("snapcrawl/sinks/sqlite.py", "snapcrawl/sinks/postgres.py", "snapcrawl/sinks/_batch.py"),
        (
            "tests/sinks/test_inventory.py",
            "tests/sinks/test_checkpoint_order.py",
            "tests/sinks/test_prune_clock.py",
            "tests/sinks/test_failures.py",
            "tests/sinks/test_open.py",
            "tests/sinks/test_batching.py",
        ),
        select=(("snapcrawl/sinks/sqlite.py", "not postgres"), ("snapcrawl/sinks/postgres.py", "not sqlite")),
    ),
    Target(
        "jsonl",
        ("snapcrawl/sinks/jsonl.py",),
        ("tests/sinks/test_jsonl.py", "tests/sinks/test_jsonl_commits.py", "tests/test_resume.py"),
    ),
    Target(
        "worker",
        ("snapcrawl/queue/_worker.py",),
        ("tests/queue/test_queue.py", "tests/queue/test_distributed.py", "tests/queue/test_worker_options.py"),
    ),
)


@dataclasses.dataclass
class Mutant:
    """One mutant: the module it changes, how (an operator and its occurrence, or a curated diff), and its fate."""

    target: str
    module: str
    how: str
    source: str  # the whole mutated module, or the diff for a curated mutant
    before: str = ""  # the changed lines, before and after (how an equivalent mutant is recognised)
    after: str = ""
    outcome: str = ""  # killed, survived, equivalent, timeout
    reason: str = ""
    seconds: float = 0.0

    @property
    def diff(self) -> str:
        """The change, as a diff (a curated mutant's own)."""
        if self.how.startswith("curated"):
            return self.source
        return (
            f"--- {self.module}\n"
            + "\n".join(f"-{line}" for line in self.before.splitlines())
            + "\n"
            + "\n".join(f"+{line}" for line in self.after.splitlines())
        )


def _operators() -> list[tuple[str, Any]]:
    """cosmic-ray's operators that take no arguments, by name."""
    import cosmic_ray.plugins  # noqa: PLC0415 - the mutation extra, needed only here

    classes = {name: cosmic_ray.plugins.get_operator(name) for name in cosmic_ray.plugins.operator_names()}
    return [(name, cls()) for name, cls in sorted(classes.items()) if not cls.arguments()]


def _in_annotation(node: Any) -> bool:
    """Whether a parso node sits in a type annotation (mutating one changes no behaviour worth a test run)."""
    child, parent = node, node.parent
    while parent is not None:
        if parent.type == "tfpdef" or (parent.type == "annassign" and parent.children.index(child) == 1):
            return True
        if parent.type == "funcdef":
            kids = parent.children
            index = kids.index(child)
            return index > 0 and getattr(kids[index - 1], "value", None) == "->"
        child, parent = parent, parent.parent
    return False


def _changed(original: str, mutated: str) -> tuple[str, str]:
    """The lines a mutant changes, before and after, stripped of indentation."""
    before: list[str] = []
    after: list[str] = []
    for line in difflib.unified_diff(original.splitlines(), mutated.splitlines(), lineterm="", n=0):
        if line.startswith("-") and not line.startswith("---"):
            before.append(line[1:].strip())
        elif line.startswith("+") and not line.startswith("+++"):
            after.append(line[1:].strip())
    return "\n".join(before), "\n".join(after)


def sample(target: Target, per_module: int, seed: int) -> list[Mutant]:
    """``per_module`` mutants of each module of ``target``: random sites, one operator each (stable per seed)."""
    from cosmic_ray.ast import ast_nodes, get_ast  # noqa: PLC0415
    from cosmic_ray.mutating import mutate_code  # noqa: PLC0415

    operators = _operators()
    mutants = []
    for module in target.modules:
        code = (REPO / module).read_text(encoding="utf-8")
        nodes = list(ast_nodes(get_ast(code)))
        sites: dict[tuple[int, int], list[tuple[str, Any, int]]] = {}
        for name, operator in operators:
            occurrence = 0
            for node in nodes:
                for start, _end in operator.mutation_positions(node):
                    if not _in_annotation(node):
                        sites.setdefault(start, []).append((name, operator, occurrence))
                    occurrence += 1
        rng = random.Random(f"{seed}/{module}")
        chosen: list[Mutant] = []
        for site in rng.sample(sorted(sites), len(sites)):
            if len(chosen) >= per_module:
                break
            name, operator, occurrence = rng.choice(sites[site])
            try:
                mutated = mutate_code(code, operator, occurrence)
            except Exception:  # noqa: S112 - an operator cosmic-ray cannot apply here (``except*``): next site
                continue
            if mutated is None or mutated == code or not _compiles(mutated, module):
                continue
            before, after = _changed(code, mutated)
            if _is_log_line(before):
                continue
            how = f"{name}#{occurrence} at line {site[0]}"
            chosen.append(Mutant(target.name, module, how, mutated, before, after))
        mutants.extend(chosen)
    return mutants


def _compiles(code: str, module: str) -> bool:
    """Whether a mutant is Python at all (``/`` among parameters is no division to swap), and warns of nothing.

    The tests turn warnings into errors: a mutant ``x is 1`` would be killed by its ``SyntaxWarning`` alone.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            compile(code, module, "exec")
        except SyntaxError:  # a SyntaxWarning too, raised as an error
            return False
    return True


def _is_log_line(line: str) -> bool:
    """Log calls: what they say is not behaviour these tests pin down."""
    return line.startswith(("self._log.", "_log.", "log.", "self.log.")) or ".debug(" in line or ".info(" in line


def curated(targets: Sequence[Target]) -> list[Mutant]:
    """The hand-made mutants (``benchmarks/studies/mutants/*.diff``) whose files belong to ``targets``."""
    owner = {module: target for target in targets for module in target.modules}
    found = []
    for path in sorted(CURATED.glob("*.diff")):
        text = path.read_text(encoding="utf-8")
        files = [line[6:].strip() for line in text.splitlines() if line.startswith("+++ b/")]
        if files and all(module in owner for module in files):
            check = subprocess.run(["git", "apply", "--check", "-"], input=text, text=True, cwd=REPO, check=False)
            if check.returncode:  # the code moved under it: a stale mutant proves nothing
                print(f"{path.name}: no longer applies to the code; regenerate it (skipped)", file=sys.stderr)
                continue
            found.append(Mutant(owner[files[0]].name, ", ".join(files), f"curated {path.stem}", text))
    return found


def equivalents() -> list[dict[str, str]]:
    """The mutants known to change no behaviour, each with its reason."""
    if not EQUIVALENTS.exists():
        return []
    with EQUIVALENTS.open("rb") as file:
        return list(tomllib.load(file).get("equivalent", []))


@contextlib.contextmanager
def tree_copy() -> Iterator[Path]:
    """A copy of the tree the tests run in, without bytecode caches (a stale one could hide a mutant)."""
    with tempfile.TemporaryDirectory(prefix="snapcrawl-mutants-") as where:
        root = Path(where)
        for name in TREE:
            source = REPO / name
            if source.is_dir():
                shutil.copytree(source, root / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            elif source.exists():
                shutil.copy2(source, root / name)
        yield root


def _env(root: Path) -> dict[str, str]:
    return os.environ | {"PYTHONPATH": str(root), "PYTHONDONTWRITEBYTECODE": "1", "CI": "true"}


@dataclasses.dataclass(frozen=True)
class Budget:
    """How long a mutant's tests may take: CPU seconds (a busy loop), and wall seconds (a deadlock)."""

    cpu: float
    wall: float

    @classmethod
    def after(cls, cpu: float, wall: float) -> Budget:
        """Generous multiples of the unmutated run: the machine is shared, and a slow run is no kill."""
        return cls(cpu=4 * cpu + 15, wall=10 * wall + 60)


def run_tests(root: Path, tests: Sequence[str], budget: Budget) -> tuple[bool | None, float, float]:
    """Run ``tests`` in ``root``: (passed, or ``None`` when over budget; wall seconds; CPU seconds)."""
    argv = [sys.executable, "-m", "pytest", *tests, "-x", "-q", "-p", "no:cacheprovider", "--no-header"]
    cpu_limit = math.ceil(budget.cpu)

    def limit() -> None:  # in the child: SIGXCPU once it has used its CPU seconds
        resource.setrlimit(resource.RLIMIT_CPU, (cpu_limit, cpu_limit + 5))

    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    try:
        done = subprocess.run(
            argv, cwd=root, env=_env(root), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            timeout=budget.wall, check=False, preexec_fn=limit,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        return None, time.perf_counter() - started, 0.0
    wall = time.perf_counter() - started
    now = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = now.ru_utime + now.ru_stime - used.ru_utime - used.ru_stime
    if done.returncode in (-signal.SIGXCPU, -signal.SIGKILL):
        return None, wall, cpu
    return done.returncode == 0, wall, cpu


def _check_copy_is_imported(root: Path) -> None:
    """The tests must import the copy, not the installed package; else every mutant would survive."""
    probe = [sys.executable, "-c", "import snapcrawl; print(snapcrawl.__file__)"]
    where = subprocess.run(probe, cwd=root, env=_env(root), capture_output=True, text=True, check=True).stdout
    if not Path(where.strip()).resolve().is_relative_to(root.resolve()):
        raise SystemExit(f"the tests would import {where.strip()}, not the mutated copy in {root}")


@contextlib.contextmanager
def applied(root: Path, mutant: Mutant) -> Iterator[None]:
    """The mutant in place in ``root``, for the duration of the block."""
    if mutant.how.startswith("curated"):
        subprocess.run(["git", "apply", "-"], input=mutant.source, text=True, check=True, cwd=root)
        try:
            yield
        finally:
            subprocess.run(["git", "apply", "-R", "-"], input=mutant.source, text=True, check=True, cwd=root)
        return
    path = root / mutant.module
    original = path.read_text(encoding="utf-8")
    path.write_text(mutant.source, encoding="utf-8")
    try:
        yield
    finally:
        path.write_text(original, encoding="utf-8")


def judge(root: Path, target: Target, mutants: list[Mutant], budget: Budget, known: list[dict[str, str]]) -> None:
    """Run each mutant of ``target``; set its outcome."""
    for number, mutant in enumerate(mutants, 1):
        with applied(root, mutant):
            passed, mutant.seconds, _ = run_tests(root, target.args(mutant.module), budget)
        if passed is None:
            mutant.outcome = "timeout"
        elif not passed:
            mutant.outcome = "killed"
        else:
            match = next(
                (
                    entry
                    for entry in known
                    if entry["module"] == mutant.module
                    and entry["before"].strip() == mutant.before
                    and entry["after"].strip() == mutant.after
                ),
                None,
            )
            mutant.outcome = "equivalent" if match else "survived"
            mutant.reason = match["reason"] if match else ""
        print(
            f"  [{number}/{len(mutants)}] {mutant.outcome:10} {mutant.seconds:5.1f} s  {mutant.module} {mutant.how}",
            flush=True,
        )


def report(mutants: list[Mutant]) -> list[dict[str, Any]]:
    """Kill rate per module: killed (timeouts included) / (mutants - equivalent)."""
    rows = []
    for module in dict.fromkeys(m.module for m in mutants):
        mine = [m for m in mutants if m.module == module]
        killed = sum(m.outcome in ("killed", "timeout") for m in mine)
        equivalent = sum(m.outcome == "equivalent" for m in mine)
        counted = len(mine) - equivalent
        rows.append({
            "module": module,
            "mutants": len(mine),
            "killed": killed,
            "equivalent": equivalent,
            "survived": counted - killed,
            "kill_rate": killed / counted if counted else 1.0,
            "seconds": round(sum(m.seconds for m in mine), 1),
        })  # fmt: skip
    return rows


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.studies.mutation", description=__doc__.split("\n")[0])
    parser.add_argument("--only", help="comma-separated targets: " + ",".join(t.name for t in TARGETS))
    parser.add_argument("--per-module", type=int, default=30, metavar="N", help="sampled mutants per module")
    parser.add_argument("--seed", type=int, default=0, help="which sites are sampled")
    parser.add_argument("--no-curated", action="store_true", help="leave out benchmarks/studies/mutants/*.diff")
    parser.add_argument("--list", action="store_true", help="print the sampled mutants and stop")
    parser.add_argument("--target", type=float, default=0.95, help="the kill rate below which it exits 1")
    parser.add_argument("--json", type=Path, metavar="PATH", help="write the outcome of every mutant there")
    parser.add_argument(
        "--survivors", type=Path, metavar="PATH", help="run only the mutants that survived in an earlier --json"
    )
    return parser


def _mutants(target: Target, args: argparse.Namespace) -> list[Mutant]:
    """The mutants of ``target`` this run judges."""
    mutants = sample(target, args.per_module, args.seed)
    if not args.no_curated:
        mutants += curated([target])
    if args.survivors:
        earlier = json.loads(args.survivors.read_text(encoding="utf-8"))["mutants"]
        again = {(m["module"], m["how"]) for m in earlier if m["outcome"] == "survived"}
        mutants = [m for m in mutants if (m.module, m.how) in again]
    return mutants


def _print(rows: list[dict[str, Any]], everything: list[Mutant]) -> float:
    """Print the table and the survivors; return the overall kill rate."""
    print(f"\n{'module':34} {'mutants':>7} {'killed':>6} {'equiv':>5} {'surv':>4} {'kill rate':>9} {'time':>7}")
    for row in rows:
        print(
            f"{row['module']:34} {row['mutants']:7} {row['killed']:6} {row['equivalent']:5} {row['survived']:4} "
            f"{row['kill_rate']:9.1%} {row['seconds']:6.0f}s"
        )
    killed = sum(r["killed"] for r in rows)
    counted = sum(r["mutants"] - r["equivalent"] for r in rows)
    overall = killed / counted if counted else 1.0
    print(f"{'all':34} {len(everything):7} {killed:6} {'':5} {counted - killed:4} {overall:9.1%}")
    for mutant in everything:
        if mutant.outcome == "survived":
            print(f"\nSURVIVED {mutant.module} {mutant.how}\n{mutant.diff}")
    return overall


def main(argv: Sequence[str] | None = None) -> int:
    # Stopped with SIGTERM, it still removes its copy of the tree (and the mutant in it).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    parser = _parser()
    args = parser.parse_args(argv)
    chosen = TARGETS
    if args.only:
        names = set(args.only.split(","))
        if unknown := names - {t.name for t in TARGETS}:
            parser.error(f"unknown targets: {', '.join(sorted(unknown))}")
        chosen = tuple(t for t in TARGETS if t.name in names)
    known = equivalents()
    everything: list[Mutant] = []
    started = time.perf_counter()
    with tree_copy() as root:
        _check_copy_is_imported(root)
        for target in chosen:
            mutants = _mutants(target, args)
            if args.list:
                print("\n\n".join(f"{m.module} {m.how}\n{m.diff}" for m in mutants))
                continue
            if not mutants:
                continue
            passed, seconds, cpu = run_tests(root, target.tests, Budget(cpu=600, wall=600))
            if not passed:
                raise SystemExit(f"{target.name}: its tests fail without any mutant: {' '.join(target.tests)}")
            print(
                f"{target.name}: {len(mutants)} mutants; unmutated, its tests take {seconds:.1f} s ({cpu:.1f} s CPU)",
                flush=True,
            )
            judge(root, target, mutants, Budget.after(cpu, seconds), known)
            everything += mutants
    if args.list:
        return 0
    rows = report(everything)
    overall = _print(rows, everything)
    print(f"wall time {time.perf_counter() - started:.0f} s")
    if args.json:
        outcomes = [dataclasses.asdict(m) | {"source": "", "diff": m.diff} for m in everything]
        args.json.write_text(json.dumps({"rows": rows, "mutants": outcomes}, indent=2), encoding="utf-8")
    return 0 if overall >= args.target else 1


if __name__ == "__main__":
    sys.exit(main())
