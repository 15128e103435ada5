"""How much of the API's quota a crawl uses: snapcrawl's limiter, a fixed-rate client and the old CUBIC baseline.

    python -m benchmarks.studies.quota [--seconds 15] [--case NAME ...] [--client NAME ...] [--json FILE] [--model]
                               [--stalls EVERY:SECONDS] [--baseline FILE]

Every case starts ``snapcrawl simulate`` in its own process with a token-bucket quota (``--rate-limit``,
``--rate-burst``, ``--retry-after``, ``--latency``, optionally ``--quota-schedule`` and ``--ratelimit-headers``),
drives it for ``--seconds`` with 64 requests in flight, then reads ``GET /_simulator/stats``: every figure is
counted at the server, per whole second since the first request. "Used" is the share of the quota the server
admitted and "429s" the share of requests it throttled, both from the first request to the last: the start-up
(when a client that knows nothing finds the quota) counts, as it counts against a user's quota. The first
second's 429s are listed apart, and ``--json`` also holds the steady-state figures (from the second second on),
which is what versions before 0.4 reported. The clients:

* ``snapcrawl``: :class:`~snapcrawl.limits.LocalLimiter`, told ``--rate`` only where the case says so;
* ``fixed``: a token bucket at the (first) quota, told it, that never adapts; a 429 waits its Retry-After;
* ``cubic``: the limiter before rate discovery (``benchmarks/clients/_cubic.py``, botocore's adaptive mode).

The driver is self-contained (signer + aiohttp + a limiter) so it measures the limiter, not the crawl core: each
of its workers fetches first pages of volumes (or, account-wide, 100-snapshot pages by offset) and retries a
throttled request after the wait the limiter returns. ``--model`` runs the same cases on the fake-clock
token-bucket model the tests use (a bucket that decides on arrival, answers 10-30 ms later, arrivals up to 3 ms
late): deterministic, free of the machine's noise and instant, which is what the constants were tuned on.
``--stalls EVERY:SECONDS`` adds a host that stops now and then to the model. ``--baseline FILE`` reads the
``--json`` of an earlier run (another version of snapcrawl) and shows its snapcrawl figures as "before".
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import email.utils
import json
import logging
import math
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import structlog
from yarl import URL

from snapcrawl._config import DEFAULT_API_VERSION
from snapcrawl._signing import Signer
from snapcrawl.limits import Limiter, LocalLimiter
from snapcrawl.limits.local import Clock, Sleep, TokenBucket
from snapcrawl.simulator import DEMO_CREDENTIALS, STATS_PATH

from ..clients._cubic import AdaptiveRateLimiter

__all__ = ["CASES", "Case", "main"]

CONCURRENCY = 64
HOLD = 3  # seconds a settled level must last
MODEL_JITTER = 0.003  # --model: the bucket decides on arrival, and arrivals come up to 3 ms late


@dataclasses.dataclass(frozen=True)
class Case:
    """One server setting and what the client is told."""

    name: str
    quota: float
    burst: int
    told: bool = False  # --rate = the (first) quota
    retry_after: str = "seconds"
    latency: str = "0.01:0.03"
    schedule: str | None = None  # --quota-schedule AT:R,...
    headers: str = "none"  # --ratelimit-headers
    account_wide: bool = False
    note: str = ""

    def step(self) -> tuple[float, float] | None:
        """The first step of the schedule, (at seconds, new quota), if any."""
        if not self.schedule:
            return None
        at, _, rate = self.schedule.split(",")[0].partition(":")
        return float(at), float(rate)


CASES: tuple[Case, ...] = (
    Case("discover", 200, 20, note="quota 200/s, burst 20, no --rate"),
    Case("told", 200, 20, told=True, note="--rate 200"),
    Case("tight", 500, 5, told=True, note="quota 500/s, burst 5, --rate 500"),
    Case("discover-tight", 500, 5, note="quota 500/s, burst 5, no --rate"),
    Case("account", 800, 20, account_wide=True, note="quota 800/s, account-wide pages of 100, no --rate"),
    Case("http-date", 200, 20, retry_after="http-date", note="Retry-After as an HTTP date"),
    Case("no-retry-after", 200, 20, retry_after="none", note="no Retry-After"),
    Case("low", 20, 1, latency="0.005:0.2", note="quota 20/s, burst 1, latency 5-200 ms"),
    Case("high", 1500, 50, latency="0.005:0.01", note="quota 1500/s, burst 50, latency 5-10 ms"),
    Case("halves", 200, 20, schedule="6:100", note="200/s, then 100/s from 6 s"),
    Case("doubles", 100, 20, schedule="6:200", note="100/s, then 200/s from 6 s"),
    Case("ietf", 200, 20, headers="ietf", note="IETF RateLimit headers"),
    Case("x-headers", 200, 20, headers="x", schedule="6:100", note="X-RateLimit headers, quota halves at 6 s"),
)


class FixedRate:
    """A client told a rate that it keeps whatever the server says; a throttled request waits its Retry-After."""

    active = True

    def __init__(
        self, rate: float, *, burst: int = 10, clock: Clock = time.monotonic, sleep: Sleep = anyio.sleep
    ) -> None:
        self.bucket = TokenBucket(rate, burst=burst, clock=clock, sleep=sleep)
        self._clock = clock

    @property
    def rate(self) -> float | None:
        """The fixed rate."""
        return self.bucket.rate

    async def acquire(self) -> float:
        """Wait for the next slot."""
        await self.bucket.acquire()
        return self._clock()

    def on_success(self, ticket: float, headers: Mapping[str, str]) -> None:
        """Nothing to learn."""

    def on_throttle(self, ticket: float, retry_after: float | None, headers: Mapping[str, str]) -> float:
        """Wait what the server asked (one second if it did not say)."""
        return 1.0 if retry_after is None else retry_after


CLIENTS: dict[str, Callable[[Case], Limiter]] = {
    "snapcrawl": lambda case: LocalLimiter(case.quota if case.told else None),
    "fixed": lambda case: FixedRate(case.quota),
    "cubic": lambda case: AdaptiveRateLimiter(case.quota if case.told else None),
}


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After in either form, as the fetcher reads it."""
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        try:
            return max(email.utils.parsedate_to_datetime(value).timestamp() - time.time(), 0.0)
        except (TypeError, ValueError, IndexError):
            return None


