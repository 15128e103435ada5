"""``snapcrawl crawl --config FILE [--account NAME]...``: every account of a fleet file at once, into one output.

Precedence of the limits: an account's own ``rate``/``burst``/``concurrency``, then the command line's (an option
given with a value other than its default), then the file's ``[defaults]``, then the built-in defaults. Into a
database each account writes its own rows (``account`` = its name), prunes only them, and keeps its own
checkpoint and ``snapcrawl_runs`` row; into JSON Lines every line gains an ``account`` field. With ``--queue``
and ``--job``, each account has a queue of its own (``JOB:ACCOUNT``) that every worker of the job serves with
that account's credentials and limiter.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any

import anyio
import msgspec

from .._config import RetryPolicy
from .._exceptions import AuthError, ConfigError
from .._identity import endpoint_host
from .._models import Page, Snapshot
from .._stats import CrawlStats
from ..fleet import AccountConfig, AccountOutcome, Fleet, FleetConfig, load_fleet, read_volume_ids
from ..limits import Limiter
from ..sinks import CommitListener, JsonLinesSink, Sink, VolumeProgress, open_sink, sqlite_path
from ..sinks._lock import lock_file
from ..sinks.postgres import redact
from ._common import CONCURRENCY, EXIT_AUTH, EXIT_FAILURES, EXIT_OK
from ._distributed import open_worker, report_job
from ._signals import stop_on_signal
from .progress import StatusLine, status_line

__all__ = ["add_fleet_options", "check_fleet_options", "run_fleet"]

_BUILT_IN = {"concurrency": 64, "burst": 10, "rate": None}


def add_fleet_options(parser: argparse.ArgumentParser) -> None:
    """The crawl command's ``--config``, ``--account`` and ``--max-in-flight``."""
    group = parser.add_argument_group("many accounts (see docs/many-accounts.md)")
    group.add_argument("--config", metavar="FILE", help="a fleet file (TOML): crawl all its accounts at once")
    group.add_argument(
        "--account", action="append", default=[], metavar="NAME", help="with --config: only this account (repeatable)"
    )
    group.add_argument(
        "--max-in-flight",
        type=CONCURRENCY,
        metavar="N",
        help="with --config: requests in flight across all accounts, 1..10000 (default 256)",
    )


def check_fleet_options(args: argparse.Namespace) -> None:
    """Usage errors (exit 2) for options that do not go with a fleet, or need one."""
    if getattr(args, "config", None) is None:
        if args.account:
            raise ConfigError("--account picks accounts of a fleet file: it needs --config FILE")
        if args.max_in_flight is not None:
            raise ConfigError("--max-in-flight needs --config FILE (one account has --concurrency)")
        return
    if args.state is not None:
        raise ConfigError("--state does not go with --config: a fleet resumes from a database --out")
    clashes = [
        option
        for option, given in (
            ("--volumes-from/--volume", args.volumes is not None or args.volume),
            ("--endpoint", args.endpoint is not None),
            ("--region", args.region is not None),
        )
        if given
    ]
    if clashes:
        raise ConfigError(
            f"{clashes[0]} does not go with --config: each account's endpoint and volumes come from the fleet file"
        )
    if (
        getattr(args, "summary_json", None) is not None
        or getattr(args, "output", "jsonl") != "jsonl"
        or (getattr(args, "fields", None) is not None)
    ):
        raise ConfigError("--summary-json, --output and --fields do not apply to --config: a fleet writes JSON Lines "
                          "(each line with its account) or a database")  # fmt: skip


def _setting(args: argparse.Namespace, config: FleetConfig, key: str) -> Any:
    """The fleet-wide value of ``key``: the command line's if given, else the file's ``[defaults]``, else built-in."""
    given = getattr(args, key)
    if given != _BUILT_IN[key]:
        return given
    return config.defaults.get(key, _BUILT_IN[key])


class _AccountSnapshot(Snapshot, kw_only=True, frozen=True):
    """A snapshot with its account: a fleet's JSON Lines rows (one more field, last)."""

    account: str


class _TaggedLines:
    """One account's view of the fleet's shared JSON Lines output: each line gains ``account``.

    Completing and closing the shared output is the fleet's (once every account has ended), not an account's.
    """

    resumable = False

    def __init__(self, inner: JsonLinesSink, account: str) -> None:
        self.on_commit: CommitListener | None = None
        self._inner = inner
        self._account = account

    async def load_progress(self) -> Mapping[str | None, VolumeProgress]:
        return {}

    async def delivered_ids(self, volume_id: str | None) -> set[str]:
        return set()

    async def write(self, page: Page) -> None:
        account = self._account
        tagged: list[Snapshot] = [
            _AccountSnapshot(**msgspec.structs.asdict(snapshot), account=account) for snapshot in page.snapshots
        ]
        await self._inner.write(Page(page.volume_id, page.number, tagged, page.last))

    async def fail(self, volume_id: str | None, error: str) -> None:
        await self._inner.fail(volume_id, error)

    async def flush(self) -> None:
        await self._inner.flush()

    async def complete(self) -> None:
        """Nothing yet: the shared output completes when every account has."""

    async def aclose(self) -> None:
        """Nothing: the fleet closes the shared output."""


