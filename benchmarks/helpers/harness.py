"""Process plumbing: pinned subprocesses with timeouts, CPU time read from ``/proc``, the simulator subprocess."""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self

import msgspec

from snapcrawl.simulator import DEMO_CREDENTIALS, Dataset

__all__ = [
    "ALL_CPUS",
    "CLIENT_CPUS",
    "REPO_ROOT",
    "SERVER_CPUS",
    "ProcessResult",
    "SimulatorProcess",
    "client_env",
    "core_seconds",
    "count_lines_and_ids",
    "cpu_seconds",
    "expected_requests",
    "pages_per_volume",
    "run_pinned",
    "volumes_for_requests",
]

REPO_ROOT: Final = Path(__file__).resolve().parents[2]
#: The CPUs this process may use when it starts; the runner then moves itself to the server's CPU.
ALL_CPUS: Final = frozenset(os.sched_getaffinity(0))
_TWO: Final = len(ALL_CPUS) >= 2
SERVER_CPUS: Final = frozenset({min(ALL_CPUS)}) if _TWO else ALL_CPUS
CLIENT_CPUS: Final = frozenset({max(ALL_CPUS)}) if _TWO else ALL_CPUS
_URL_LINE: Final = re.compile(r"serving \d+ volumes at (?P<url>http://\S+)")
_POLL: Final = 0.01
_serial: Final = itertools.count(1)