async def _drive(endpoint: str, queries: list[str], limiter: Limiter, seconds: float) -> int:
    """Keep CONCURRENCY requests going through ``limiter`` for ``seconds``; return how many were sent."""
    signer = Signer(DEMO_CREDENTIALS, api_version=DEFAULT_API_VERSION)
    sent = 0
    position = 0

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal sent, position
        while True:
            query = queries[position % len(queries)]
            position += 1
            url = f"{endpoint}/v1/snapshots?{query}"
            while True:
                ticket = await limiter.acquire() if limiter.active else -math.inf
                sent += 1
                request = session.get(URL(url, encoded=True), headers=signer.headers("GET", url))
                async with request as response:
                    await response.read()
                    status, headers = response.status, response.headers
                if status != 429:
                    limiter.on_success(ticket, headers)
                    break
                wait = limiter.on_throttle(ticket, _retry_after(headers.get("Retry-After")), headers)
                if wait > 0:
                    await anyio.sleep(wait)

    connector = aiohttp.TCPConnector(limit=CONCURRENCY)
    async with aiohttp.ClientSession(connector=connector) as session, anyio.create_task_group() as tg:
        for _ in range(CONCURRENCY):
            tg.start_soon(worker, session)
        await anyio.sleep(seconds)
        tg.cancel_scope.cancel()
    return sent


@contextlib.contextmanager
def _simulator(case: Case, volume_file: Path) -> Iterator[str]:
    """Run ``snapcrawl simulate`` for ``case`` in its own process; yield its endpoint."""
    command = [
        sys.executable,
        "-m",
        "snapcrawl.cli",
        "simulate",
        "--port=0",
        "--volume-count=2000",
        f"--volume-file={volume_file}",
        f"--rate-limit={case.quota:g}",
        f"--rate-burst={case.burst}",
        f"--retry-after={case.retry_after}",
        f"--latency={case.latency}",
        f"--ratelimit-headers={case.headers}",
    ]
    if case.schedule:
        command.append(f"--quota-schedule={case.schedule}")
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        endpoint = ""
        for line in process.stdout:
            if line.startswith("export SCP_ENDPOINT="):
                endpoint = line.strip().partition("=")[2]
                break
        if not endpoint:
            raise RuntimeError(f"the simulator did not start: {' '.join(command)}")
        yield endpoint
    finally:
        process.terminate()
        process.wait(timeout=10)


def _stats(endpoint: str) -> dict[str, Any]:
    async def get() -> dict[str, Any]:
        async with aiohttp.ClientSession() as session, session.get(endpoint + STATS_PATH) as response:
            result: dict[str, Any] = await response.json()
            return result

    return anyio.run(get)