def _fleet_line(outcomes: Mapping[str, AccountOutcome], started: float) -> str:
    """The live progress line: every account's snapshots (and failures), and the fleet's request rate."""
    parts = []
    requests = 0
    for name, outcome in outcomes.items():
        stats = outcome.stats
        requests += stats.requests
        state = " ✗" if outcome.error is not None else " ✓" if outcome.finished else ""
        failed = f" ({stats.volumes_failed} failed)" if stats.volumes_failed else ""
        parts.append(f"{name} {stats.snapshots}{failed}{state}")
    rate = requests / max(time.monotonic() - started, 1e-9)
    return f"fleet · {rate:.0f} req/s · " + " · ".join(parts)


async def _progress(outcomes: Mapping[str, AccountOutcome], status: StatusLine) -> None:
    started = time.monotonic()
    while True:
        status.show(_fleet_line(outcomes, started))
        await anyio.sleep(0.2)


def _summary(name: str, outcome: AccountOutcome) -> str:
    stats = outcome.stats
    finished = stats.volumes_done + stats.volumes_failed + stats.volumes_skipped
    head = f"snapcrawl: account {name}: "
    if outcome.error is not None:
        return f"{head}FAILED: {outcome.error}"
    if not outcome.finished:  # stopped with the fleet (a signal) before its end
        head += "stopped before its end: "
    return (
        f"{head}{finished} listings ({stats.volumes_done} complete, {stats.volumes_failed} failed), "
        f"{stats.snapshots} snapshots, {stats.requests} requests in {stats.elapsed:.1f} s, "
        f"{stats.retries} retries, {stats.throttled} throttled"
    )


async def _limiters(
    args: argparse.Namespace,
    accounts: tuple[AccountConfig, ...],
    stack: contextlib.AsyncExitStack,
    rate: Any,
    burst: Any,
) -> dict[str, Limiter]:
    """With ``--limiter redis://``: one shared limiter per account, each on its own key (endpoint and access key)."""
    if getattr(args, "limiter", None) is None:
        return {}
    from ..limits.redis import RedisLimiter  # noqa: PLC0415 - the redis extra is optional

    limiters: dict[str, Limiter] = {}
    for account in accounts:
        limiter = RedisLimiter(
            args.limiter,
            endpoint=account.endpoint,
            access_key=account.credentials.access_key,
            rate=account.rate or rate,
            burst=account.burst or burst,
        )
        limiters[account.name] = await stack.enter_async_context(limiter)
    return limiters


async def run_fleet(args: argparse.Namespace, stack: contextlib.AsyncExitStack) -> int:
    """Crawl the fleet of ``--config``; print a summary line per account; return the exit status."""
    config = load_fleet(args.config, only=args.account)
    rate, burst = _setting(args, config, "rate"), _setting(args, config, "burst")
    fleet = Fleet(
        config.accounts,
        max_in_flight=args.max_in_flight or 256,
        concurrency=_setting(args, config, "concurrency"),
        rate=rate,
        burst=burst,
        page_size=args.page_size,
        api_version=args.api_version,
        timeout=args.timeout,
        verify_tls=not args.insecure,
        retry=RetryPolicy(max_retries=args.max_retries),
        limiters=await _limiters(args, config.accounts, stack, rate, burst),
    )
    if getattr(args, "queue", None) is not None:
        return await _run_fleet_job(args, config, fleet, stack)
    out: str | None = args.out
    database = out is not None and "://" in out
    shared: JsonLinesSink | None = None
    if database:
        assert out is not None  # noqa: S101 - database implies an --out
        sqlite = out.lower().startswith("sqlite://")
        if sqlite:  # one process, one lock on the file: the accounts' sinks share it
            stack.callback(os.close, lock_file(sqlite_path(out), destination=out))

        def sink_for(account: AccountConfig) -> Sink:
            settings = {"endpoint": account.endpoint, "name": args.name, "sort": args.sort}
            return open_sink(
                out,
                table=args.table,
                prune=args.prune,
                settings=settings,
                account=account.name,
                endpoint=endpoint_host(account.endpoint),
                lock=not sqlite,  # the fleet holds the SQLite file's lock for all its accounts
            )

    else:
        # One output for the fleet: --prune and --table are refused here as for any JSON Lines output.
        jsonl = open_sink(out, table=args.table, prune=args.prune, settings={"fleet": str(config.path)})
        assert isinstance(jsonl, JsonLinesSink)  # noqa: S101 - not a database URL
        stack.push_async_callback(jsonl.aclose)
        shared = jsonl

        def sink_for(account: AccountConfig) -> Sink:
            return _TaggedLines(jsonl, account.name)

    caught = await _crawl(fleet, sink_for, args)
    if shared is not None and not caught:
        await shared.complete()  # every account ran to its end (or failed): the output is whole
    return _report(fleet.outcomes, out, caught)


