"""The report's shared parts: the machine it ran on, aligned tables, and the whole text put together."""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import platform
import subprocess
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..helpers.harness import CLIENT_CPUS, REPO_ROOT, SERVER_CPUS
from ._bench import Plan

__all__ = ["Render", "machine_info", "render", "table"]

#: How one measurement turns its results into report lines.
Render = Callable[[Any, Plan], list[str]]


def _command(*cmd: str) -> str:
    try:
        done = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout.strip()


def machine_info() -> dict[str, Any]:
    """CPU model and count, kernel, memory, Python and library versions, the commit measured."""
    lscpu = {
        key.strip(): value.strip()
        for key, _, value in (line.partition(":") for line in _command("lscpu").splitlines())
        if value
    }
    memory_gb = 0.0
    with contextlib.suppress(OSError), open("/proc/meminfo", encoding="ascii") as file:
        memory_gb = int(file.readline().split()[1]) / 1024**2
    versions = {}
    for name in ("aiohttp", "msgspec", "anyio", "uvloop", "yarl", "structlog", "pyinstrument", "snapcrawl"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[name] = importlib.metadata.version(name)
    return {
        "cpu_model": lscpu.get("Model name", platform.processor()),
        "cpus": os.cpu_count(),
        "hypervisor": lscpu.get("Hypervisor vendor"),
        "memory_gb": round(memory_gb, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "versions": versions,
        "server_cpus": sorted(SERVER_CPUS),
        "client_cpus": sorted(CLIENT_CPUS),
        "loadavg_at_start": _command("cat", "/proc/loadavg"),
        "commit": _command("git", "rev-parse", "--short", "HEAD"),
        "local_changes": bool(_command("git", "status", "--porcelain", "--", "snapcrawl")),
    }


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], indent: str = "   ") -> list[str]:
    """Columns aligned: the first to the left, the others to the right."""
    widths = [max(len(str(row[i])) for row in (headers, *rows)) for i in range(len(headers))]
    lines = []
    for row in (headers, *rows):
        cells = [str(cell).ljust(widths[0]) if i == 0 else str(cell).rjust(widths[i]) for i, cell in enumerate(row)]
        lines.append(indent + "  ".join(cells).rstrip())
    return lines


def render(results: dict[str, Any], plan: Plan, renderers: Mapping[str, Render]) -> str:
    """The human-readable report: the machine, each measurement that ran (in ``renderers`` order), the checks."""
    machine = results["machine"]
    versions = ", ".join(f"{name} {version}" for name, version in machine["versions"].items())
    lines = [
        f"snapcrawl benchmarks ({results['mode']}), {results['started']}, commit {machine['commit']}"
        + (" + local changes" if machine["local_changes"] else ""),
        f"machine: {machine['cpu_model']}, {machine['cpus']} CPUs"
        + (f" ({machine['hypervisor']} VM)" if machine["hypervisor"] else "")
        + f", {machine['memory_gb']:g} GB, Linux {machine['kernel']}, Python {machine['python']}",
        f"libraries: {versions}",
        f"simulator subprocess on CPU {machine['server_cpus']}, each client in its own subprocess on CPU "
        f"{machine['client_cpus']}",
    ]
    for name, render_one in renderers.items():
        if name in results:
            lines += ["", *render_one(results[name], plan)]
    checks = results["checks"]
    failed = [check for check in checks if not check["ok"]]
    lines += [
        "",
        f"checks: {len(checks) - len(failed)}/{len(checks)} passed "
        "(every output holds each snapshot exactly once, every run completed)",
    ]
    lines += [f"   FAILED: {check['name']}: {check['detail']}" for check in failed]
    return "\n".join(lines)