def measure(case: Case, client: str, seconds: float) -> dict[str, Any]:
    """Run one client against one case; the server's view of it."""
    with tempfile.TemporaryDirectory() as tmp:
        volume_file = Path(tmp) / "volumes"
        with _simulator(case, volume_file) as endpoint:
            volumes = volume_file.read_text(encoding="utf-8").split()
            if case.account_wide:
                queries = [f"offset={offset}&limit=100" for offset in range(0, 100_000, 100)]
            else:
                queries = [f"volume_id={volume}&limit=20" for volume in volumes]
            limiter = CLIENTS[client](case)
            anyio.run(_drive, endpoint, queries, limiter, seconds)
            stats = _stats(endpoint)
    # Whole seconds only: the server's clock starts at the first request, a little after the client's, so the
    # last second it counts is cut short.
    rows = stats["per_second"][: int(seconds) - 1]
    return _result(case, client, rows, max_in_1s_window=stats.get("max_in_1s_window"))


def _share(part: str, whole: str, rows: list[dict[str, Any]]) -> float:
    """``part`` over ``whole``, both summed over the per-second ``rows`` (0 where there is no whole)."""
    return float(sum(row[part] for row in rows) / max(sum(row[whole] for row in rows), 1))


def _result(case: Case, client: str, rows: list[dict[str, Any]], *, max_in_1s_window: int | None) -> dict[str, Any]:
    """The figures of one run from the server's per-second counts: from the first request to the last (the
    start-up counts, as a user's quota counts it), and from the second second on ("steady")."""
    result: dict[str, Any] = {
        "case": case.name,
        "client": client,
        "used": _share("ok", "quota", rows),
        "throttled": _share("throttled", "requests", rows),
        "steady_used": _share("ok", "quota", rows[1:]),
        "steady_throttled": _share("throttled", "requests", rows[1:]),
        "first_second_throttled": rows[0]["throttled"] if rows else 0,
        "requests": sum(row["requests"] for row in rows),
        "max_in_1s_window": max_in_1s_window,
        "per_second": [(row["ok"], row["throttled"], row["quota"]) for row in rows],
    }
    step = case.step()
    if step is not None:
        result["settle"] = _settle(rows, step, rising=step[1] > case.quota)
        result["step_throttled"] = _share("throttled", "requests", rows[math.floor(step[0]) : math.ceil(step[0]) + 2])
    return result


def measure_model(
    case: Case, client: str, seconds: float, *, stalls: tuple[float, float] | None = None
) -> dict[str, Any]:
    """The same, on a fake clock against the token-bucket model of ``tests/limits/model.py``: no noise, no waiting.

    As in the simulator the bucket decides on arrival and the whole latency passes after it; a throttled request
    is not retried.
    """
    from tests.fakes import FakeClock  # noqa: PLC0415 - the model is test code; only --model needs it
    from tests.limits.model import BucketServer, drive  # noqa: PLC0415

    clock = FakeClock(0.0)
    schedule = [(0.0, case.quota)]
    if case.schedule:
        schedule += [
            (float(at), float(rate)) for at, _, rate in (step.partition(":") for step in case.schedule.split(","))
        ]
    server = BucketServer(
        schedule,
        burst=case.burst,
        retry_after=None if case.retry_after == "none" else 1.0,
        announce=case.headers != "none",
    )
    told = case.quota if case.told else None
    limiter: Limiter
    if client == "snapcrawl":
        limiter = LocalLimiter(told, clock=clock, sleep=clock.sleep, wall_clock=lambda: 1e9 + clock.now)
    elif client == "fixed":
        limiter = FixedRate(case.quota, clock=clock, sleep=clock.sleep)
    else:
        limiter = AdaptiveRateLimiter(told, clock=clock, sleep=clock.sleep)
    low, _, high = case.latency.partition(":")
    latency = (float(low), float(high or low))
    trace = anyio.run(
        lambda: drive(
            limiter, clock, server, seconds=seconds, latency=latency, before=0.0, jitter=MODEL_JITTER, stalls=stalls
        )
    )
    rows = []
    for second in range(int(seconds)):
        window = [ok for at, ok in trace.arrivals if second <= at < second + 1]
        rows.append(
            {
                "requests": len(window),
                "ok": sum(window),
                "throttled": window.count(False),
                "quota": server.quota(second),
            }
        )
    return _result(case, client, rows, max_in_1s_window=None)