async def _crawl(
    fleet: Fleet,
    sink_for: Callable[[AccountConfig], Sink],
    args: argparse.Namespace,
    volume_ids_for: Callable[[AccountConfig], Any] | None = None,
) -> list[int]:
    """Crawl the fleet with a progress line, until done or SIGINT/SIGTERM; the signals caught."""
    caught: list[int] = []
    show_progress = not args.no_progress and sys.stderr.isatty()
    status = status_line()
    try:
        async with anyio.create_task_group() as tg:
            scope = anyio.CancelScope()
            tg.start_soon(stop_on_signal, scope, caught)
            if show_progress:
                tg.start_soon(_progress, fleet.outcomes, status)
            with scope:
                await fleet.crawl_into(sink_for, name=args.name, sort=args.sort, volume_ids_for=volume_ids_for)
            tg.cancel_scope.cancel()
    finally:
        status.clear()
    return caught


async def _run_fleet_job(
    args: argparse.Namespace, config: FleetConfig, fleet: Fleet, stack: contextlib.AsyncExitStack
) -> int:
    """One worker of a fleet's distributed job: a queue per account (``JOB:ACCOUNT``), each account's volumes
    crawled with its own credentials and limiter into the shared table, acknowledged as they are committed."""
    from ..queue import Worker  # noqa: PLC0415 - the redis extra is optional
    from ..sinks import PostgresSink  # noqa: PLC0415 - the postgres extra is optional

    for account in config.accounts:
        if account.volumes is None:
            raise ConfigError(
                f"--queue distributes volumes: account {account.name!r} of {config.path} needs a 'volumes' file"
            )
    workers: dict[str, Worker] = {}
    for account in config.accounts:
        assert account.volumes is not None  # noqa: S101 - checked above
        # The account's own job, with every job option of the command line (--claim-after, --max-deliveries...).
        own = argparse.Namespace(**{**vars(args), "job": f"{args.job}:{account.name}"})
        worker = await open_worker(own, stack, read_volume_ids(account.volumes))
        assert worker is not None  # noqa: S101 - --queue is given
        workers[account.name] = worker

    def sink_for(account: AccountConfig) -> Sink:
        settings = {"endpoint": account.endpoint, "name": args.name, "sort": args.sort, "job": args.job}
        inner = PostgresSink(
            args.out,
            table=args.table,
            prune=args.prune,
            settings=settings,
            shared=True,
            account=account.name,
            endpoint=endpoint_host(account.endpoint),
        )
        return workers[account.name].sink(inner)

    caught = await _crawl(fleet, sink_for, args, lambda account: workers[account.name].volumes())
    status = _report(fleet.outcomes, args.out, caught)
    if caught:
        return status
    for worker in workers.values():
        status = max(status, await report_job(worker))
    return status


def _report(outcomes: Mapping[str, AccountOutcome], out: str | None, caught: list[int]) -> int:
    for name, outcome in outcomes.items():
        print(_summary(name, outcome), file=sys.stderr)
        for failure in outcome.failures:
            print(f"snapcrawl: failed: account {name}: {failure.where}: {failure.error}", file=sys.stderr)
    total = CrawlStats()
    for outcome in outcomes.values():
        total.add(outcome.stats)
    failed = [name for name, outcome in outcomes.items() if not outcome.ok]
    shown = redact(out) if out and out.startswith(("postgresql://", "postgres://")) else out or "stdout"
    print(
        f"snapcrawl: fleet: {len(outcomes) - len(failed)}/{len(outcomes)} accounts complete, {total.snapshots} "
        f"snapshots, {total.requests} requests -> {shown}" + (f"; not complete: {', '.join(failed)}" if failed else ""),
        file=sys.stderr,
    )
    if caught:
        print(f"snapcrawl: interrupted by {signal.Signals(caught[0]).name}; run the same command again to resume",
              file=sys.stderr)  # fmt: skip
        return 128 + caught[0]
    if outcomes and all(isinstance(outcome.error, AuthError) for outcome in outcomes.values()):
        return EXIT_AUTH
    return EXIT_FAILURES if failed else EXIT_OK