def client_env(*path: Path) -> dict[str, str]:
    """The environment of a client subprocess: the simulator's credentials, and ``path`` (by default this
    repository) importable."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("SCP_", "PYTHON"))}
    env["SCP_ACCESS_KEY"] = DEMO_CREDENTIALS.access_key
    env["SCP_SECRET_KEY"] = DEMO_CREDENTIALS.secret_key
    env["PYTHONPATH"] = os.pathsep.join(str(entry) for entry in path or (REPO_ROOT,))
    env["PYTHONHASHSEED"] = "0"
    return env


def _pinned(cmd: Sequence[str], cpus: Iterable[int]) -> list[str]:
    """``cmd`` run on ``cpus`` (through ``taskset``, which execs, so the pid stays the command's)."""
    wanted = sorted(cpus)
    if shutil.which("taskset"):
        return ["taskset", "-c", ",".join(map(str, wanted)), *cmd]
    return list(cmd)


def _set_affinity(pid: int, cpus: Iterable[int]) -> None:
    """Pin ``pid`` when ``taskset`` is missing (its threads started later inherit it)."""
    if not shutil.which("taskset"):
        with contextlib.suppress(OSError):
            os.sched_setaffinity(pid, set(cpus))


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a live process (all its threads), in nanosecond resolution where possible."""
    total = 0
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/schedstat", encoding="ascii") as file:
                total += int(file.read().split()[0])
    except (OSError, ValueError, IndexError):
        with open(f"/proc/{pid}/stat", encoding="ascii") as file:
            fields = file.read().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total / 1e9


def core_seconds(cpus: Iterable[int]) -> tuple[float, float]:
    """Busy and stolen CPU seconds of ``cpus`` since boot, from ``/proc/stat`` (to spot other load on a core)."""
    wanted = {f"cpu{cpu}" for cpu in cpus}
    busy = steal = 0
    with open("/proc/stat", encoding="ascii") as file:
        for line in file:
            name, *fields = line.split()
            if name in wanted:
                user, nice, system, _idle, _iowait, irq, softirq, stolen = map(int, fields[:8])
                busy += user + nice + system + irq + softirq
                steal += stolen
    ticks = os.sysconf("SC_CLK_TCK")
    return busy / ticks, steal / ticks


class _Identified(msgspec.Struct):
    id: str


_ids_decoder: Final = msgspec.json.Decoder(_Identified)


def count_lines_and_ids(path: Path) -> tuple[int, int]:
    """Lines in a JSON Lines file of snapshots, and distinct snapshot ids among them (read 4 MiB at a time)."""
    lines = 0
    ids: set[str] = set()
    rest = b""
    with path.open("rb") as file:
        while chunk := file.read(1 << 22):
            chunk, _, tail = (rest + chunk).rpartition(b"\n")
            rest = tail
            if chunk:
                lines += chunk.count(b"\n") + 1
                ids.update(item.id for item in _ids_decoder.decode_lines(chunk))
    if rest.strip():
        lines += 1
        ids.update(item.id for item in _ids_decoder.decode_lines(rest))
    return lines, len(ids)


def _tail(path: Path, size: int = 2000) -> str:
    with contextlib.suppress(OSError), path.open("rb") as file:
        file.seek(max(0, path.stat().st_size - size))
        return file.read().decode("utf-8", "replace")
    return ""


def _high_water_kb(pid: int) -> int:
    """``VmHWM`` (peak resident set, KiB) of a live process; 0 once it has exited.

    Not ``ru_maxrss``: Linux carries that across ``execve``, so a child would report its parent's size.
    """
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as file:
            for line in file:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


@dataclasses.dataclass(frozen=True, slots=True)
class ProcessResult:
    """How a subprocess ended: exit code, wall time, CPU time and peak RSS (``VmHWM`` sampled every 10 ms), all
    of it, start-up included."""

    returncode: int
    wall: float
    cpu: float
    peak_rss_mb: float
    timed_out: bool
    stderr_tail: str
    report: dict[str, Any]

    @property
    def ok(self) -> bool:
        """Whether it exited 0 in time."""
        return self.returncode == 0 and not self.timed_out


def run_pinned(
    cmd: Sequence[str],
    *,
    cpus: Iterable[int],
    timeout: float,
    logs: Path,
    env: Mapping[str, str] | None = None,
    report: Path | None = None,
    cwd: Path = REPO_ROOT,
) -> ProcessResult:
    """Run ``cmd`` on ``cpus`` in ``cwd``, killed after ``timeout`` s; its own rusage comes from ``wait4``.

    ``report`` is a JSON file the command writes (read back into :attr:`ProcessResult.report`).
    """
    cpus = frozenset(cpus)
    if report is not None:
        report.unlink(missing_ok=True)
    stderr_path = logs.with_suffix(".stderr")
    with stderr_path.open("wb") as stderr, (logs.with_suffix(".stdout")).open("wb") as stdout:
        started = time.perf_counter()
        proc = subprocess.Popen(
            _pinned(cmd, cpus), cwd=cwd, env=dict(env or client_env()), stdout=stdout, stderr=stderr
        )
    timed_out = False
    try:
        _set_affinity(proc.pid, cpus)
        deadline = started + timeout
        peak_kb = 0
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            peak_kb = max(peak_kb, _high_water_kb(proc.pid))
            if time.perf_counter() > deadline:
                timed_out = True
                proc.kill()
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(_POLL)
        wall = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
    except BaseException:
        if proc.returncode is None:
            proc.kill()
            proc.wait()
        raise
    data: dict[str, Any] = {}
    if report is not None and report.exists():
        with contextlib.suppress(ValueError):
            data = json.loads(report.read_text(encoding="utf-8"))
    return ProcessResult(
        returncode=proc.returncode,
        wall=wall,
        cpu=usage.ru_utime + usage.ru_stime,
        peak_rss_mb=peak_kb / 1024,
        timed_out=timed_out,
        stderr_tail=_tail(stderr_path),
        report=data,
    )


class SimulatorProcess:
    """``python -m snapcrawl.cli simulate`` in a subprocess pinned to :data:`SERVER_CPUS`; a context manager.

    Serves ``volumes`` volumes on a free port; ``volume_file`` lists their ids. :meth:`cpu` reads its CPU time.
    """

    def __init__(
        self,
        *,
        volumes: int,
        workdir: Path,
        seed: int = 0,
        faults: Sequence[str] = (),
        cpus: Iterable[int] = SERVER_CPUS,
        start_timeout: float = 120.0,
    ) -> None:
        self.volumes = volumes
        self.seed = seed
        self.faults = tuple(faults)
        self.cpus = frozenset(cpus)
        self.start_timeout = start_timeout
        name = f"sim-{volumes}-{next(_serial)}"
        self.volume_file = workdir / f"{name}.volumes"
        self._stdout = workdir / f"{name}.stdout"
        self._stderr = workdir / f"{name}.stderr"
        self._proc: subprocess.Popen[bytes] | None = None
        self._dataset: Dataset | None = None
        self.url = ""
        self.start_seconds = 0.0

    @property
    def pid(self) -> int:
        """The server's process id."""
        if self._proc is None:
            raise RuntimeError("the simulator is not running")
        return self._proc.pid

    def cpu(self) -> float:
        """CPU seconds the server has used so far."""
        return cpu_seconds(self.pid)

    def dataset(self) -> Dataset:
        """The data it serves (rebuilt here from ``volumes`` and ``seed``; deterministic)."""
        if self._dataset is None:
            self._dataset = Dataset(self.volumes, self.seed)
        return self._dataset

    def __enter__(self) -> Self:
        cmd = [
            sys.executable, "-m", "snapcrawl.cli", "simulate", "--port", "0", "--volumes", str(self.volumes),
            "--seed", str(self.seed), "--volume-file", str(self.volume_file), *self.faults,
        ]  # fmt: skip
        started = time.perf_counter()
        with self._stdout.open("wb") as stdout, self._stderr.open("wb") as stderr:
            self._proc = subprocess.Popen(
                _pinned(cmd, self.cpus), cwd=REPO_ROOT, env=client_env(), stdout=stdout, stderr=stderr
            )
        try:
            _set_affinity(self._proc.pid, self.cpus)
            self.url = self._wait_for_url(started + self.start_timeout)
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.perf_counter() - started
        return self

    def _wait_for_url(self, deadline: float) -> str:
        while time.perf_counter() < deadline:
            match = _URL_LINE.search(self._stdout.read_text(encoding="utf-8", errors="replace"))
            if match and self.volume_file.exists():
                return match["url"]
            if self._proc is not None and self._proc.poll() is not None:
                raise RuntimeError(f"the simulator exited with {self._proc.returncode}: {_tail(self._stderr)}")
            time.sleep(0.02)
        raise TimeoutError(f"the simulator printed no URL within {self.start_timeout:g} s: {_tail(self._stderr)}")

    def stop(self) -> None:
        """Terminate the server (SIGTERM: SIGINT may be ignored in background jobs), kill it if it lingers."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def pages_per_volume(count: int, page_size: int) -> int:
    """Requests a fault-free walk of a volume of ``count`` snapshots takes when it ends on an empty or short page,
    as snapcrawl, the ceiling and the naive client all do: one more than the full pages (a volume whose count is
    a positive multiple of ``page_size`` ends on an empty page; an empty volume takes one request)."""
    return count // page_size + 1


def expected_requests(dataset: Dataset, page_size: int) -> int:
    """Requests a fault-free crawl of every volume takes (see :func:`pages_per_volume`)."""
    return sum(pages_per_volume(dataset.count(volume_id), page_size) for volume_id in dataset.volume_ids)


def volumes_for_requests(target: int, page_size: int, seed: int = 0) -> int:
    """The fewest volumes (the simulator's first ones) whose crawl takes at least ``target`` requests."""
    dataset = Dataset(int(target * 1.05) + 100, seed)
    total = 0
    for index, volume_id in enumerate(dataset.volume_ids, start=1):
        total += pages_per_volume(dataset.count(volume_id), page_size)
        if total >= target:
            return index
    return dataset.volumes