def _settle(rows: list[dict[str, Any]], step: tuple[float, float], *, rising: bool) -> float | None:
    """Seconds from the quota step until a second admits 90 % of the new quota (falling: also at most 110 %)
    and the next ``HOLD`` seconds do too: the level is reached and held, one noisy second later or not."""
    at = math.ceil(step[0])

    def good(row: dict[str, Any]) -> bool:
        return bool(row["ok"] >= 0.9 * row["quota"] and (rising or row["ok"] <= 1.1 * row["quota"]))

    for start in range(at, len(rows)):
        if all(good(row) for row in rows[start : start + 1 + HOLD]):
            return float(start + 1 - at)  # counted at the end of the first good second
    return None


def _table(
    results: Sequence[dict[str, Any]],
    cases: Sequence[Case],
    clients: Sequence[str],
    baseline: Sequence[dict[str, Any]] = (),
) -> str:
    """The Markdown table: per client the quota used and the share of 429s, "before" first if there is one."""
    by_key = {(r["case"], r["client"]): r for r in results}
    before = {r["case"]: _whole_run(r) for r in baseline if r["client"] == "snapcrawl"}
    columns = [(f"{client} used | 429s", by_key, client) for client in clients]
    if before:
        columns.insert(0, ("before used | 429s", {(case, "before"): r for case, r in before.items()}, "before"))
    lines = [
        "| case | " + " | ".join(title for title, _, _ in columns) + " | 429s in 1st s |",
        "|---|" + "---:|---:|" * len(columns) + "---|",
    ]
    for case in cases:
        cells, firsts = [], []
        for _, source, client in columns:
            r = source.get((case.name, client))
            if r is None:
                cells += ["", ""]
                firsts.append("-")
                continue
            used = f"{r['used']:.0%}"
            if "settle" in r:
                used += f" (settled {r['settle']:.0f} s)" if r["settle"] is not None else " (never settled)"
            cells += [used, f"{r['throttled']:.2%}"]
            firsts.append(str(r["first_second_throttled"]))
        lines.append(f"| {case.name}: {case.note} | " + " | ".join(cells) + f" | {' / '.join(firsts)} |")
    return "\n".join(lines)


def _whole_run(result: dict[str, Any]) -> dict[str, Any]:
    """A result from an earlier version, whose headline figures were steady-state, with this one's: from its
    per-second counts (every request is admitted or throttled)."""
    if "steady_used" in result:
        return result
    rows = [
        {"ok": ok, "throttled": thr, "requests": ok + thr, "quota": quota} for ok, thr, quota in result["per_second"]
    ]
    return result | {"used": _share("ok", "quota", rows), "throttled": _share("throttled", "requests", rows)}


def _stalls(text: str) -> tuple[float, float]:
    """``EVERY:SECONDS``: a stall of SECONDS, EVERY seconds apart on average."""
    every, _, length = text.partition(":")
    try:
        parsed = float(every), float(length)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--stalls must be EVERY:SECONDS, such as 1:0.02, not {text!r}") from None
    if not (parsed[0] > 0 and parsed[1] >= 0):
        raise argparse.ArgumentTypeError(f"--stalls needs EVERY > 0 and SECONDS >= 0, not {text!r}")
    return parsed


def main(argv: Sequence[str] | None = None) -> int:
    """Measure every case for every client and print the table."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.studies.quota", description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15.0, help="how long each client drives each case")
    parser.add_argument("--case", action="append", choices=[case.name for case in CASES], help="(repeatable)")
    parser.add_argument("--client", action="append", choices=list(CLIENTS), help="(repeatable)")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write every figure there")
    parser.add_argument("--model", action="store_true", help="on the fake-clock model instead of the simulator")
    parser.add_argument("--baseline", type=Path, metavar="FILE", help="an earlier --json, shown as 'before'")
    parser.add_argument(
        "--stalls", type=_stalls, metavar="EVERY:SECONDS", help="--model: the server stops now and then (a busy host)"
    )
    args = parser.parse_args(argv)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    cases = [case for case in CASES if not args.case or case.name in args.case]
    clients = args.client or list(CLIENTS)
    results = []
    for case in cases:
        for client in clients:
            if args.model:
                result = measure_model(case, client, args.seconds, stalls=args.stalls)
            else:
                result = measure(case, client, args.seconds)
            results.append(result)
            print(
                f"{case.name:>15} {client:>9}: used {result['used']:6.1%}, 429s {result['throttled']:5.2%}"
                f" (steady {result['steady_used']:6.1%}, {result['steady_throttled']:5.2%})"
                + (f", settled in {result['settle']} s" if "settle" in result else ""),
                file=sys.stderr,
                flush=True,
            )
    baseline = json.loads(args.baseline.read_text(encoding="utf-8")) if args.baseline else []
    print(_table(results, cases, clients, baseline))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
