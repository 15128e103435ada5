"""The shared quota on Redis: what leases cost (Redis commands and latency per request), how well processes
share a quota, and runs after runs.

``python -m benchmarks.studies.redis_overhead [--seconds S] [--quota Q] [--processes N] [--only ...] [--json FILE]``

Redis cost is counted as Redis counts it: the growth of ``INFO stats`` ``total_commands_processed`` over a run
(commands inside scripts included), divided by the requests the server saw.

1. Overhead: the mean time one ``acquire()`` takes, for the local limiter and the Redis one (uncapped, and capped
   far above what is asked so no one waits), from 64 concurrent tasks; and Redis calls per grant.
2. Sharing: a simulator answering 429 above ``Q`` requests/s (burst 10) and ``N`` client processes, each with 32
   requests in flight, sending for ``S`` seconds through one :class:`RedisLimiter`:
   - told the quota (``rate=Q``): the most requests the server counted in any of its whole seconds against
     ``Q + burst``, and the share of the quota used;
   - discovering (no rate): the share of the quota used, and the share of requests answered 429;
   - told, with Redis killed 3 s in: every process keeps going (locally, at its share) and finishes.
3. Runs after runs (``--only runs``): one simulator and one Redis kept across runs. Five told runs in a row
   (told T, an idle gap, a tiny run, T again, then 2T), against a server quota of 4T; then three discovering runs
   with idle gaps against a server quota of Q. Each run's rate at the server beside the rate it was told (or the
   quota), its 429s, and the rate Redis holds after it, side by side.

Each client is this module run as ``drive`` in a subprocess: a minimal request loop (acquire, signed GET, feed
back the answer), so that the figures are the limiter's, not the crawler's.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio

from snapcrawl._signing import Signer
from snapcrawl._transport import AiohttpTransport
from snapcrawl.limits.local import LocalLimiter
from snapcrawl.limits.redis import RedisLimiter
from snapcrawl.simulator import DEMO_CREDENTIALS, STATS_PATH

from ..helpers.harness import REPO_ROOT, SimulatorProcess, client_env

BURST = 10
IN_FLIGHT = 32


# ----------------------------------------------------------------------------------------------------- redis-server
@contextlib.contextmanager
def redis_server() -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A throwaway redis-server on a free loopback port, persistence off."""
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    try:
        for _ in range(200):
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0", proc
    finally:
        proc.kill()
        proc.wait()


# -------------------------------------------------------------------------------------------------------- overhead
async def _acquire_rate(limiter: Any, total: int, tasks: int = 64) -> float:
    """Mean microseconds per acquire() with ``tasks`` concurrent callers."""
    per_task = total // tasks

    async def run() -> None:
        for _ in range(per_task):
            ticket = await limiter.acquire()
            limiter.on_success(ticket, {})

    started = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for _ in range(tasks):
            tg.start_soon(run)
    return (time.perf_counter() - started) / (per_task * tasks) * 1e6


async def overhead(redis_url: str, total: int) -> dict[str, Any]:
    """Microseconds per acquire: local and Redis, uncapped and capped far above the demand."""
    out: dict[str, Any] = {}
    out["local_capped_us"] = await _acquire_rate(LocalLimiter(1e7, burst=1000), total)
    for name, rate in (("redis_uncapped", None), ("redis_capped", 1e7)):
        limiter = RedisLimiter(redis_url, endpoint=f"http://bench/{name}", access_key="k", rate=rate, burst=1000)
        async with limiter:
            before = _commands(redis_url)
            out[f"{name}_us"] = await _acquire_rate(limiter, total)
            out[f"{name}_commands_per_grant"] = round((_commands(redis_url) - before - 1) / total, 4)
            out[f"{name}_calls_per_grant"] = round(limiter.stats.redis_calls / max(limiter.stats.granted_shared, 1), 3)
    return out


def _commands(redis_url: str) -> int:
    """Redis's own count of the commands it has processed (scripts' commands included); this INFO is one."""
    import redis  # noqa: PLC0415 - a benchmark dependency of the redis extra

    client = redis.Redis.from_url(redis_url)
    try:
        return int(client.info("stats")["total_commands_processed"])
    finally:
        client.close()


# ----------------------------------------------------------------------------------------------------------- drive
def _retry_after(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


async def drive(args: argparse.Namespace, volumes: list[str]) -> dict[str, Any]:
    """One client process: send for ``seconds`` through the shared limiter; count answers."""
    signer = Signer(DEMO_CREDENTIALS, api_version="1.1")
    transport = AiohttpTransport(connections=IN_FLIGHT, timeout=10.0)
    counts = {"ok": 0, "throttled": 0, "errors": 0}
    limiter = RedisLimiter(
        args.redis, endpoint=args.url, access_key=DEMO_CREDENTIALS.access_key, rate=args.rate, burst=BURST
    )
    async with limiter:
        deadline = time.monotonic() + args.seconds

        async def worker(index: int) -> None:
            n = index
            while time.monotonic() < deadline:
                n += IN_FLIGHT
                url = f"{args.url}/v1/snapshots?volume_id={volumes[n % len(volumes)]}&limit=1"
                ticket = await limiter.acquire()
                try:
                    response = await transport.get(url, signer.headers("GET", url))
                except Exception:  # counted; the benchmark goes on
                    counts["errors"] += 1
                    continue
                if response.status == 429:
                    counts["throttled"] += 1
                    wait = limiter.on_throttle(ticket, _retry_after(response.retry_after), response.headers)
                    if wait:
                        await anyio.sleep(wait)
                else:
                    counts["ok"] += 1
                    limiter.on_success(ticket, response.headers)

        async def watch() -> None:
            while time.monotonic() < deadline:
                await anyio.sleep(1.0)
                if os.environ.get("REDIS_BENCH_DEBUG"):
                    print("rate", limiter.rate, counts, file=sys.stderr)

        async with anyio.create_task_group() as tg:
            tg.start_soon(watch)
            for index in range(IN_FLIGHT):
                tg.start_soon(worker, index)
    await transport.aclose()
    stats = limiter.stats
    return counts | {
        "granted_shared": stats.granted_shared,
        "granted_local": stats.granted_local,
        "fallbacks": stats.fallbacks,
        "redis_calls": stats.redis_calls,
        "requeued": stats.requeued,
        "leases": stats.leases,
        "expired": stats.expired,
        "waited": stats.waited,
        "waited_seconds": stats.waited_seconds,
    }


# ----------------------------------------------------------------------------------------------------------- leases
async def grant_only(args: argparse.Namespace) -> dict[str, Any]:
    """One process taking grants as fast as the shared limiter allows, no HTTP: the limiter's own figures."""
    limiter = RedisLimiter(args.redis, endpoint="http://bench/leases", access_key="k", rate=args.rate, burst=BURST)
    per_second: dict[int, int] = {}
    async with limiter:
        deadline = time.monotonic() + args.seconds

        async def worker() -> None:
            while time.monotonic() < deadline:
                ticket = await limiter.acquire()
                second = int(time.time())
                per_second[second] = per_second.get(second, 0) + 1
                await anyio.sleep(0.005)  # a request's latency
                limiter.on_success(ticket, {})

        async with anyio.create_task_group() as tg:
            for _ in range(IN_FLIGHT):
                tg.start_soon(worker)
    stats = limiter.stats
    return {
        "per_second": per_second,
        "granted": stats.granted_shared,
        "redis_calls": stats.redis_calls,
        "leases": stats.leases,
        "expired": stats.expired,
        "waited": stats.waited,
        "waited_seconds": stats.waited_seconds,
    }


def leases(*, rate: float, processes: int, seconds: float) -> dict[str, Any]:
    """``processes`` processes sharing a told ``rate`` through leases, without HTTP: grants per wall-clock second
    (all processes together), the share of the rate, and Redis commands per grant as Redis counts them."""
    with redis_server() as (redis_url, _):
        cmd = [
            sys.executable, "-m", "benchmarks.studies.redis_overhead", "grant", "--url", "-", "--redis", redis_url,
            "--seconds", str(seconds), "--volume-file", "-", "--rate", str(rate),
        ]  # fmt: skip
        before = _commands(redis_url)
        clients = [
            subprocess.Popen(cmd, cwd=REPO_ROOT, env=client_env(), stdout=subprocess.PIPE) for _ in range(processes)
        ]
        results = []
        for client in clients:
            out, _ = client.communicate(timeout=seconds + 60)
            results.append(json.loads(out.decode().strip().rpartition("\n")[2]))
        commands = _commands(redis_url) - before - 1
    totals: dict[int, int] = {}
    for result in results:
        for second, count in result["per_second"].items():
            totals[int(second)] = totals.get(int(second), 0) + count
    whole = [totals[second] for second in sorted(totals)][1:-1]  # the first and last seconds are partial
    granted = sum(result["granted"] for result in results)
    waited = sum(result["waited"] for result in results)
    return {
        "rate": rate,
        "processes": processes,
        "per_second": whole,
        "max_per_second": max(whole, default=0),
        "limit_per_second": rate + BURST,
        "of_told": round(sum(whole) / max(len(whole), 1) / rate, 3),
        "redis_commands_per_grant": round(commands / max(granted, 1), 4),
        "redis_calls_per_grant": round(sum(r["redis_calls"] for r in results) / max(granted, 1), 4),
        "waited_share": round(waited / max(granted, 1), 4),
        "waited_mean_ms": round(1000 * sum(r["waited_seconds"] for r in results) / max(waited, 1), 3),
        "expired_tokens": sum(r["expired"] for r in results),
    }


# ---------------------------------------------------------------------------------------------------------- sharing
def _sim_stats(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url + STATS_PATH, timeout=10) as answer:  # noqa: S310 - our own loopback server
        result: dict[str, Any] = json.load(answer)
    return result


def share(
    *, quota: float, processes: int, seconds: float, told: bool, kill_redis_at: float | None, workdir: Path
) -> dict[str, Any]:
    """Run ``processes`` clients against one quota; the server's view and the clients' counts."""
    faults = ["--rate-limit", str(quota), "--rate-burst", str(BURST)]
    with SimulatorProcess(volumes=200, workdir=workdir, faults=faults) as sim, redis_server() as (redis_url, redis):
        cmd = [
            sys.executable, "-m", "benchmarks.studies.redis_overhead", "drive", "--url", sim.url, "--redis", redis_url,
            "--seconds", str(seconds), "--volume-file", str(sim.volume_file),
        ]  # fmt: skip
        if told:
            cmd += ["--rate", str(quota)]
        commands_before = _commands(redis_url)
        clients = [
            subprocess.Popen(cmd, cwd=REPO_ROOT, env=client_env(), stdout=subprocess.PIPE) for _ in range(processes)
        ]
        if kill_redis_at is not None:
            _wait_for_processes(redis_url, processes)  # all in the registry: then Redis goes away mid-crawl
            time.sleep(kill_redis_at)
            redis.kill()
        results = []
        for client in clients:
            out, _ = client.communicate(timeout=seconds + 120)
            last = out.decode().strip().rpartition("\n")[2] if out.strip() else "{}"
            results.append({"exit": client.returncode, **json.loads(last)})
        commands = _commands(redis_url) - commands_before - 1 if kill_redis_at is None else None
        server = _sim_stats(sim.url)
        if os.environ.get("REDIS_BENCH_DEBUG"):
            print(server["per_second"], file=sys.stderr)
    rows = [row for row in server["per_second"] if row["requests"]]
    full = rows[1:-1]  # whole seconds only: the first and last are partly idle
    ok = sum(row["ok"] for row in full)
    requests = sum(row["requests"] for row in server["per_second"])
    throttled = sum(row["throttled"] for row in server["per_second"])
    return {
        "told": told,
        "redis_killed_at": kill_redis_at,
        "quota": quota,
        "processes": processes,
        "seconds_measured": len(full),
        "max_per_second": max((row["requests"] for row in full), default=0),
        "limit_per_second": quota + BURST,
        "used": round(ok / (quota * max(len(full), 1)), 3),
        "throttled_share": round(throttled / max(requests, 1), 4),
        "clients_exit": [result["exit"] for result in results],
        "granted_local": sum(result.get("granted_local", 0) for result in results),
        "redis_calls_per_grant": round(
            sum(r.get("redis_calls", 0) for r in results) / max(sum(r.get("granted_shared", 0) for r in results), 1), 3
        ),
        "redis_commands_per_request": None if commands is None else round(commands / max(requests, 1), 4),
        "requests_per_second": round(sum(row["requests"] for row in full) / max(len(full), 1), 1),
        # The Redis round trip added to requests: how many waited for a lease call, and their mean wait.
        "waited_share": round(sum(r.get("waited", 0) for r in results) / max(requests, 1), 4),
        "waited_mean_ms": round(
            1000
            * sum(r.get("waited_seconds", 0.0) for r in results)
            / max(sum(r.get("waited", 0) for r in results), 1),
            3,
        ),
        "expired_tokens": sum(r.get("expired", 0) for r in results),
    }


def _wait_for_processes(redis_url: str, processes: int, timeout: float = 60.0) -> None:
    """Until ``processes`` clients are in the quota's registry (a loaded machine starts them slowly)."""
    import redis  # noqa: PLC0415 - a benchmark dependency of the redis extra

    client = redis.Redis.from_url(redis_url)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            keys = client.keys("snapcrawl:quota:*:processes")
            if keys and client.zcard(keys[0]) >= processes:
                return
            time.sleep(0.05)
    finally:
        client.close()


def _drive_command(sim_url: str, redis_url: str, volume_file: Path, seconds: float, rate: float | None) -> list[str]:
    cmd = [
        sys.executable, "-m", "benchmarks.studies.redis_overhead", "drive", "--url", sim_url, "--redis", redis_url,
        "--seconds", str(seconds), "--volume-file", str(volume_file),
    ]  # fmt: skip
    return cmd + (["--rate", str(rate)] if rate is not None else [])


def _stored_rate(redis_url: str) -> float | None:
    """The rate in force that the (one) quota key in Redis holds."""
    import redis  # noqa: PLC0415 - a benchmark dependency of the redis extra

    client = redis.Redis.from_url(redis_url)
    try:
        keys = [key for key in client.keys("snapcrawl:quota:*") if not key.endswith(b":processes")]
        value = client.hget(keys[0], "rate") if keys else None
        return round(float(value), 1) if value else None
    finally:
        client.close()


def runs_in_a_row(*, processes: int, seconds: float, told: float, quota: float, workdir: Path) -> dict[str, Any]:
    """Told runs then discovering runs, one Redis and one simulator each series: the runs side by side."""
    series: dict[str, Any] = {}
    told_plan = [  # (name, told rate, seconds, idle seconds before)
        ("told", told, seconds, 0.0),
        ("after idle gap", told, seconds, 5.0),
        ("tiny", told, 0.3, 0.0),
        ("again", told, seconds, 0.0),
        ("raised", 2 * told, seconds, 0.0),
    ]
    discovering_plan = [(f"discovering {n}", None, seconds, 3.0 if n > 1 else 0.0) for n in (1, 2, 3)]
    for label, plan, server_quota in (("told", told_plan, 4 * told), ("discovering", discovering_plan, quota)):
        faults = ["--rate-limit", str(server_quota), "--rate-burst", str(BURST)]
        rows = []
        with SimulatorProcess(volumes=200, workdir=workdir, faults=faults) as sim, redis_server() as (redis_url, _):
            for name, rate, run_seconds, idle in plan:
                time.sleep(idle)
                seen = len(_sim_stats(sim.url)["per_second"])
                cmd = _drive_command(sim.url, redis_url, sim.volume_file, run_seconds, rate)
                clients = [
                    subprocess.Popen(cmd, cwd=REPO_ROOT, env=client_env(), stdout=subprocess.PIPE)
                    for _ in range(processes)
                ]
                for client in clients:
                    client.communicate(timeout=run_seconds + 120)
                seconds_rows = [row for row in _sim_stats(sim.url)["per_second"][max(seen - 1, 0) :] if row["requests"]]
                whole = seconds_rows[1:-1]
                requests = sum(row["requests"] for row in seconds_rows)
                per_second = sum(row["requests"] for row in whole) / len(whole) if whole else None
                target = rate if rate is not None else server_quota
                rows.append({
                    "run": name,
                    "told": rate,
                    "server_quota": server_quota,
                    "requests": requests,
                    "per_second": None if per_second is None else round(per_second, 1),
                    "of_target": None if per_second is None else round(per_second / target, 3),
                    "throttled_share": round(sum(row["throttled"] for row in seconds_rows) / max(requests, 1), 4),
                    "rate_in_redis_after": _stored_rate(redis_url),
                })  # fmt: skip
        series[label] = rows
    return series


def _print_runs(series: dict[str, Any]) -> None:
    print(
        f"{'run':<16}{'told':>8}{'quota':>8}{'requests':>10}{'req/s':>9}{'of told/quota':>15}{'429s':>8}{'stored':>9}"
    )
    for rows in series.values():
        for row in rows:
            cells = [row["told"], row["server_quota"], row["requests"], row["per_second"], row["of_target"]]
            told, quota, requests, per_second, share = ("-" if cell is None else cell for cell in cells)
            print(
                f"{row['run']:<16}{told!s:>8}{quota!s:>8}{requests!s:>10}{per_second!s:>9}{share!s:>15}"
                f"{row['throttled_share']:>8.2%}{row['rate_in_redis_after']!s:>9}"
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.studies.redis_overhead")
    sub = parser.add_subparsers(dest="command")
    for name in ("drive", "grant"):
        one = sub.add_parser(name, help="(internal) one client process")
        one.add_argument("--url", required=True)
        one.add_argument("--redis", required=True)
        one.add_argument("--seconds", type=float, required=True)
        one.add_argument("--volume-file", required=True)
        one.add_argument("--rate", type=float)
    parser.add_argument("--seconds", type=float, default=12.0)
    parser.add_argument("--quota", type=float, default=200.0)
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--acquires", type=int, default=20_000)
    parser.add_argument("--told", type=float, default=200.0, help="the told rate of the runs in a row")
    parser.add_argument("--lease-rate", type=float, default=2000.0, help="the told rate of the leases section")
    parser.add_argument(
        "--only", choices=("overhead", "leases", "told", "discovering", "redis-killed", "runs"), action="append"
    )
    parser.add_argument("--json", metavar="FILE", help="also write the figures here")
    args = parser.parse_args(argv)
    if args.command == "grant":
        print("\n" + json.dumps(asyncio.run(grant_only(args))))
        return 0
    if args.command == "drive":
        volumes = Path(args.volume_file).read_text().split()
        print("\n" + json.dumps(asyncio.run(drive(args, volumes))))
        return 0
    only = set(args.only or ("overhead", "leases", "told", "discovering", "redis-killed", "runs"))
    report: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        if "overhead" in only:
            with redis_server() as (url, _):
                report["overhead"] = asyncio.run(overhead(url, args.acquires))
            print("overhead", report["overhead"], flush=True)
        if "leases" in only:
            report["leases"] = leases(rate=args.lease_rate, processes=args.processes, seconds=args.seconds)
            print("leases", report["leases"], flush=True)
        runs = {"told": (True, None), "discovering": (False, None), "redis-killed": (True, 3.0)}
        for name, (told, kill_at) in runs.items():
            if name in only:
                report[name] = share(
                    quota=args.quota,
                    processes=args.processes,
                    seconds=args.seconds,
                    told=told,
                    kill_redis_at=kill_at,
                    workdir=workdir,
                )
                print(name, report[name], flush=True)
        if "runs" in only:
            report["runs"] = runs_in_a_row(
                processes=args.processes, seconds=args.seconds, told=args.told, quota=args.quota, workdir=workdir
            )
            _print_runs(report["runs"])
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
